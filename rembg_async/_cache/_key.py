"""The key of a result: what the answer depends on, and nothing else.

A digest of the input's bytes (never its name or path), the form fields that shape the answer
(`RemoveOptions.form_fields`, which leaves out the API's defaults, sorted), and the API's URL
(normalised: the local server and the hosted API never share an entry). Its text is versioned
so that a change of what goes in makes new keys rather than wrong hits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Final

from yarl import URL

KEY_VERSION: Final = 1


def cache_key(digest: str, fields: Mapping[str, str], api_url: str | URL) -> str:
    """The cache key (64 hex digits) of an input whose bytes have the sha256 ``digest``, sent
    with ``fields`` to ``api_url``."""
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
