"""The API's base URLs: parsed, and refused where the key would travel in clear text."""

from __future__ import annotations

import ipaddress

from yarl import URL


def checked_url(url: str, allow_insecure_http: bool) -> URL:
    """``url`` parsed; plain http is refused for any host but loopback unless allowed."""
    parsed = URL(url.rstrip("/"))
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parsed.scheme == "http" and not allow_insecure_http and not is_loopback(parsed.host):
        raise ValueError(
            f"refusing to send the API key over plain http to {parsed.host}; use https, "
            "or allow_insecure_http=True"
        )
    return parsed


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
