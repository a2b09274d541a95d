"""The preprocessing spec: how an image becomes the model's input tensor.

Stored with the model (provenance), so calibration, evaluation and the device all
preprocess identically. Applied with OpenCV, imported only when an image is read.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from kit.core.errors import InputError, KitWarning, RuntimeUnavailableError
from kit.core.specs import TensorSpec

RESIZE_MODES = ("stretch", "letterbox", "crop")
COLORS = ("rgb", "bgr", "gray")
LAYOUTS = ("nchw", "nhwc")
DTYPES = ("float32", "float16", "float64", "uint8", "int8")
# The largest side an image is resized to. A stored spec is read from a file the kit did not
# necessarily write: 100000x100000 would allocate tens of GB per image before any check.
MAX_SIDE = 8192
EXAMPLE = "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"


@dataclass(frozen=True)
class Preprocess:
    """``size`` is (height, width); pixels become ``(pixel * scale - mean) / std`` per channel.

    Every field is checked when the spec is made (from ``--preprocess`` text, a stored dict or
    Python), so a bad spec is refused before any image is decoded or any memory allocated.
    """

    size: tuple[int, int]
    resize: str = "stretch"
    color: str = "rgb"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    dtype: str = "float32"

    def __post_init__(self):
        set_field = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen)
        set_field("size", _size(self.size))
        for key, allowed in (("resize", RESIZE_MODES), ("color", COLORS), ("layout", LAYOUTS), ("dtype", DTYPES)):
            value = getattr(self, key)
            if value not in allowed:
                raise InputError(f"expected preprocessing {key} among {', '.join(allowed)}, found {value!r}.",
                                 hint=f"Write e.g. --preprocess {key}={allowed[0]}.")
        set_field("scale", _number("scale", self.scale, positive=True))
        channels = self.channels
        for key in ("mean", "std"):
            values = getattr(self, key)
            values = (values,) if isinstance(values, numbers.Real) else values
            if not isinstance(values, (tuple, list)) or len(values) not in (1, channels):
                count = len(values) if isinstance(values, (tuple, list)) else type(values).__name__
                raise InputError(f"expected 1 or {channels} values for {key} with color={self.color}, "
                                 f"found {count}.", hint="Separate per-channel values with '/'.")
            set_field(key, tuple(_number(key, v, positive=key == "std") for v in values))

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def to_dict(self) -> dict:
        data = asdict(self)
        return {**data, "size": list(self.size), "mean": list(self.mean), "std": list(self.std)}

    def to_text(self) -> str:
        """The spec in ``--preprocess`` syntax, to show a user what is applied."""
        join = lambda values: "/".join(f"{v:g}" for v in values)  # noqa: E731
        return (f"size={self.size[0]}x{self.size[1]},resize={self.resize},color={self.color},scale={self.scale:g},"
                f"mean={join(self.mean)},std={join(self.std)},layout={self.layout},dtype={self.dtype}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "the stored preprocessing") -> Preprocess:
        """A stored spec (a model's provenance): anything wrong in it names ``source``."""
        hint = "Re-export the model with a valid --preprocess."
        if not isinstance(data, dict):
            raise InputError(f"{source} is not a preprocessing spec: expected a JSON object, found "
                             f"{type(data).__name__}.", hint=hint)
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), "size" not in data
        if unknown or missing:
            raise InputError(f"{source} is not a preprocessing spec: " + (f"unknown keys {', '.join(unknown)}"
                             if unknown else "no size") + f" (expected keys among {', '.join(sorted(known))}).",
                             hint=hint)
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(f"{source} is invalid: {exc.message}", hint=hint) from None

    @classmethod
    def for_input(cls, spec: TensorSpec, text: str | None = None) -> Preprocess:
        """Defaults read off an image input's shape, overridden by ``key=value,...`` text."""
        shape = spec.shape or ()
        if len(shape) != 4:
            raise InputError(f"image preprocessing needs a 4-D input (N,C,H,W or N,H,W,C); "
                             f"input {spec.describe()} is not.", hint="Feed this model arrays instead of images.")
        nhwc = shape[3] in (1, 3) and shape[1] not in (1, 3)
        channels, height, width = (shape[3], shape[1], shape[2]) if nhwc else (shape[1], shape[2], shape[3])
        integer_input = spec.dtype in ("uint8", "int8")  # quantized I/O takes raw pixels, unscaled
        base = cls(size=(height if isinstance(height, int) else 224, width if isinstance(width, int) else 224),
                   color="gray" if channels == 1 else "rgb", layout="nhwc" if nhwc else "nchw",
                   scale=1.0 if integer_input else 1 / 255, dtype=spec.dtype if spec.dtype in DTYPES else "float32")
        return base.updated(text) if text else base

    def updated(self, text: str) -> Preprocess:
        """Apply ``size=224,mean=0.485/0.456/0.406,std=...,color=bgr,layout=nhwc,resize=crop,scale=...``."""
        changes: dict = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in self.__dataclass_fields__:
                raise InputError(f"expected key=value with a key among {', '.join(self.__dataclass_fields__)}, "
                                 f"found {item!r} in --preprocess.", hint=f"Example: --preprocess {EXAMPLE}")
            try:
                if key == "size":
                    dims = [int(v) for v in value.lower().split("x")]
                    if len(dims) > 2:
                        raise ValueError
                    changes[key] = (dims[0], dims[-1])
                elif key in ("mean", "std"):
                    changes[key] = tuple(float(v) for v in value.split("/"))
                elif key == "scale":
                    changes[key] = float(value)
                else:
                    changes[key] = value.strip().lower()
            except ValueError:
                raise InputError(f"could not read {key}={value!r} in --preprocess.",
                                 hint="size is HxW (or one number), mean/std are numbers joined by '/'.") from None
        return replace(self, **changes)

    def load_image(self, path: str | Path) -> np.ndarray:
        """Decode an image file and return a batch of one, ready to feed."""
        return self.apply(self.read(path))

    def read(self, path: str | Path) -> np.ndarray:
        """Decode an image file as OpenCV does (BGR, or gray when the model takes one channel)."""
        try:
            import cv2
        except ImportError as exc:
            raise RuntimeUnavailableError("reading images needs OpenCV, which is not installed.",
                                          hint='Install it with: pip install "edge-inference-kit[image]"') from exc
        path = Path(path)
        if not path.is_file():
            raise InputError(f"image {path} does not exist.", hint="Check the path.")
        image = cv2.imread(str(path), self._decode_flag(cv2))
        if image is None:
            raise InputError(f"could not decode {path} as an image.",
                             hint="Expected a PNG, JPEG, BMP or another format OpenCV reads.")
        return image

    def decode(self, data: bytes) -> np.ndarray:
        """An encoded image (the bytes of a file) decoded as ``read`` decodes the file."""
        import cv2

        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), self._decode_flag(cv2)) if data else None
        except cv2.error:  # e.g. more pixels than OPENCV_IO_MAX_IMAGE_PIXELS allows
            image = None
        if image is None:
            raise InputError(f"could not decode the {len(data):,} bytes received as an image.",
                             hint="Send a PNG, JPEG, BMP or another format OpenCV reads, of at most "
                                  f"{MAX_SIDE}x{MAX_SIDE} pixels.")
        return image

    def _decode_flag(self, cv2) -> int:
        return cv2.IMREAD_GRAYSCALE if self.color == "gray" else cv2.IMREAD_COLOR

    def apply(self, image: np.ndarray) -> np.ndarray:
        """HxW (gray) or HxWx3 (BGR, as OpenCV decodes) uint8 -> a batch of one."""
        import cv2

        image = _resize(image, self.size, self.resize, cv2)
        if self.color == "rgb":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image.ndim == 2:
            image = image[:, :, None]
        if np.dtype(self.dtype).kind == "f":
            image = (image.astype(np.float32) * self.scale - np.float32(self.mean)) / np.float32(self.std)
        if self.layout == "nchw":
            image = image.transpose(2, 0, 1)
        return np.ascontiguousarray(image[None], dtype=self.dtype)


