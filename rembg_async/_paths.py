"""Output paths: derived from inputs (never escaping the output folder), and checked before a
request is paid for."""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from pathlib import Path, PurePath
from typing import Final

from ._contract import parse_format
from ._exceptions import InvalidInputError
from ._imageinfo import extension_for
from ._options import OutputFormat

_UNSAFE: Final = re.compile(r"[^\w.\- ]+")
_SEPARATORS: Final = re.compile(r"[\\/]")
_MAX_STEM: Final = 200
_FORMAT_OF_EXTENSION: Final[dict[str, OutputFormat]] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
    ".bmp": "bmp",
}


def safe_part(name: str) -> str:
    """One path component made safe: no separators, control or reserved characters, no
    leading or trailing dots (so never ``..``), never empty."""
    part = unicodedata.normalize("NFC", name)
    return _UNSAFE.sub("_", part).strip(" .")[:_MAX_STEM] or "image"


def safe_leaf(source_name: str, extension: str) -> str:
    """``<safe stem>.<extension>`` for an input called ``source_name``: only the name's last
    component is used, made safe, so the result is one plain file name (never ``..``)."""
    base = _SEPARATORS.split(source_name)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return f"{safe_part(stem)}.{extension.lstrip('.')}"


def mirrored_path(folder: Path, relative: PurePath, extension: str) -> Path:
    """``folder / <relative, each part made safe, extension replaced>``: the input's own layout,
    always inside ``folder`` (``..``, anchors and odd characters cannot lead out of it)."""
    parts = [safe_part(part) for part in relative.parts[:-1] if part not in ("", ".", "/")]
    return folder.joinpath(*parts, safe_leaf(relative.name or "image", extension))


def format_for_output(target: PurePath, given: OutputFormat | None) -> OutputFormat | None:
    """The format of a result saved as ``target``: the one given, else its extension's (as
    Pillow's ``save()`` decides), else None; a format the extension contradicts is refused."""
    named = _FORMAT_OF_EXTENSION.get(target.suffix.lower())
    if given is None:
        return named
    canonical = parse_format(given)
    if named is None or named == canonical:
        return given
    message = (
        f"output_path {str(target)!r} names a {named.upper()} file but the format is "
        f"{canonical.upper()}: pass format={named!r} (or no format), or name the file "
        f"{target.with_suffix('.' + extension_for(canonical)).name!r}"
    )
    raise InvalidInputError(message, [("output_path", message)])


def check_output_place(target: Path) -> None:
    """Refuse, before anything is sent, a target that is a folder or cannot be written."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "output_path is a folder", str(target))
    check_folder_writable(target.parent)


def check_folder_writable(folder: Path) -> None:
    """Raise the ``OSError`` that writing into ``folder`` would meet: something above it is a
    file, or the nearest existing folder cannot be written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of the folder", str(folder))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "the folder cannot be written", str(existing))
