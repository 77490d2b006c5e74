"""`python -m blur2clip ...`: the same as the `blur2clip` command."""

from .cli import run

run()
