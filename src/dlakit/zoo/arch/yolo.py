"""YOLO detectors: YOLOv3-tiny (darknet) at 416x416 and YOLOv5s (Ultralytics v6.0) at 672x672.

As in detect.py, each stops at its detection convolutions: 3 anchors x (80 classes + 5) = 255
channels per output scale. Box decoding (sigmoid, grid and anchor arithmetic) and NMS run after
the network on the GPU or CPU, as NVIDIA's cuDLA YOLOv5 sample does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dlakit.zoo.arch.blocks import PadEndMaxPool, conv_bn

HEAD_CHANNELS = 3 * (80 + 5)


class YoloV3Tiny(nn.Module):
    """darknet's ``cfg/yolov3-tiny.cfg``, layer by layer (indices as darknet numbers them).

    0-11: six 3x3 convs (16, 32, 64, 128, 256, 512), each followed by a 2x2 max pool, stride 2
    for the first five and stride 1 for the last (13x13 stays 13x13); 12: conv 3x3 1024;
    13: conv 1x1 256; 14: conv 3x3 512; 15: conv 1x1 255 (linear, biased), the 13x13 output;
    17: route to 13; 18: conv 1x1 128; 19: 2x upsample; 20: route to 19 and 8 (128 + 256 at
    26x26); 21: conv 3x3 256; 22: conv 1x1 255, the 26x26 output. Every other conv is conv +
    batch norm + leaky ReLU (slope 0.1).
    """

    def __init__(self) -> None:
        super().__init__()
        widths = (16, 32, 64, 128, 256, 512)
        layers: list[nn.Module] = []
        cin = 3
        for index, width in enumerate(widths):
            layers.append(conv_bn(cin, width, 3, act="leaky"))
            # On even maps darknet's end padding changes nothing at stride 2: a plain pool.
            layers.append(nn.MaxPool2d(2, 2) if index < 5 else PadEndMaxPool(2, 1))
            cin = width
        self.backbone_to_8 = nn.Sequential(*layers[:9])  # through conv 8 (256 @ 26x26)
        self.backbone_rest = nn.Sequential(*layers[9:], conv_bn(512, 1024, 3, act="leaky"))
        self.neck = conv_bn(1024, 256, 1, act="leaky")  # 13
        self.head13 = nn.Sequential(
            conv_bn(256, 512, 3, act="leaky"), nn.Conv2d(512, HEAD_CHANNELS, 1)
        )
        self.lateral = nn.Sequential(conv_bn(256, 128, 1, act="leaky"), nn.Upsample(scale_factor=2))
        self.head26 = nn.Sequential(
            conv_bn(128 + 256, 256, 3, act="leaky"), nn.Conv2d(256, HEAD_CHANNELS, 1)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        route8 = self.backbone_to_8(x)
        route13 = self.neck(self.backbone_rest(route8))
        out13 = self.head13(route13)
        out26 = self.head26(torch.cat([self.lateral(route13), route8], 1))
        return out13, out26


# YOLOv5 v6.0 (ultralytics/yolov5 models/yolov5s.yaml): depth multiple 0.33, width multiple
# 0.50. Conv is conv (padding k // 2, no bias) + batch norm + SiLU.


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int | None = None):
    return conv_bn(cin, cout, kernel, stride, act="silu", padding=padding)


class _Bottleneck(nn.Module):
    """1x1 then 3x3 conv at the same width, plus the input where ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv(channels, channels, 1), _conv(channels, channels, 3))
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.convs(x)
        return x + y if self.shortcut else y


class C3(nn.Module):
    """CSP bottleneck with 3 convs: cv1 (1x1 to half width) -> n bottlenecks, cv2 (1x1 to half
    width) beside it, concat, cv3 (1x1 to the output width)."""

    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True) -> None:
        super().__init__()
        hidden = cout // 2
        self.cv1 = _conv(cin, hidden)
        self.cv2 = _conv(cin, hidden)
        self.m = nn.Sequential(*(_Bottleneck(hidden, shortcut) for _ in range(n)))
        self.cv3 = _conv(2 * hidden, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: 1x1 to half width, three chained 5x5/1 max pools, concat
    the four maps, 1x1 to the output width (the same as v5's 5/9/13 SPP in fewer operations)."""

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__()
        hidden = cin // 2
        self.cv1 = _conv(cin, hidden)
        self.pool = nn.MaxPool2d(kernel, 1, kernel // 2)
        self.cv2 = _conv(4 * hidden, cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class YoloV5s(nn.Module):
    """The yolov5s.yaml of v6.0 with its multiples applied (channels x 0.5, C3 repeats 3/6/9 x
    0.33 rounded up to 1/2/3), layer numbers as in the yaml:

    backbone 0 Conv 32 6x6/2 (pad 2), 1 Conv 64 3x3/2, 2 C3 64 x1, 3 Conv 128 /2, 4 C3 128 x2,
    5 Conv 256 /2, 6 C3 256 x3, 7 Conv 512 /2, 8 C3 512 x1, 9 SPPF 512;
    head 10 Conv 256 1x1, 11 upsample, 12 concat 6, 13 C3 256 (no shortcut), 14 Conv 128 1x1,
    15 upsample, 16 concat 4, 17 C3 128 -> P3/8, 18 Conv 128 3x3/2, 19 concat 14, 20 C3 256 ->
    P4/16, 21 Conv 256 3x3/2, 22 concat 10, 23 C3 512 -> P5/32; Detect: a biased 1x1 conv to 255
    channels on each of P3, P4, P5.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv(3, 32, 6, 2, padding=2), _conv(32, 64, 3, 2), C3(64, 64, 1))
        self.p3 = nn.Sequential(_conv(64, 128, 3, 2), C3(128, 128, 2))  # 4
        self.p4 = nn.Sequential(_conv(128, 256, 3, 2), C3(256, 256, 3))  # 6
        self.p5 = nn.Sequential(_conv(256, 512, 3, 2), C3(512, 512, 1), SPPF(512, 512))  # 9
        self.up = nn.Upsample(scale_factor=2)
        self.conv10 = _conv(512, 256)
        self.c3_13 = C3(512, 256, 1, shortcut=False)
        self.conv14 = _conv(256, 128)
        self.c3_17 = C3(256, 128, 1, shortcut=False)
        self.conv18 = _conv(128, 128, 3, 2)
        self.c3_20 = C3(256, 256, 1, shortcut=False)
        self.conv21 = _conv(256, 256, 3, 2)
        self.c3_23 = C3(512, 512, 1, shortcut=False)
        self.detect = nn.ModuleList(nn.Conv2d(c, HEAD_CHANNELS, 1) for c in (128, 256, 512))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x4 = self.p3(self.stem(x))
        x6 = self.p4(x4)
        x10 = self.conv10(self.p5(x6))
        x14 = self.conv14(self.c3_13(torch.cat([self.up(x10), x6], 1)))
        p3 = self.c3_17(torch.cat([self.up(x14), x4], 1))
        p4 = self.c3_20(torch.cat([self.conv18(p3), x14], 1))
        p5 = self.c3_23(torch.cat([self.conv21(p4), x10], 1))
        return tuple(head(p) for head, p in zip(self.detect, (p3, p4, p5), strict=True))
