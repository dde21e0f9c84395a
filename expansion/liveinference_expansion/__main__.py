"""`python -m liveinference_expansion serve ...`, the same as the `liveinference` command."""

import sys

from liveinference_expansion.cli import main

if __name__ == "__main__":
    sys.exit(main())
