"""The matting engines behind ``/rmbg``, picked by `load_matting`: ``classic``, a colour
threshold (good on plain backgrounds, not on photos), or ``u2netp``, U²-Net on onnxruntime, its
weights in our wheel (``_weights/``); any U²-Net-compatible ONNX file runs too (rembg's)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

if TYPE_CHECKING:
    import onnxruntime

#: An engine: an RGB image's mask (mode ``L``, its size), 255 where the subject is opaque.
Matting = Callable[[Image.Image], Image.Image]
EngineName = Literal["auto", "u2netp", "classic"]
ENGINES: Final = ("auto", "u2netp", "classic")

#: The softness of the ramp from background (opacity 0) to subject (opacity 1), in colour distance.
RAMP_WIDTH: Final = 40.0
#: A pixel this close to the background colour is background whatever the border's noise.
MIN_THRESHOLD: Final = 12.0
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


def load_matting(
    engine: str, model: Path | None = None, *, threads: int = 1, lone_threads: int = 1
) -> Matting:
    """The engine the server runs, loaded now so a broken model fails at start, not per request.

    ``auto`` is ``u2netp`` when the ``model`` extra is installed (or ``model`` is given), else
    ``classic``; see `load_u2net` for ``model`` and the threads.
    """
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "classic":
        if model is not None:
            raise ModelError("a model file needs the u2netp engine, not classic")
        return classic
    if engine == "auto" and model is None and not model_installed():
        return classic
    return load_u2net(model, threads=threads, lone_threads=lone_threads)


def fallback_notice(engine: str, model: Path | None = None) -> str | None:
    """What ``auto`` runs instead of the model and why, when it cannot run the model; else None.
    The command line prints it: else a photo cut by the threshold looks like a model's failure."""
    reason = model_unavailable()
    if engine != "auto" or model is not None or reason is None:
        return None
    return (
        "engine: classic (a colour threshold: fine on plain backgrounds, poor on photos), "
        f"not the U²-Net model: {reason}"
    )


def engine_name(matting: Matting) -> str:
    """A short name of a loaded engine, for logs and the command line."""
    return str(getattr(matting, "name", "classic"))


def classic(image: Image.Image) -> Image.Image:
    """The classic engine, an RGB image's mask: opacity ramps up with the colour distance from
    the border's median (a soft threshold scaled to the border's own noise), then a small blur
    feathers the edge."""
    rgb = np.asarray(image)
    band = max(1, min(image.size) // 100)
    sides = (rgb[:band], rgb[-band:], rgb[:, :band], rgb[:, -band:])
    border = np.concatenate([side.reshape(-1, 3) for side in sides]).astype(np.float32)
    background = np.median(border, axis=0)
    noise = float(np.percentile(_distance(border, background), 95)) if border.size else 0.0
    low = max(MIN_THRESHOLD, noise * 1.5)
    distance = _distance(rgb.astype(np.float32), background)
    alpha = np.clip((distance - low) * (255.0 / RAMP_WIDTH), 0.0, 255.0).astype(np.uint8)
    radius = max(1.0, min(image.size) / 600)
    return Image.fromarray(alpha, mode="L").filter(ImageFilter.GaussianBlur(radius))


def _distance(
    pixels: npt.NDArray[np.float32], colour: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    difference = pixels - colour
    # einsum squares and sums the channels in one pass, twice as fast as (d * d).sum(-1).
    squared = np.einsum("...i,...i->...", difference, difference)
    result: npt.NDArray[np.float32] = np.sqrt(squared)
    return result


def _feather(alpha: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    radius = max(1.0, min(alpha.shape) / 600)
    blurred = Image.fromarray(alpha, mode="L").filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, dtype=np.uint8)


@attrs.frozen
class U2Net:
    """A loaded model: call it with an RGB image to get its mask. ``lone_session`` (all the
    cores on one inference, not one per worker) runs a request with the machine to itself."""

    session: onnxruntime.InferenceSession
    input_name: str
    side: tuple[int, int]
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    name: str = "u2netp"
    lone_session: onnxruntime.InferenceSession | None = None

    def __call__(self, image: Image.Image) -> Image.Image:
        """The mask (mode ``L``, the image's size): 255 where the subject is."""
        # Down by Lanczos, as rembg: bilinear loses thin parts (IoU 0.95 with rembg's mask, not
        # 0.999); reducing_gap first shrinks by whole factors (2048×1536: 8 ms, not 25).
        small = image.resize(self.side, Image.Resampling.LANCZOS, reducing_gap=2.0)
        pixels = np.asarray(small, dtype=np.float32)
        pixels = (pixels / max(1.0, float(pixels.max())) - self.mean) / self.std
        tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis])
        output = self.session.run(None, {self.input_name: tensor})[0]
        prediction = np.asarray(output, dtype=np.float32).reshape(self.side[::-1])
        low, high = float(prediction.min()), float(prediction.max())
        scaled = (prediction - low) / (high - low) if high > low else prediction * 0
        mask = Image.fromarray((scaled * 255.0 + 0.5).astype(np.uint8), mode="L")
        # Up by bilinear: half Lanczos's time (5 ms, not 10), the same mask (IoU 0.9998): the
        # 320-px prediction has no finer detail for Lanczos to keep.
        return mask.resize(image.size, Image.Resampling.BILINEAR)

    def alone(self) -> U2Net:
        """This model running each inference on every core: for a request with no company."""
        if self.lone_session is None:
            return self
        return attrs.evolve(self, session=self.lone_session, lone_session=None)


def load_u2net(path: Path | None, *, threads: int = 1, lone_threads: int = 1) -> U2Net:
    """The model at ``path`` (the bundled one if ``None``), loaded and tried once; each inference
    on ``threads`` cores, or ``lone_threads`` when `U2Net.alone`. Shared by the servers of the
    process (sessions are thread-safe): a ``LocalServer`` after the first starts at once."""
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
    # The arena is kept (without it, page faults cost ~25% of the throughput) and shared by
    # all sessions of the process, so the lone session adds no memory; with no memory pattern
    # each inference takes only the blocks it needs (two at once: 685 MB, not 1,327).
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
