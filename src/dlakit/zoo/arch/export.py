"""The architecture table and the cached legacy ONNX export."""

from __future__ import annotations

import hashlib
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


def _classify(name: str):
    def build():
        from dlakit.zoo.arch import classify

        return getattr(classify, name)()

    return build


def _detect(name: str):
    def build():
        from dlakit.zoo.arch import detect

        return getattr(detect, name)()

    return build


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "resnet18",
            (1, 3, 224, 224),
            "ResNet-18 (He et al. 2015), ImageNet layout",
            _classify("resnet18"),
            (64, 64),
        ),
        ArchSpec(
            "resnet34",
            (1, 3, 224, 224),
            "ResNet-34, ImageNet layout",
            _classify("resnet34"),
            (64, 64),
        ),
        ArchSpec(
            "resnet50",
            (1, 3, 224, 224),
            "ResNet-50 (bottleneck), ImageNet layout",
            _classify("resnet50"),
            (64, 64),
        ),
        ArchSpec(
            "mobilenetv1",
            (1, 3, 224, 224),
            "MobileNetV1 1.0 (Howard et al. 2017)",
            _classify("MobileNetV1"),
            (64, 64),
        ),
        ArchSpec(
            "vgg16",
            (1, 3, 224, 224),
            "VGG-16 (configuration D), 138 M parameters",
            _classify("VGG16"),
        ),
        ArchSpec(
            "ssd-mobilenetv1",
            (1, 3, 300, 300),
            "SSD-MobileNetV1 (TF OD API coco layout) up to the BoxPredictor convs, no NMS",
            _detect("SSDMobileNetV1"),
            (96, 96),
        ),
        ArchSpec(
            "resnet34-backbone",
            (1, 3, 768, 1280),
            "ResNet-34 backbone (stages 2-4 outputs) at 1280x768, as in NVIDIA's DLA-SW table",
            _detect("ResNet34Backbone"),
            (64, 64),
        ),
        ArchSpec(
            "retinanet-resnet34",
            (1, 3, 768, 1280),
            "RetinaNet ResNet-34, FPN P3-P7 + class/box towers, no NMS, 1280x768",
            _detect("retinanet_resnet34"),
            (128, 128),
        ),
        ArchSpec(
            "ssd-resnet34",
            (1, 3, 1200, 1200),
            "SSD-ResNet-34 (MLPerf Inference) at 1200x1200, heads only, no NMS",
            _detect("SSDResNet34"),
            (400, 400),
        ),
        ArchSpec(
            "retinanet-resnext50",
            (1, 3, 800, 800),
            "RetinaNet ResNeXt-50 32x4d (MLPerf Inference, 264 classes), no NMS, 800x800",
            _detect("retinanet_resnext50"),
            (128, 128),
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
    if len(shape) != 4 or any(d <= 0 for d in shape) or shape[1] != 3:
        raise DlakitError(f"architecture '{name}': input shape {shape} must be N x 3 x H x W")
    cached = cache_path(name, shape)
    if not cached.is_file():
        _export(spec, shape, cached)
    if path is None:
        return cached
    path = Path(path)
    if path.resolve() != cached.resolve():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cached.read_bytes())
    return path


def _export(spec: ArchSpec, shape: tuple[int, ...], dest: Path) -> None:
    import onnx

    from dlakit.graph import save_model

    require("torch", f"zoo architecture {spec.name!r} (built and exported in PyTorch)")
    import torch

    torch.manual_seed(SEED)
    model = spec.build()
    model.eval()
    trace_hw = spec.trace_hw or shape[2:]
    if spec.name == "vgg16" and tuple(shape[2:]) != (224, 224):
        raise DlakitError("vgg16: its 25088-input classifier needs a 224x224 input")
    example = torch.zeros(1, 3, *trace_hw)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.{hashlib.sha1(str(dest).encode()).hexdigest()[:6]}")
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is deliberate (DLA-friendly ops); its deprecation notice is noise.
        warnings.simplefilter("ignore", DeprecationWarning)
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
