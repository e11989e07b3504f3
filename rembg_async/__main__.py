"""``python -m rembg_async``: the ``rembg-async`` command."""

import sys

from ._cli import main

# Guarded: a process started by spawning (a Dask worker of `--dask local:N`) imports this
# module again as __mp_main__, and must not run the command a second time.
if __name__ == "__main__":
    sys.exit(main())