def placement(image_hw: tuple[int, int], size: tuple[int, int], mode: str) -> tuple[float, float, int, int]:
    """Where an image of ``image_hw`` lands in the model's input of ``size`` after resizing:
    (scale_x, scale_y, left, top), so input pixels map back to the image's as
    ``x = (x_in - left) / scale_x``. One arithmetic for resizing and for mapping boxes back."""
    height, width = size
    h, w = image_hw
    if mode == "stretch":
        return width / w, height / h, 0, 0
    ratio = min(height / h, width / w) if mode == "letterbox" else max(height / h, width / w)
    new_h, new_w = max(1, round(h * ratio)), max(1, round(w * ratio))
    if mode == "crop":  # cuts the centre: a negative offset
        new_h, new_w = max(height, new_h), max(width, new_w)
        return new_w / w, new_h / h, -((new_w - width) // 2), -((new_h - height) // 2)
    return new_w / w, new_h / h, (width - new_w) // 2, (height - new_h) // 2  # letterbox pads


def _resize(image: np.ndarray, size: tuple[int, int], mode: str, cv2) -> np.ndarray:
    height, width = size
    scale_x, scale_y, left, top = placement(image.shape[:2], size, mode)
    new_w, new_h = round(image.shape[1] * scale_x), round(image.shape[0] * scale_y)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if mode == "letterbox":  # fit inside, pad with gray as YOLO-style pipelines do
        return cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left,
                                  cv2.BORDER_CONSTANT, value=(114, 114, 114))
    if mode == "crop":  # cover, then cut the centre
        return resized[-top:-top + height, -left:-left + width]
    return resized


