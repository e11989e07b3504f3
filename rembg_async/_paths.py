"""Output names derived from inputs, which must never escape the output folder."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Final

_UNSAFE: Final = re.compile(r"[^\w.\- ]+")
MAX_STEM: Final = 200


def output_path_for(folder: Path, source_name: str, extension: str) -> Path:
    """``folder / <safe stem>.<extension>`` for an input called ``source_name``.

    Only the last component of the name is used, stripped of separators, ``..``, control and
    reserved characters and leading dots, so the result is always directly inside ``folder``.
    """
    base = re.split(r"[\\/]", source_name)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = unicodedata.normalize("NFC", stem)
    stem = _UNSAFE.sub("_", stem).strip(" .")[:MAX_STEM] or "image"
    return folder / f"{stem}.{extension.lstrip('.')}"
