"""Make the golden masks once, with danielgatis's rembg itself on the same ``u2netp.onnx``.

Run in a virtualenv with ``rembg[cpu]`` (not ours: its ``rembg`` package name clashes with the
weights' distribution), with ``U2NET_HOME`` at a folder holding our ``u2netp.onnx``:
``U2NET_HOME=… python tests/data/masks/make_masks.py``. Masks are stored at rembg's 0.5
threshold as 1-bit PNGs (what the IoU test compares), a few KB each.
"""

from pathlib import Path

from PIL import Image
from rembg import new_session, remove

HERE = Path(__file__).parent
PHOTOS = HERE.parent.parent.parent / "examples" / "images" / "photos"

session = new_session("u2netp")
for photo in sorted(PHOTOS.glob("*.jpg")):
    mask = remove(Image.open(photo), session=session, only_mask=True)
    mask.point(lambda value: 255 if value >= 128 else 0).convert("1").save(
        HERE / f"{photo.stem}.png", optimize=True
    )
