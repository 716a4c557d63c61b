"""Building blocks shared by the standard architectures: conv+BN+act, ResNet/ResNeXt stages."""

from __future__ import annotations

from torch import Tensor, nn


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = "relu"
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + optional ReLU/ReLU6, 'same'-style symmetric padding."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "relu6":
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs and an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, groups: int = 1, base: int = 64) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, width, 3, stride)
        self.conv2 = conv_bn(width, width, 3, act=None)
        self.down = None
        if stride != 1 or cin != width:
            self.down = conv_bn(cin, width, 1, stride, act=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.down is None else self.down(x)
        return self.relu(self.conv2(self.conv1(x)) + skip)


class Bottleneck(nn.Module):
    """ResNet-50 / ResNeXt block: 1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (x4)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, groups: int = 1, base: int = 64) -> None:
        super().__init__()
        inner = int(width * base / 64) * groups
        cout = width * self.expansion
        self.conv1 = conv_bn(cin, inner, 1)
        self.conv2 = conv_bn(inner, inner, 3, stride, groups=groups)
        self.conv3 = conv_bn(inner, cout, 1, act=None)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = conv_bn(cin, cout, 1, stride, act=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.down is None else self.down(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + skip)


class ResNetBody(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max pool) and four stages; returns the outputs of each stage.

    ``strides`` sets each stage's first stride, so SSD-ResNet-34 can keep stage 3 at stride 1;
    ``stages`` limits how many stages are built.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, ...],
        strides: tuple[int, ...] = (1, 2, 2, 2),
        groups: int = 1,
        base: int = 64,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin = 64
        for index, (depth, stride) in enumerate(zip(depths, strides, strict=False)):
            width = 64 * 2**index
            blocks: list[nn.Module] = []
            for i in range(depth):
                blocks.append(block(cin, width, stride if i == 0 else 1, groups, base))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = [64 * 2**i * block.expansion for i in range(len(depths))]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs
