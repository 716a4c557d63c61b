"""Image preprocessing as a small value object with a one-line text form.

Text form (the ``--preprocess`` flag): comma-separated ``key=value`` items, optionally after a
preset name whose values they override, e.g. ``imagenet`` or ``imagenet,crop=192`` or
``resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,order=rgb``.

Keys, applied in this order to each uint8 image:

* ``order``: ``rgb`` | ``bgr`` | ``gray``, the colour conversion and the channel order fed to
  the model.
* ``resize``: ``N`` scales the shorter side to N (aspect kept); ``HxW`` resizes to exactly H×W.
  Bilinear, as PIL does it.
* ``crop``: ``N`` or ``HxW``, a centre crop.
* ``scale``: multiplies the pixel values first (default ``1/255``; ``1`` keeps 0..255).
* ``mean`` / ``std``: per output channel, in ``order`` (one value, or one per channel separated
  by ``/``): ``(x * scale - mean) / std``.
* ``layout``: ``nchw`` (default) or ``nhwc``.

The presets of the zoo models live in ``presets.toml``.
"""

import tomllib
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from functools import cache
from importlib import resources

import numpy as np
from PIL import Image

from dlakit.errors import DlakitError

_ORDERS = ("rgb", "bgr", "gray")
_LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Preprocess:
    """How one uint8 image becomes one float32 model input (see the module docstring)."""

    order: str = "rgb"
    resize: int | tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"

    @property
    def channels(self) -> int:
        return 1 if self.order == "gray" else 3

    def output_hw(self) -> tuple[int, int] | None:
        """The H×W every image ends up with, or None when it depends on the image."""
        if self.crop:
            return self.crop
        return self.resize if isinstance(self.resize, tuple) else None

    def check(self, input_shape: tuple[int, ...]) -> None:
        """DlakitError unless this preprocess yields tensors of the model's ``input_shape``."""
        if len(input_shape) != 4:
            raise DlakitError(f"preprocess needs a 4-D image input, the model has {input_shape}")
        c, h, w = input_shape[1:] if self.layout == "nchw" else (input_shape[3], *input_shape[1:3])
        if c != self.channels:
            raise DlakitError(
                f"preprocess '{self}' gives {self.channels}-channel images but the model input "
                f"{'x'.join(map(str, input_shape))} has {c} channels (set order=gray/rgb/bgr)"
            )
        hw = self.output_hw()
        if hw is not None and hw != (h, w):
            raise DlakitError(
                f"preprocess '{self}' gives {hw[0]}x{hw[1]} images but the model input "
                f"{'x'.join(map(str, input_shape))} needs {h}x{w} (set resize= or crop=)"
            )

    def apply(self, image: np.ndarray) -> np.ndarray:
        """One uint8 H×W or H×W×C image → float32 C×H×W (or H×W×C for ``layout=nhwc``)."""
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise DlakitError(f"an image must be HxW or HxWx1/3/4, not {image.shape}")
        if image.dtype != np.uint8:
            raise DlakitError(f"images must be uint8 (0..255), not {image.dtype}")
        img = Image.fromarray(image if image.ndim == 2 or image.shape[2] != 1 else image[..., 0])
        img = img.convert("L" if self.order == "gray" else "RGB")
        if isinstance(self.resize, tuple):
            img = img.resize((self.resize[1], self.resize[0]), Image.Resampling.BILINEAR)
        elif self.resize:
            ratio = self.resize / min(img.size)
            size = (max(1, round(img.size[0] * ratio)), max(1, round(img.size[1] * ratio)))
            img = img.resize(size, Image.Resampling.BILINEAR)
        if self.crop:
            img = _centre_crop(img, self.crop)
        x = np.asarray(img, dtype=np.float32)
        x = x[..., None] if x.ndim == 2 else x
        if self.order == "bgr":
            x = x[..., ::-1]
        x = (x * np.float32(self.scale) - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(x.transpose(2, 0, 1) if self.layout == "nchw" else x)

    def __str__(self) -> str:
        items = [f"order={self.order}"]
        if self.resize:
            items.append(f"resize={_size_text(self.resize)}")
        if self.crop:
            items.append(f"crop={_size_text(self.crop)}")
        items.append(f"scale={_number_text(self.scale)}")
        if self.mean != (0.0,):
            items.append("mean=" + "/".join(_number_text(v) for v in self.mean))
        if self.std != (1.0,):
            items.append("std=" + "/".join(_number_text(v) for v in self.std))
        if self.layout != "nchw":
            items.append(f"layout={self.layout}")
        return ",".join(items)


def _centre_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    h, w = size
    if img.height < h or img.width < w:
        raise DlakitError(f"cannot centre-crop {h}x{w} from a {img.height}x{img.width} image")
    top, left = round((img.height - h) / 2), round((img.width - w) / 2)  # torchvision's rounding
    return img.crop((left, top, left + w, top + h))


@cache
def presets() -> dict[str, str]:
    """The named presets (name → text form) of ``presets.toml``."""
    text = resources.files("dlakit.data").joinpath("presets.toml").read_text()
    return tomllib.loads(text)["presets"]


def preset(name: str) -> Preprocess:
    if name not in presets():
        raise DlakitError(f"no preprocess preset {name!r} (known: {', '.join(presets())})")
    return parse_preprocess(presets()[name])


def parse_preprocess(text: str) -> Preprocess:
    """Parse the text form (a preset name and/or ``key=value`` items); DlakitError if malformed."""
    result = Preprocess()
    known = {f.name for f in fields(Preprocess)}
    for i, item in enumerate(filter(None, (t.strip() for t in text.split(",")))):
        if "=" not in item:
            if i != 0:
                raise DlakitError(f"preprocess {text!r}: {item!r} is not key=value")
            result = preset(item)
            continue
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in known:
            raise DlakitError(
                f"preprocess {text!r}: unknown key {key!r} (known: {', '.join(known)})"
            )
        try:
            result = replace(result, **{key: _parse_value(key, value)})
        except (ValueError, ZeroDivisionError):
            raise DlakitError(f"preprocess {text!r}: bad value for {key}: {value!r}") from None
    if len(result.mean) not in (1, result.channels) or len(result.std) not in (1, result.channels):
        raise DlakitError(f"preprocess {text!r}: mean/std need 1 or {result.channels} values")
    if any(s == 0 for s in result.std):
        raise DlakitError(f"preprocess {text!r}: std must not be 0")
    return result


def _parse_value(key: str, value: str) -> object:
    if key == "order":
        return _choice(value, _ORDERS)
    if key == "layout":
        return _choice(value, _LAYOUTS)
    if key == "resize":
        return _parse_size(value) if "x" in value else _positive(int(value))
    if key == "crop":
        return _parse_size(value)
    if key == "scale":
        return float(Fraction(value))
    return tuple(float(Fraction(v)) for v in value.split("/"))  # mean, std


def _choice(value: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise ValueError(value)
    return value.lower()


def _parse_size(value: str) -> tuple[int, int]:
    parts = value.lower().split("x")
    if len(parts) == 1:
        return (_positive(int(parts[0])),) * 2
    if len(parts) != 2:
        raise ValueError(value)
    return _positive(int(parts[0])), _positive(int(parts[1]))


def _positive(n: int) -> int:
    if n <= 0:
        raise ValueError(n)
    return n


def _size_text(size: int | tuple[int, int]) -> str:
    return str(size) if isinstance(size, int) else f"{size[0]}x{size[1]}"


def _number_text(v: float) -> str:
    frac = Fraction(v).limit_denominator(1000)
    if frac.denominator != 1 and abs(float(frac) - v) < 1e-12 and frac.numerator == 1:
        return f"1/{frac.denominator}"
    return f"{v:g}"
