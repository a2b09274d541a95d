"""The preprocessing spec: how an image becomes the model's input tensor.

Stored with the model (provenance), so calibration, evaluation and the device all
preprocess identically. Applied with OpenCV, imported only when an image is read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from kit.errors import InputError, RuntimeUnavailableError
from kit.specs import TensorSpec

RESIZE_MODES = ("stretch", "letterbox", "crop")
COLORS = ("rgb", "bgr", "gray")
LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Preprocess:
    """``size`` is (height, width); pixels become ``(pixel * scale - mean) / std`` per channel."""

    size: tuple[int, int]
    resize: str = "stretch"
    color: str = "rgb"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    dtype: str = "float32"

    def __post_init__(self):
        for value, allowed, key in ((self.resize, RESIZE_MODES, "resize"), (self.color, COLORS, "color"),
                                    (self.layout, LAYOUTS, "layout")):
            if value not in allowed:
                raise InputError(f"expected preprocessing {key} among {', '.join(allowed)}, found {value!r}.",
                                 hint=f"Write e.g. --preprocess {key}={allowed[0]}.")
        channels = 1 if self.color == "gray" else 3
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) not in (1, channels):
                raise InputError(f"expected 1 or {channels} values for {key} with color={self.color}, "
                                 f"found {len(values)}.", hint="Separate per-channel values with '/'.")
        if any(s == 0 for s in self.std):
            raise InputError("expected non-zero std values, found 0.", hint="Use std=1 for no scaling.")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def to_dict(self) -> dict:
        data = asdict(self)
        return {**data, "size": list(self.size), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        return cls(**{**data, "size": tuple(data["size"]), "mean": tuple(data["mean"]), "std": tuple(data["std"])})

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
                   scale=1.0 if integer_input else 1 / 255, dtype=spec.dtype)
        return base.updated(text) if text else base

    def updated(self, text: str) -> Preprocess:
        """Apply ``size=224,mean=0.485/0.456/0.406,std=...,color=bgr,layout=nhwc,resize=crop,scale=...``."""
        changes: dict = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in self.__dataclass_fields__:
                raise InputError(f"expected key=value with a key among {', '.join(self.__dataclass_fields__)}, "
                                 f"found {item!r} in --preprocess.",
                                 hint="Example: --preprocess size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225")
            try:
                if key == "size":
                    dims = [int(v) for v in value.lower().split("x")]
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
        try:
            import cv2
        except ImportError as exc:
            raise RuntimeUnavailableError("reading images needs OpenCV, which is not installed.",
                                          hint='Install it with: pip install "edge-inference-kit[image]"') from exc
        path = Path(path)
        if not path.is_file():
            raise InputError(f"image {path} does not exist.", hint="Check the path.")
        flag = cv2.IMREAD_GRAYSCALE if self.color == "gray" else cv2.IMREAD_COLOR
        image = cv2.imread(str(path), flag)
        if image is None:
            raise InputError(f"could not decode {path} as an image.",
                             hint="Expected a PNG, JPEG, BMP or another format OpenCV reads.")
        return self.apply(image)

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


def _resize(image: np.ndarray, size: tuple[int, int], mode: str, cv2) -> np.ndarray:
    height, width = size
    if mode == "stretch":
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    if mode == "letterbox":  # fit inside, pad with gray as YOLO-style pipelines do
        ratio = min(height / h, width / w)
        new_h, new_w = max(1, round(h * ratio)), max(1, round(w * ratio))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        return cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left,
                                  cv2.BORDER_CONSTANT, value=(114, 114, 114))
    ratio = max(height / h, width / w)  # crop: cover, then cut the centre
    new_h, new_w = max(height, round(h * ratio)), max(width, round(w * ratio))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[top:top + height, left:left + width]
