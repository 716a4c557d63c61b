"""The architecture table and the cached legacy ONNX export."""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.extras import require

EXPORT_VERSION = 1  # bump when an architecture changes, so cached exports are rebuilt
SEED = 0


@dataclass(frozen=True)
class ArchSpec:
    name: str
    default_input: tuple[int, ...]
    description: str
    build: Callable[[], object]
    # Tracing runs one forward pass; big detectors trace at a small size with dynamic H/W and the
    # real size is pinned afterwards, which keeps an 800x800 RetinaNet export to seconds.
    trace_hw: tuple[int, int] | None = None
    # The only H x W a classifier with a flattened FC input takes (None: any size).
    fixed_hw: tuple[int, int] | None = None
    # H and W must be multiples of this where upsampled maps are joined with earlier ones.
    multiple: int = 1


def _builder(module: str, name: str) -> Callable[[], object]:
    def build():
        return getattr(importlib.import_module(f"dlakit.zoo.arch.{module}"), name)()

    return build


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "resnet18",
            (1, 3, 224, 224),
            "ResNet-18 (He et al. 2015), ImageNet layout",
            _builder("classify", "resnet18"),
            (64, 64),
        ),
        ArchSpec(
            "resnet34",
            (1, 3, 224, 224),
            "ResNet-34, ImageNet layout",
            _builder("classify", "resnet34"),
            (64, 64),
        ),
        ArchSpec(
            "resnet50",
            (1, 3, 224, 224),
            "ResNet-50 (bottleneck), ImageNet layout",
            _builder("classify", "resnet50"),
            (64, 64),
        ),
        ArchSpec(
            "resnet101",
            (1, 3, 224, 224),
            "ResNet-101 (bottleneck, 3/4/23/3 blocks), ImageNet layout",
            _builder("classify", "resnet101"),
            (64, 64),
        ),
        ArchSpec(
            "resnet152",
            (1, 3, 224, 224),
            "ResNet-152 (bottleneck, 3/8/36/3 blocks), ImageNet layout",
            _builder("classify", "resnet152"),
            (64, 64),
        ),
        ArchSpec(
            "mobilenetv1",
            (1, 3, 224, 224),
            "MobileNetV1 1.0 (Howard et al. 2017)",
            _builder("classify", "MobileNetV1"),
            (64, 64),
        ),
        ArchSpec(
            "vgg16",
            (1, 3, 224, 224),
            "VGG-16 (configuration D), 138 M parameters",
            _builder("classify", "vgg16"),
            fixed_hw=(224, 224),
        ),
        ArchSpec(
            "vgg19",
            (1, 3, 224, 224),
            "VGG-19 (configuration E), 144 M parameters",
            _builder("classify", "vgg19"),
            fixed_hw=(224, 224),
        ),
        ArchSpec(
            "alexnet",
            (1, 3, 224, 224),
            "AlexNet (Krizhevsky et al. 2012): grouped conv2/4/5 and LRN, as in the paper",
            _builder("classify", "AlexNet"),
            fixed_hw=(224, 224),
        ),
        ArchSpec(
            "googlenet",
            (1, 3, 224, 224),
            "GoogLeNet / Inception v1 (Szegedy et al. 2014), LRN, no auxiliary heads",
            _builder("inception", "GoogLeNet"),
            (64, 64),
        ),
        ArchSpec(
            "inception-v4",
            (1, 3, 299, 299),
            "Inception-v4 (Szegedy et al. 2016) at 299x299",
            _builder("inception", "InceptionV4"),
            (139, 139),
        ),
        ArchSpec(
            "ssd-mobilenetv1",
            (1, 3, 300, 300),
            "SSD-MobileNetV1 (TF OD API coco layout) up to the BoxPredictor convs, no NMS",
            _builder("detect", "SSDMobileNetV1"),
            (96, 96),
        ),
        ArchSpec(
            "resnet34-backbone",
            (1, 3, 768, 1280),
            "ResNet-34 backbone (stages 2-4 outputs) at 1280x768, as in NVIDIA's DLA-SW table",
            _builder("detect", "ResNet34Backbone"),
            (64, 64),
        ),
        ArchSpec(
            "retinanet-resnet34",
            (1, 3, 768, 1280),
            "RetinaNet ResNet-34, FPN P3-P7 + class/box towers, no NMS, 1280x768",
            _builder("detect", "retinanet_resnet34"),
            (128, 128),
            multiple=32,
        ),
        ArchSpec(
            "ssd-resnet34",
            (1, 3, 1200, 1200),
            "SSD-ResNet-34 (MLPerf Inference) at 1200x1200, heads only, no NMS",
            _builder("detect", "SSDResNet34"),
            (400, 400),
        ),
        ArchSpec(
            "retinanet-resnext50",
            (1, 3, 800, 800),
            "RetinaNet ResNeXt-50 32x4d (MLPerf Inference, 264 classes), no NMS, 800x800",
            _builder("detect", "retinanet_resnext50"),
            (128, 128),
            multiple=32,
        ),
        ArchSpec(
            "yolov3-tiny",
            (1, 3, 416, 416),
            "YOLOv3-tiny (darknet cfg), 13x13 and 26x26 heads, no decoding or NMS",
            _builder("yolo", "YoloV3Tiny"),
            (64, 64),
            multiple=32,
        ),
        ArchSpec(
            "yolov5s",
            (1, 3, 672, 672),
            "YOLOv5s v6.0 (Conv/C3/SPPF, SiLU) at 672x672 as in NVIDIA's cuDLA sample, "
            "P3-P5 heads, no decoding or NMS",
            _builder("yolo", "YoloV5s"),
            (64, 64),
            multiple=32,
        ),
    )
}


