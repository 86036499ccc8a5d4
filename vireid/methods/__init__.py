"""The methods a config can pick (``model.method``), one module per family, found by name.

Each module of this package registers its methods when imported; importing the
package imports them all, so a new method is one new file here.
"""

from vireid.discovery import import_submodules
from vireid.methods.registry import (
    METHODS,
    Method,
    create_loss,
    create_model,
    get_method,
    register_method,
)

import_submodules(__path__, __name__)

__all__ = ["METHODS", "Method", "create_loss", "create_model", "get_method", "register_method"]
