"""The built-in methods a config can pick (``model.method``), one module per family.

Each module of this package registers its methods (vireid.method.register_method) when imported;
importing the package imports them all. A method from outside the package is a plugin
(vireid.plugins): one file, the same calls.
"""

from vireid.discovery import import_submodules

import_submodules(__path__, __name__, first=("agw",))  # the order `vireid methods` lists them in
