"""Until the merge: `_files.run_to_completion` under its old address."""

from ._files import run_to_completion as run_to_completion