def _size(size) -> tuple[int, int]:
    valid = (isinstance(size, (tuple, list)) and len(size) == 2
             and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in size))
    if not valid:
        found = "x".join(map(str, size)) if isinstance(size, (tuple, list)) else repr(size)
        raise InputError(f"expected a preprocessing size of HEIGHTxWIDTH, each from 1 to {MAX_SIDE}, found {found}.",
                         hint="Write e.g. --preprocess size=224 (or size=224x160).")
    return int(size[0]), int(size[1])


def _number(key: str, value, *, positive: bool) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) \
            or (positive and value <= 0):
        raise InputError(f"expected {'positive ' if positive else ''}finite numbers for preprocessing {key}, "
                         f"found {value!r}.", hint=f"Write e.g. --preprocess {EXAMPLE}")
    return float(value)


def for_images(spec: TensorSpec, stored: dict | Preprocess | None = None, given: str | Preprocess | None = None,
               *, model: str | None = None) -> Preprocess:
    """The preprocessing images get for ``spec``: what the model records (``stored``, from its
    provenance) or, for a model that records none, ``given`` (``--preprocess`` text over the
    defaults read off the input's shape, or a whole Preprocess) or else those defaults.

    Falling back to the defaults is warned about (KitWarning): a model exported elsewhere
    usually wants its own mean/std, and nothing else would tell the user. ``given`` for a
    model that records its own is refused: the recorded steps are the ones it was exported with.
    """
    name = model or "the model"
    if stored:
        if given is not None:
            raise InputError(f"{name} records its own preprocessing; --preprocess is for models that record none.",
                             hint="Drop --preprocess: the recorded steps are the ones the model was exported with.")
        return stored if isinstance(stored, Preprocess) else Preprocess.from_dict(
            stored, source=f"the preprocessing stored with {name}")
    if isinstance(given, Preprocess):
        return given
    base = Preprocess.for_input(spec)
    if not given:
        warnings.warn(f"{name} records no preprocessing; images are read with defaults for its input shape "
                      f"({base.to_text()}). State the model's own with --preprocess KEY=VALUE,...", KitWarning,
                      stacklevel=2)
    return base.updated(given) if given else base


