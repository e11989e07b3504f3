"""A plain script using the sync client, for the tests that need a fresh interpreter (its
warnings at exit, its threads, its temporary folder).

``python tests/_sync_script.py MODE URL KEY``: MODE is ``cleanup`` (every kind of result
cleaned up with a plain ``cleanup()``), ``open-batch`` (leave ``with Rembg()`` inside a
``remove_many`` loop) or ``unclosed`` (a client never closed, then collected).
"""

from __future__ import annotations

import gc
import sys
import threading

from conftest import make_image

from rembg_async import Rembg, rembg_sync

PNG = make_image((40, 30), "PNG")


def cleanup(url: str, key: str) -> None:
    """remove(), rembg_sync() and a batch's items: each file deleted by a plain cleanup()."""
    with Rembg(key, base_url=url) as client:
        result = client.remove(PNG)
        result.cleanup()
        for item in client.remove_many([PNG] * 3, concurrency=2):
            assert item.result is not None
            item.result.cleanup()
    one = rembg_sync(api_key=key, input_image=PNG, base_url=url)
    one.cleanup()
    one.cleanup()  # twice is fine


def open_batch(url: str, key: str) -> None:
    """The first item of a batch of 20 kept, the loop left, then the client."""
    with Rembg(key, base_url=url) as client:
        items = client.remove_many([PNG] * 20, concurrency=4)
        for item in items:
            assert item.result is not None
            item.result.cleanup()
            break
    gc.collect()


def unclosed(url: str, key: str) -> None:
    """A client used once and dropped without close(): it warns, then closes on its own."""
    client = Rembg(key, base_url=url)
    client.remove(PNG, return_base64=True)
    del client
    gc.collect()
    for thread in threading.enumerate():
        if thread.name == "rembg-async sync client":
            thread.join(10)
            assert not thread.is_alive(), "the client's thread still runs"


if __name__ == "__main__":
    mode, url, key = sys.argv[1:]
    {"cleanup": cleanup, "open-batch": open_batch, "unclosed": unclosed}[mode](url, key)
    print("done")
