"""Write the GPU kernels of YOLOv5s at 672x672 into src/dlakit/perf/data/gpu_calibration.toml.

The GPU model is calibrated on NVIDIA's YOLOv5s 672x672 INT8 GPU times (cuDLA-samples README,
via perf_calibration.md). The fit needs the network's per-kernel shapes; they are kept in the
calibration file as data, so the fit does not depend on a zoo build. This script makes them:
YOLOv5s v6.0 (ultralytics yolov5s.yaml: depth 0.33, width 0.50, 6x6 stem, SPPF, 80 classes,
3 anchors), written here in PyTorch with random weights, exported with the legacy exporter and
cut into kernels by ``dlakit.perf.gpu_model.gpu_kernels``. When the zoo has ``yolov5s``,
``tests/plan/test_gpu_model.py`` checks that its kernels give the same time as this table.

    python bench/plan_yolov5s_kernels.py
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "dlakit" / "perf" / "data" / "gpu_calibration.toml"
FIELDS = ("kind", "in_shape", "groups", "macs", "weights", "in_elems", "ew_elems", "out_elems")


class Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, c, 1), Conv(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True) -> None:
        super().__init__()
        c = cout // 2
        self.cv1, self.cv2, self.cv3 = Conv(cin, c), Conv(cin, c), Conv(2 * c, cout)
        self.m = nn.Sequential(*(Bottleneck(c, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        c = cin // 2
        self.cv1, self.cv2 = Conv(cin, c), Conv(4 * c, cout)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class YOLOv5s(nn.Module):
    """yolov5s.yaml (v6.0) to the three Detect convs (no box decoding, as in the cuDLA sample)."""

    def __init__(self, classes: int = 80) -> None:
        super().__init__()
        self.b0, self.b1 = Conv(3, 32, 6, 2, 2), Conv(32, 64, 3, 2)
        self.b2, self.b3 = C3(64, 64, 1), Conv(64, 128, 3, 2)
        self.b4, self.b5 = C3(128, 128, 2), Conv(128, 256, 3, 2)
        self.b6, self.b7 = C3(256, 256, 3), Conv(256, 512, 3, 2)
        self.b8, self.b9 = C3(512, 512, 1), SPPF(512, 512)
        self.h10, self.h13 = Conv(512, 256), C3(512, 256, 1, False)
        self.h14, self.h17 = Conv(256, 128), C3(256, 128, 1, False)
        self.h18, self.h20 = Conv(128, 128, 3, 2), C3(256, 256, 1, False)
        self.h21, self.h23 = Conv(256, 256, 3, 2), C3(512, 512, 1, False)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        out = 3 * (classes + 5)
        self.detect = nn.ModuleList(nn.Conv2d(c, out, 1) for c in (128, 256, 512))

    def forward(self, x):
        x = self.b3(self.b2(self.b1(self.b0(x))))
        p3 = self.b4(x)
        p4 = self.b6(self.b5(p3))
        x10 = self.h10(self.b9(self.b8(self.b7(p4))))
        x14 = self.h14(self.h13(torch.cat((self.up(x10), p4), 1)))
        out3 = self.h17(torch.cat((self.up(x14), p3), 1))
        out4 = self.h20(torch.cat((self.h18(out3), x14), 1))
        out5 = self.h23(torch.cat((self.h21(out4), x10), 1))
        return tuple(d(t) for d, t in zip(self.detect, (out3, out4, out5), strict=True))


def export(path: Path, size: int = 672) -> Path:
    torch.manual_seed(0)
    model = YOLOv5s().eval()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
        )
    return path


def table_rows() -> list[str]:
    from dlakit.graph import load_model
    from dlakit.perf.gpu_model import gpu_kernels

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(export(Path(tmp) / "yolov5s.onnx"))
    rows = []
    for k in gpu_kernels(model):
        if k.kind in ("view", "concat"):
            continue
        values = [f'"{k.kind}"', str(list(k.in_shape)), *(str(getattr(k, f)) for f in FIELDS[2:])]
        rows.append("    [" + ", ".join(values) + "],")
    return rows


def main() -> int:
    rows = table_rows()
    text = TABLE.read_text()
    block = "kernels = [\n" + "\n".join(rows) + "\n]"
    new, count = re.subn(r"kernels = \[\n.*?^\]", lambda _: block, text, flags=re.S | re.M)
    if count != 1:
        print(f"{TABLE}: no 'kernels = [...]' block to replace", file=sys.stderr)
        return 1
    TABLE.write_text(new)
    print(f"{len(rows)} kernels written to {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
