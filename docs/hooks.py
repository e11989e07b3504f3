"""MkDocs hooks: render docstrings written with reStructuredText habits acceptably.

Some docstrings still use Sphinx roles (``:class:`X```) and ``::`` before a literal block. Until
they are all plain Markdown, the role prefix is dropped (leaving the name as code) and ``::``
becomes ``:``.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|exc|mod|obj|const):(?=<code>)")
_LITERAL_MARKER = re.compile(r"::(?=</p>)")


def on_page_content(html: str, **_: Any) -> str:
    """Drop Sphinx role prefixes and rST literal-block markers from the rendered page."""
    return _LITERAL_MARKER.sub(":", _ROLE.sub("", html))
