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
    """``proxy=`` (and its credentials) for requests to ``url``, from the environment as
    requests, httpx and urllib read it: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` (either
    case), unless ``NO_PROXY`` names the host; empty when no proxy applies.

    Read once per client, not per request: aiohttp's own ``trust_env`` reads the environment
    and ``~/.netrc`` in two thread hops on every request (0.5 ms of CPU each time), and would
    send netrc credentials to the API beside the API key.
    """
    proxies = urllib.request.getproxies_environment()
    raw = proxies.get(url.scheme) or proxies.get("all")
    if not raw or url.host is None or _bypassed(url.host, proxies):
        return {}
    # Credentials stay in the URL: aiohttp sends them to the proxy alone, as
    # Proxy-Authorization (its proxy_auth= argument is deprecated).
    return {"proxy": URL(raw if "://" in raw else f"http://{raw}")}


def _bypassed(host: str, proxies: dict[str, str]) -> bool:
    """Whether ``NO_PROXY`` (``proxies["no"]``) names ``host``, as urllib reads it."""
    return bool(urllib.request.proxy_bypass_environment(host, proxies))  # type: ignore[attr-defined]
