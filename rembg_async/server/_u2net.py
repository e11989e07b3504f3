"""U²-Net matting on onnxruntime: the model sees a small copy, its mask is scaled back up.

The default weights are ``u2netp.onnx`` (4.6 MB), a data file of this package in ``_weights/``
next to its licence notice (U²-Net: Apache-2.0; the ONNX conversion: rembg's, MIT). They ship
in our own wheel, so they install on every Python onnxruntime has wheels for and add no
top-level module to site-packages. Any U²-Net-compatible ONNX file works too (rembg's
``~/.u2net/u2net.onnx``, ``u2netp.onnx``, ``silueta.onnx``, ``isnet-general-use.onnx``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import numpy as np
import numpy.typing as npt
from PIL import Image

if TYPE_CHECKING:
    import onnxruntime

#: The default weights, a data file of this package (``_weights/NOTICE`` says whence).
MODEL_FILE: Final = Path(__file__).parent / "_weights" / "u2netp.onnx"
MODEL_INSTALL_HINT: Final = "pip install 'rembg-async[model]'"

# U²-Net was trained on ImageNet-normalised input; IS-Net on input centred at 0.5 (rembg's values).
_IMAGENET: Final = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_ISNET: Final = ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0))
_DEFAULT_SIDE: Final = 320


class ModelError(Exception):
    """The model engine cannot run: its package is missing or its file is not a usable model."""


def bundled_model() -> Path | None:
    """The path of the bundled ``u2netp.onnx``, or ``None`` if a repackager left it out."""
    return MODEL_FILE if MODEL_FILE.is_file() else None


def model_unavailable() -> str | None:
    """Why the bundled model cannot run here (for the first line the CLI prints), or ``None``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return f"onnxruntime is not installed ({MODEL_INSTALL_HINT})"
    if bundled_model() is None:
        return f"its weights are missing from this install ({MODEL_FILE})"
    return None


def model_installed() -> bool:
    """Whether the bundled model can run: onnxruntime and the weights are installed."""
    return model_unavailable() is None


