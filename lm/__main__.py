"""`python -m lm`: the command line (lm/cli.py holds its one parser)."""

import sys

from lm.cli import main

if __name__ == "__main__":
    sys.exit(main())
