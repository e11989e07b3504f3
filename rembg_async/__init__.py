"""rembg-async: an async-first client for the RemBG background-removal API."""

from ._version import __version__

__all__ = ["__version__"]
