"""Image classifiers at their ImageNet layouts: ResNet-18/34/50/101/152, MobileNetV1, VGG-16/19,
AlexNet. (The Inception family is in inception.py.)"""

from __future__ import annotations

from torch import Tensor, nn

from dlakit.zoo.arch.blocks import LRN, BasicBlock, Bottleneck, ResNetBody, conv_bn


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


# He et al. 2015, Table 1: the deeper bottleneck nets repeat more blocks in conv3_x and conv4_x,
# (3, 4, 23, 3) for 101 layers and (3, 8, 36, 3) for 152. As for ResNet-50, the stride sits in the
# 3x3 conv (torchvision's layout, "v1.5"), which adds a little compute over the paper's.
def resnet101() -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 23, 3))


def resnet152() -> nn.Module:
    return ResNet(Bottleneck, (3, 8, 36, 3))


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


# Simonyan & Zisserman 2014, Table 1: channels per 3x3 conv, "M" for a 2x2/2 max pool.
VGG_CONFIGS = {
    # configuration D, 16 weight layers
    "vgg16": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
        512, 512, 512, "M", 512, 512, 512, "M",
    ),
    # configuration E, 19 weight layers: a fourth conv in each of the last three blocks
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


class VGG(nn.Module):
    """The conv stack of one configuration, then FC-4096, FC-4096, FC-1000 (ReLU between)."""

    def __init__(self, config: tuple[int | str, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in config:
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


def vgg16() -> nn.Module:
    return VGG(VGG_CONFIGS["vgg16"])


def vgg19() -> nn.Module:
    return VGG(VGG_CONFIGS["vgg19"])


class AlexNet(nn.Module):
    """Krizhevsky et al. 2012, §3 and Figure 2, as one network (the paper's two GPUs are the
    ``groups=2`` of conv2, conv4 and conv5, whose kernels see only their own GPU's half).

    conv1 96 11x11/4 on the 224x224 input (padding 2 gives the paper's 55x55), LRN, 3x3/2
    overlapping max pool; conv2 256 5x5; LRN; pool; conv3 384 3x3 (all channels); conv4 384 3x3;
    conv5 256 3x3; pool (6x6x256); FC-4096, FC-4096, FC-1000. LRN: k = 2, n = 5, alpha = 1e-4,
    beta = 0.75 (§3.3). Dropout is an identity at inference and is left out.
    """

    def __init__(self) -> None:
        super().__init__()

        def lrn() -> nn.Module:
            return LRN(5, 1e-4, 0.75, 2.0)

        relu = nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, 4, 2), relu(inplace=True), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, 1, 2, groups=2), relu(inplace=True), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, 1, 1), relu(inplace=True),
            nn.Conv2d(384, 384, 3, 1, 1, groups=2), relu(inplace=True),
            nn.Conv2d(384, 256, 3, 1, 1, groups=2), relu(inplace=True), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 1000),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))
