"""`python -m edge` runs the `scream` command."""

import sys

from edge.cli import main

sys.exit(main())
