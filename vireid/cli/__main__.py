"""``python -m vireid.cli``: the vireid command."""

import sys

from vireid.cli import main

sys.exit(main())
