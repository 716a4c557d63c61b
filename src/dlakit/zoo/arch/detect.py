"""Detectors (and a detection backbone) in the layouts NVIDIA measured on the Orin DLA.

Heads stop at the box/class convolutions: anchor decoding and NMS run on the GPU/CPU and are not
part of the DLA graph (DLA-SW README: "NMS always runs on the GPU").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dlakit.zoo.arch.blocks import BasicBlock, Bottleneck, ResNetBody, conv_bn
from dlakit.zoo.arch.classify import mobilenet_v1_features


class SSDMobileNetV1(nn.Module):
    """TF Object Detection API ``ssd_mobilenet_v1_coco`` at 300x300, up to the BoxPredictor convs.

    Feature maps: block 11 (512 @ 19x19), block 13 (1024 @ 10x10), then four extra 1x1/3x3-s2
    pairs (512, 256, 256, 128). 1x1 box predictors with 3, 6, 6, 6, 6, 6 anchors, 91 classes.
    """

    anchors = (3, 6, 6, 6, 6, 6)
    extra_depths = (512, 256, 256, 128)

    def __init__(self, num_classes: int = 91) -> None:
        super().__init__()
        self.features = mobilenet_v1_features(act="relu6")
        extras: list[nn.Module] = []
        cin = 1024
        for depth in self.extra_depths:
            extras.append(
                nn.Sequential(
                    conv_bn(cin, depth // 2, 1, act="relu6"),
                    conv_bn(depth // 2, depth, 3, 2, act="relu6"),
                )
            )
            cin = depth
        self.extras = nn.ModuleList(extras)
        channels = (512, 1024, *self.extra_depths)
        self.box = nn.ModuleList(
            nn.Conv2d(c, a * 4, 1) for c, a in zip(channels, self.anchors, strict=True)
        )
        self.cls = nn.ModuleList(
            nn.Conv2d(c, a * num_classes, 1) for c, a in zip(channels, self.anchors, strict=True)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        maps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in (11, 13):
                maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return tuple(
            head(m) for heads in (self.box, self.cls) for head, m in zip(heads, maps, strict=True)
        )


class ResNet34Backbone(nn.Module):
    """ResNet-34 without pooling and classifier; returns the stage 2-4 maps (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = ResNetBody(BasicBlock, (3, 4, 6, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.body(x)[1:])


class RetinaNet(nn.Module):
    """RetinaNet (Lin et al. 2017): FPN P3-P7 (256 ch, P6/P7 from P5) and the shared
    4-conv class and box towers, applied per level, with 9 anchors per position."""

    def __init__(self, body: ResNetBody, num_classes: int, anchors: int = 9) -> None:
        super().__init__()
        self.body = body
        c3, c4, c5 = body.out_channels[1:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in (c3, c4, c5))
        self.output = nn.ModuleList(nn.Conv2d(256, 256, 3, 1, 1) for _ in range(3))
        self.p6 = nn.Conv2d(256, 256, 3, 2, 1)
        self.p7 = nn.Conv2d(256, 256, 3, 2, 1)
        self.cls_tower = self._tower(anchors * num_classes)
        self.box_tower = self._tower(anchors * 4)

    @staticmethod
    def _tower(out_channels: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(256, out_channels, 3, 1, 1))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        c3, c4, c5 = self.body(x)[1:]
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        p3, p4, p5 = (conv(p) for conv, p in zip(self.output, (p3, p4, p5), strict=True))
        p6 = self.p6(p5)
        p7 = self.p7(F.relu(p6))
        levels = (p3, p4, p5, p6, p7)
        return tuple(tower(p) for tower in (self.cls_tower, self.box_tower) for p in levels)


def retinanet_resnet34() -> nn.Module:
    """RetinaNet ResNet-34 as in NVIDIA's Waymo 2D model (vehicle, pedestrian, cyclist)."""
    return RetinaNet(ResNetBody(BasicBlock, (3, 4, 6, 3)), num_classes=3)


def retinanet_resnext50() -> nn.Module:
    """MLPerf Inference RetinaNet: ResNeXt-50 32x4d, OpenImages MLPerf subset (264 classes)."""
    return RetinaNet(ResNetBody(Bottleneck, (3, 4, 6, 3), groups=32, base=4), num_classes=264)


class SSDResNet34(nn.Module):
    """MLPerf Inference SSD-ResNet-34 at 1200x1200 (mlcommons ``ssd_r34``).

    ResNet-34 up to stage 3 with that stage at stride 1 (256 @ 150x150); five extra blocks
    (1x1 then 3x3, strides 2, 2, 2, 2 (no pad), 1 (no pad)); 3x3 heads at stride 3 with 4, 6, 6,
    6, 4, 4 default boxes and 81 classes: maps 50, 25, 13, 7, 3, 3.
    """

    defaults = (4, 6, 6, 6, 4, 4)
    channels = (256, 512, 512, 256, 256, 256)

    def __init__(self, num_classes: int = 81) -> None:
        super().__init__()
        self.body = ResNetBody(BasicBlock, (3, 4, 6), strides=(1, 2, 1))
        specs = ((256, 2, 1), (256, 2, 1), (128, 2, 1), (128, 2, 0), (128, 1, 0))
        extras: list[nn.Module] = []
        for index, (mid, stride, pad) in enumerate(specs):
            cin, cout = self.channels[index], self.channels[index + 1]
            extras.append(
                nn.Sequential(
                    nn.Conv2d(cin, mid, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, cout, 3, stride, pad),
                    nn.ReLU(inplace=True),
                )
            )
        self.extras = nn.ModuleList(extras)
        pairs = list(zip(self.channels, self.defaults, strict=True))
        self.loc = nn.ModuleList(nn.Conv2d(c, d * 4, 3, 3, 1) for c, d in pairs)
        self.conf = nn.ModuleList(nn.Conv2d(c, d * num_classes, 3, 3, 1) for c, d in pairs)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.body(x)[-1]
        maps = [x]
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return tuple(
            head(m) for heads in (self.loc, self.conf) for head, m in zip(heads, maps, strict=True)
        )