@attrs.frozen
class U2Net:
    """A loaded model: call it with an RGB image to get its mask.

    ``session`` runs one inference per worker of a busy pool; ``lone_session`` (all the cores
    on one inference) runs the request that has the machine to itself: see `alone`.
    """

    session: onnxruntime.InferenceSession
    input_name: str
    side: tuple[int, int]
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    name: str = "u2netp"
    lone_session: onnxruntime.InferenceSession | None = None

    def __call__(self, image: Image.Image) -> Image.Image:
        """The mask (mode ``L``, the image's size): 255 where the subject is."""
        small = self._predict(self._prepare(image))
        # Scaling up, bilinear: half Lanczos's time (2048×1536: 5 ms against 10) for the same
        # mask (IoU 0.9998 with Lanczos's at 0.5; rembg's Lanczos only rings at the edges,
        # where the 320-px prediction has no finer detail to give). Only the 320×320 copy and
        # the mask at full size are made.
        return Image.fromarray(small, mode="L").resize(image.size, Image.Resampling.BILINEAR)

    def alone(self) -> U2Net:
        """This model running each inference on every core: for a request with no company."""
        if self.lone_session is None:
            return self
        return attrs.evolve(self, session=self.lone_session, lone_session=None)

    def _prepare(self, image: Image.Image) -> npt.NDArray[np.float32]:
        # Lanczos, as rembg resamples: bilinear loses thin parts (IoU 0.95 against rembg's mask
        # on the cat photo, 0.999 with Lanczos). reducing_gap shrinks by whole factors first
        # (block means) down to twice the size, then Lanczos: a 2048×1536 photo in 8 ms
        # instead of 25 (16 with a gap of 3), no full-size copy, the same mask (IoU 0.9998
        # with Lanczos's all the way).
        small = image.resize(self.side, Image.Resampling.LANCZOS, reducing_gap=2.0)
        pixels = np.asarray(small, dtype=np.float32)
        pixels /= max(1.0, float(pixels.max()))
        pixels = (pixels - self.mean) / self.std
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis])

    def _predict(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        output = self.session.run(None, {self.input_name: tensor})[0]
        prediction = np.asarray(output, dtype=np.float32).reshape(self.side[::-1])
        low, high = float(prediction.min()), float(prediction.max())
        scaled = (prediction - low) / (high - low) if high > low else prediction * 0
        return (scaled * 255.0 + 0.5).astype(np.uint8)


def load_u2net(path: Path | None, *, threads: int = 1, lone_threads: int = 1) -> U2Net:
    """The model at ``path`` (the bundled ``u2netp.onnx`` if ``None``), loaded and tried once.

    Each inference uses ``threads`` cores, or ``lone_threads`` through `U2Net.alone`. Loaded
    models are shared by every server of the process (sessions are thread-safe), so
    tests and ``LocalServer`` instances after the first start at once.
    """
    path = path or bundled_model()
    if path is None:
        raise ModelError(f"the U²-Net engine needs the model extra: {MODEL_INSTALL_HINT}")
    try:
        stat = path.stat()
    except OSError as error:
        raise ModelError(f"cannot read the model file {path}: {error.strerror}") from None
    stamp = (stat.st_size, stat.st_mtime_ns)
    return _load(str(path.resolve()), stamp, threads, max(threads, lone_threads))


@functools.lru_cache(maxsize=8)
def _load(path: str, stamp: tuple[int, int], threads: int, lone_threads: int) -> U2Net:
    del stamp  # part of the cache key only: a file replaced on disk is loaded anew
    model = _describe(path, _session(path, threads))
    if lone_threads > threads:
        model = attrs.evolve(model, lone_session=_session(path, lone_threads))
    try:
        model(Image.new("RGB", (8, 8)))
        model.alone()(Image.new("RGB", (8, 8)))
    except Exception as error:
        raise ModelError(f"{path} is not a U²-Net-compatible model: {error}") from None
    return model


def _session(path: str, threads: int) -> onnxruntime.InferenceSession:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(f"the U²-Net engine needs onnxruntime: {MODEL_INSTALL_HINT}") from None
    options = onnxruntime.SessionOptions()
    # A busy pool runs one inference per worker: more threads per run would oversubscribe.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # onnxruntime's memory arena is kept: it holds the activations of the inferences in work
    # (fixed by the 320×320 input) for the next image. Without it that memory goes back to the
    # system after each image, but the page faults cost ~25% of the throughput (measured).
    # Both sessions (per worker, and all cores) draw from one arena of the process, so the
    # lone session adds no memory of its own; and with no memory pattern each inference takes
    # the blocks it needs instead of one block planned for all of them (measured: 685 MB for
    # two inferences at once, not 1,327 with a pattern and an arena per session).
    options.enable_mem_pattern = False
    _share_one_arena(onnxruntime)
    options.add_session_config_entry("session.use_env_allocators", "1")
    try:
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unrelated classes
        raise ModelError(f"{path} is not a usable ONNX model: {error}") from None


@functools.cache
def _share_one_arena(onnxruntime: Any) -> None:
    """Register one CPU arena for the sessions of the process that ask for it (once)."""
    memory = onnxruntime.OrtMemoryInfo(
        "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
    )
    # Registered already (by other code of the process) is as good: the sessions share that one.
    with contextlib.suppress(Exception):  # -1: the defaults for size, growth and chunks
        onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(0, -1, -1, -1))


def _describe(path: str, session: onnxruntime.InferenceSession) -> U2Net:
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise ModelError(f"{path} is not a U²-Net-compatible model: it needs one RGB input")
    height, width = (side if isinstance(side, int) else _DEFAULT_SIDE for side in shape[2:])
    mean, std = _ISNET if "isnet" in Path(path).name.lower() else _IMAGENET
    return U2Net(
        session=session,
        input_name=inputs[0].name,
        side=(width, height),
        mean=np.array(mean, dtype=np.float32),
        std=np.array(std, dtype=np.float32),
        name=Path(path).stem,
    )
