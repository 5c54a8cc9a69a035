"""`python -m qmo.builder build ...` is `qmo-builder build ...`."""

import sys

from qmo.builder.cli import main

sys.exit(main())
