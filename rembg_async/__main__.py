"""``python -m rembg_async``: the ``rembg-async`` command."""

import sys

from ._cli import main

sys.exit(main())
