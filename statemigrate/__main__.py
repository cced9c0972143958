"""Run the command line with ``python -m statemigrate``."""

import sys

from statemigrate.cli import main

sys.exit(main())