class FusedPreprocess:
    """``steps.apply`` through OpenCV's fused ``dnn.blobFromImageWithParams`` (resize, colour
    order, scale, mean/std and layout in one pass; 2-7x faster than apply on 640x480 frames,
    measured here). OpenCV sizes a letterbox and a centre crop with its own rounding, so an
    image size takes the fused path only after its first image gave apply's tensor (to 1e-4);
    otherwise, and for gray, integer or float16 inputs, apply runs. Video frames share one
    size: the check runs once per stream.

    The fused path writes into reused buffers: a fresh 224x224 tensor cost 630 us a frame here
    (page faults), a reused one 130 us. A buffer is handed out again only when nothing but the
    pool holds it (its reference count), so frames still queued or in a model call, and
    concurrent callers, never share one."""

    MAX_SIZES = 64  # image sizes remembered; a folder of many sizes starts over past this
    POOL = 12  # buffers kept: a source's read-ahead and the frame in the model need fewer

    def __init__(self, steps: Preprocess):
        import threading

        self.steps = steps
        self._params = _blob_params(steps)
        self._fused: dict[tuple[int, ...], bool] = {}
        self._pool: list[np.ndarray] = []
        self._pool_lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._params is None or image.ndim != 3 or image.dtype != np.uint8:
            return self.steps.apply(image)
        fused = self._fused.get(image.shape)
        if fused is None:
            import cv2

            reference = self.steps.apply(image)
            blob = cv2.dnn.blobFromImageWithParams(image, self._params)
            if len(self._fused) >= self.MAX_SIZES:
                self._fused.clear()
            self._fused[image.shape] = blob.shape == reference.shape and bool(
                np.allclose(blob, reference, rtol=0, atol=1e-4))
            return reference
        if not fused:
            return self.steps.apply(image)
        import cv2

        return cv2.dnn.blobFromImageWithParams(image, self._free_buffer(), self._params)

    def _free_buffer(self) -> np.ndarray:
        """A pooled buffer of the input's shape no one else holds, or a new one."""
        shape = (1, self.steps.channels, *self.steps.size) if self.steps.layout == "nchw" else (
            1, *self.steps.size, self.steps.channels)
        with self._pool_lock:
            for buffer in self._pool:
                # Held by the pool's list, this loop's name and getrefcount's argument only: free.
                if sys.getrefcount(buffer) <= 3 and buffer.shape == shape:
                    return buffer
            buffer = np.empty(shape, np.float32)
            if len(self._pool) < self.POOL:
                self._pool.append(buffer)
            return buffer


def _blob_params(steps: Preprocess):
    """OpenCV's Image2BlobParams for ``steps``, or None where the fused path does not apply."""
    try:
        import cv2
    except ImportError:
        return None
    if steps.color == "gray" or steps.dtype != "float32" or not hasattr(cv2.dnn, "blobFromImageWithParams"):
        return None

    def constant(name):  # OpenCV 4.x keeps these in cv2.dnn, 5.x in cv2
        return getattr(cv2.dnn, name, None) if hasattr(cv2.dnn, name) else getattr(cv2, name, None)

    modes = {"stretch": "DNN_PMODE_NULL", "letterbox": "DNN_PMODE_LETTERBOX", "crop": "DNN_PMODE_CROP_CENTER"}
    layout, padding = constant(f"DNN_LAYOUT_{steps.layout.upper()}"), constant(modes[steps.resize])
    if layout is None or padding is None:
        return None
    # apply computes (pixel * scale - mean) / std; OpenCV computes scalefactor * (pixel - mean).
    std = steps.std * (3 // len(steps.std))
    mean = steps.mean * (3 // len(steps.mean))
    params = cv2.dnn.Image2BlobParams()
    params.scalefactor = (*(steps.scale / s for s in std), 0.0)
    params.mean = (*(m / steps.scale for m in mean), 0.0)
    params.size = (steps.size[1], steps.size[0])
    params.swapRB = steps.color == "rgb"
    params.ddepth = cv2.CV_32F
    params.datalayout = layout
    params.paddingmode = padding
    params.borderValue = (114.0, 114.0, 114.0, 0.0)
    return params
