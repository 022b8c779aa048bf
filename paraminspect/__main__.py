"""``python -m paraminspect``."""

from paraminspect.cli import run

run()
