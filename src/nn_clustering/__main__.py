"""``python -m nn_clustering``: the command line."""

import sys

from .cli import main

sys.exit(main())
