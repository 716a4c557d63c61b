"""Image classifiers at their ImageNet layouts: ResNet-18/34/50, MobileNetV1, VGG-16."""

from __future__ import annotations

from torch import Tensor, nn

from dlakit.zoo.arch.blocks import BasicBlock, Bottleneck, ResNetBody, conv_bn


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...]) -> None:
        super().__init__()
        self.body = ResNetBody(block, depths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.body.out_channels[-1], 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.body(x)[-1]).flatten(1))


def resnet18() -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet34() -> nn.Module:
    return ResNet(BasicBlock, (3, 4, 6, 3))


def resnet50() -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3))


# MobileNetV1 (Howard et al. 2017, Table 1): (output channels, stride) of each separable block.
MOBILENET_V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def mobilenet_v1_features(act: str = "relu") -> nn.ModuleList:
    """The 3x3 stem and 13 depthwise-separable blocks, one module per block."""
    layers = [conv_bn(3, 32, 3, 2, act=act)]
    cin = 32
    for cout, stride in MOBILENET_V1_BLOCKS:
        layers.append(
            nn.Sequential(
                conv_bn(cin, cin, 3, stride, groups=cin, act=act), conv_bn(cin, cout, 1, act=act)
            )
        )
        cin = cout
    return nn.ModuleList(layers)


class MobileNetV1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = mobilenet_v1_features()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.features:
            x = layer(x)
        return self.fc(self.pool(x).flatten(1))


# VGG-16 (configuration D): channels per conv, "M" for a 2x2 max pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG16_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, 1, 1), nn.ReLU(inplace=True)]
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 1000),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
