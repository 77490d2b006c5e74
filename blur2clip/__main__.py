"""`python -m blur2clip ...`: the same as the `blur2clip` command."""

import sys

from .cli import main

sys.exit(main())
