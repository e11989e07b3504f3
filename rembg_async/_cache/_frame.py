"""A cache entry, whatever holds it: its key (what the answer depends on, and nothing else),
and its frame (a header, then the image), served only when all of it checks out: a damaged,
cut or mixed-up entry costs a request, never a wrong image."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any, Final

import attrs
from yarl import URL

from .._contract import OUTPUT_FORMATS
from .._imageinfo import sniff_kind

#: Bumped when what goes into a key changes: new keys rather than wrong hits.
KEY_VERSION: Final = 1
#: What every entry starts with: a name, then the version of the layout that follows.
MAGIC: Final = b"RBGCACHE"
VERSION: Final = 1
#: The magic, the version (one byte) and the header's length (four bytes, big-endian).
_PREFIX: Final = struct.Struct(f">{len(MAGIC)}sBI")
#: Headers are a few hundred bytes; anything longer is damage.
_MAX_HEADER: Final = 64 * 1024
_TYPES: Final = frozenset(OUTPUT_FORMATS.values())


def cache_key(digest: str, fields: Mapping[str, str], api_url: str | URL) -> str:
    """The key (64 hex digits) of an input whose bytes have the sha256 ``digest`` (never its
    name), sent with the form ``fields`` that shape the answer to ``api_url``."""
    canonical = json.dumps(
        {
            "version": KEY_VERSION,
            "input": digest,
            "fields": sorted(fields.items()),
            "api": normalised_url(api_url),
        },
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalised_url(url: str | URL) -> str:
    """``url`` without user, query, fragment, default port or trailing slash; its scheme and
    host lowercased (its path is kept as it is: paths may tell case apart)."""
    parsed = URL(url) if isinstance(url, str) else url
    return f"{str(parsed.origin()).lower()}{parsed.path.rstrip('/')}"


@attrs.frozen(kw_only=True)
class Entry:
    """A verified entry: the image's ``body``, its ``content_type``, when it was ``stored``."""

    body: bytes = attrs.field(repr=False)
    content_type: str
    stored: float


def frame(key: str, body: bytes, content_type: str, stored: float) -> bytes:
    """The entry to store under ``key``: the header, then ``body``."""
    header = json.dumps(
        {
            "key": key,
            "type": content_type,
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "stored": stored,
        },
        separators=(",", ":"),
    ).encode()
    return _PREFIX.pack(MAGIC, VERSION, len(header)) + header + body


def unframe(key: str, data: bytes) -> Entry | None:
    """The entry in ``data`` if it is whole and sound and was stored under ``key``; else None."""
    parsed = _header(data)
    if parsed is None:
        return None
    header, start = parsed
    body = data[start:]
    content_type = header.get("type")
    if (
        header.get("key") != key
        or header.get("length") != len(body)
        or content_type not in _TYPES
        or OUTPUT_FORMATS.get(sniff_kind(body[:32]) or "") != content_type
        or header.get("sha256") != hashlib.sha256(body).hexdigest()
    ):
        return None
    return Entry(body=body, content_type=str(content_type), stored=float(header["stored"]))


def stored_at(data: bytes) -> float | None:
    """When the entry in ``data`` was stored (read from its header alone); None if no header."""
    parsed = _header(data)
    return None if parsed is None else parsed[0]["stored"]


def expired(data: bytes, max_age: float | None, now: float) -> bool:
    """Whether the entry in ``data`` is older than ``max_age`` seconds (None: never)."""
    if max_age is None:
        return False
    stored = stored_at(data)
    return stored is None or now - stored > max_age


def _header(data: bytes) -> tuple[dict[str, Any], int] | None:
    """The header's fields and where the body starts, if ``data`` starts like an entry."""
    if len(data) < _PREFIX.size:
        return None
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != MAGIC or version != VERSION or length > _MAX_HEADER:
        return None
    start = _PREFIX.size + length
    try:
        header = json.loads(data[_PREFIX.size : start])
    except ValueError:  # cut short, or not JSON: damage
        return None
    if not isinstance(header, dict) or not isinstance(header.get("stored"), (int, float)):
        return None
    return header, start
