"""`python -m fer_core`: the command line (`fer_core/cli/`)."""

import sys

from fer_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
