"""``python -m art2real ...``: the same CLI as the ``art2real`` command (where the package is not installed)."""
import sys

from .cli import main

sys.exit(main())