def cache_path(name: str, input_shape: tuple[int, ...]) -> Path:
    from dlakit.paths import cache_dir

    shape = "x".join(map(str, input_shape))
    return cache_dir() / "models" / "arch" / f"{name}-{shape}-v{EXPORT_VERSION}.onnx"


def export_onnx(
    name: str, path: Path | None = None, input_shape: tuple[int, ...] | None = None
) -> Path:
    """Export architecture ``name`` at ``input_shape`` (default: its ``default_input``).

    With ``path`` the file is written there; the export itself is cached under
    ``cache_dir()/models/arch`` and copied, since large detectors take seconds to trace.
    """
    spec = ARCHS.get(name)
    if spec is None:
        raise DlakitError(f"unknown architecture '{name}' (known: {', '.join(sorted(ARCHS))})")
    shape = tuple(input_shape or spec.default_input)
    _check_shape(spec, shape)
    cached = cache_path(name, shape)
    if not cached.is_file():
        if spec.trace_hw and shape[2:] not in (spec.trace_hw, spec.default_input[2:]):
            _check_runs(spec, shape)
        _export(spec, shape, cached)
    if path is None:
        return cached
    path = Path(path)
    if path.resolve() != cached.resolve():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cached.read_bytes())
    return path


def _check_shape(spec: ArchSpec, shape: tuple[int, ...]) -> None:
    text = "x".join(map(str, shape))
    if len(shape) != 4 or any(d <= 0 for d in shape) or shape[1] != 3:
        raise DlakitError(f"architecture '{spec.name}': input shape {text} must be N x 3 x H x W")
    hw = tuple(shape[2:])
    if spec.fixed_hw and hw != spec.fixed_hw:
        fixed = "x".join(map(str, spec.fixed_hw))
        raise DlakitError(
            f"architecture '{spec.name}': its fully connected classifier takes the feature map of "
            f"a {fixed} input only, not {hw[0]}x{hw[1]}"
        )
    if any(d % spec.multiple for d in hw):
        raise DlakitError(
            f"architecture '{spec.name}': height and width must be multiples of {spec.multiple}, "
            f"its coarsest stride, since it joins upsampled maps with finer ones; "
            f"not {hw[0]}x{hw[1]}"
        )


def _check_runs(spec: ArchSpec, shape: tuple[int, ...]) -> None:
    """Run the network on the meta device (shapes only, no memory) at ``shape``: the export traces
    at ``trace_hw``, and neither it nor ONNX shape inference sees that an asked size is too small
    for some layer (a valid 3x3 conv on a 2x2 map)."""
    import torch

    with torch.device("meta"), torch.no_grad():
        model = spec.build()
        try:
            model.eval()(torch.empty(shape))
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0]
            text = "x".join(map(str, shape))
            raise DlakitError(f"architecture '{spec.name}' cannot take {text}: {reason}") from None


def _export(spec: ArchSpec, shape: tuple[int, ...], dest: Path) -> None:
    import onnx

    from dlakit.graph import save_model

    require("torch", f"zoo architecture {spec.name!r} (built and exported in PyTorch)")
    import torch

    torch.manual_seed(SEED)
    model = spec.build()
    model.eval()
    trace_hw = spec.trace_hw or shape[2:]
    example = torch.zeros(1, 3, *trace_hw)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.{hashlib.sha1(str(dest).encode()).hexdigest()[:6]}")
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is deliberate (DLA-friendly ops); its deprecation notice is noise,
        # and so are trace warnings from the bodies of layers whose ONNX symbolic replaces them.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}},
        )
    proto = onnx.load(str(tmp))
    tmp.unlink()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = value
    for out in proto.graph.output:
        out.type.tensor_type.ClearField("shape")
    save_model(onnx.shape_inference.infer_shapes(proto), tmp)
    tmp.replace(dest)
