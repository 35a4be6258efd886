"""``python -m infertrail``."""

from infertrail.cli import main

main()
