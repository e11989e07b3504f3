"""The API's base URLs: parsed, and refused where the key would travel in clear text."""

from __future__ import annotations

import ipaddress
import urllib.request
from typing import Any

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


def proxy_arguments(url: URL) -> dict[str, Any]:
    """``proxy=`` (and its credentials) for requests to ``url`` from ``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``, as requests and httpx read them; read once
    per client: aiohttp's ``trust_env`` reads them and ``~/.netrc`` in two thread hops on every
    request, and would send netrc credentials to the API beside the API key."""
    proxies = urllib.request.getproxies_environment()
    raw = proxies.get(url.scheme) or proxies.get("all")
    if not raw or url.host is None:
        return {}
    if urllib.request.proxy_bypass_environment(url.host, proxies):  # type: ignore[attr-defined]
        return {}
    # Credentials stay in the URL: aiohttp sends them to the proxy alone, as
    # Proxy-Authorization (its proxy_auth= argument is deprecated).
    return {"proxy": URL(raw if "://" in raw else f"http://{raw}")}
