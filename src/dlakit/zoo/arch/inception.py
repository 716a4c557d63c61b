"""The Inception classifiers: GoogLeNet (Inception v1) at 224x224 and Inception-v4 at 299x299.

Both end in a global average pool, so they export at any input size that leaves at least one
cell in the last stage.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dlakit.zoo.arch.blocks import LRN, conv_bn


def _conv_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """GoogLeNet's convolutions: biased, ReLU, 'same' padding (it has no batch norm)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.ReLU(inplace=True))


class _InceptionV1(nn.Module):
    """Szegedy et al. 2014, Figure 2(b): 1x1 | 1x1-3x3 | 1x1-5x5 | 3x3 max pool-1x1, concat."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int) -> None:
        super().__init__()
        self.b1 = _conv_relu(cin, c1, 1)
        self.b3 = nn.Sequential(_conv_relu(cin, r3, 1), _conv_relu(r3, c3, 3))
        self.b5 = nn.Sequential(_conv_relu(cin, r5, 1), _conv_relu(r5, c5, 5))
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_relu(cin, proj, 1))
        self.out_channels = c1 + c3 + c5 + proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)


# Szegedy et al. 2014, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj per module;
# None marks the 3x3/2 max pools between the stages (28x28 -> 14x14 -> 7x7).
GOOGLENET_MODULES = (
    (64, 96, 128, 16, 32, 32),  # 3a
    (128, 128, 192, 32, 96, 64),  # 3b
    None,
    (192, 96, 208, 16, 48, 64),  # 4a
    (160, 112, 224, 24, 64, 64),  # 4b
    (128, 128, 256, 24, 64, 64),  # 4c
    (112, 144, 288, 32, 64, 64),  # 4d
    (256, 160, 320, 32, 128, 128),  # 4e
    None,
    (256, 160, 320, 32, 128, 128),  # 5a
    (384, 192, 384, 48, 128, 128),  # 5b
)


class GoogLeNet(nn.Module):
    """GoogLeNet at inference (Szegedy et al. 2014, Table 1 and Figure 3), without the two
    auxiliary classifiers, which only train.

    Stem: conv 7x7/2 64, 3x3/2 max pool, LRN, conv 1x1 64, conv 3x3 192, LRN, 3x3/2 max pool
    (56x56 -> 28x28x192); nine Inception modules; 7x7 average pool (global at 224x224); FC-1000.
    The pools pad by 1, which gives Table 1's sizes (Caffe's ceil-mode pooling gives the same).
    LRN size 5, alpha 1e-4, beta 0.75, k 1: the values of the BVLC Caffe reproduction.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv_relu(3, 64, 7, 2),
            nn.MaxPool2d(3, 2, 1),
            LRN(5, 1e-4, 0.75, 1.0),
            _conv_relu(64, 64, 1),
            _conv_relu(64, 192, 3),
            LRN(5, 1e-4, 0.75, 1.0),
            nn.MaxPool2d(3, 2, 1),
        )
        layers: list[nn.Module] = []
        cin = 192
        for spec in GOOGLENET_MODULES:
            if spec is None:
                layers.append(nn.MaxPool2d(3, 2, 1))
                continue
            module = _InceptionV1(cin, *spec)
            layers.append(module)
            cin = module.out_channels
        self.inception = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.inception(self.stem(x))).flatten(1))


# Inception-v4 (Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual
# Connections on Learning"). Every conv is conv + batch norm + ReLU; "V" in the figures is
# unpadded ("valid"), every other conv and pool keeps the map size. The average pools average
# over real cells only, as TensorFlow's SAME pooling of the published model does.


def _avg_pool_same() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


class _Branches(nn.Module):
    """Run each branch on the same input and concatenate along channels."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class _Stem(nn.Module):
    """Figure 3: 299x299x3 -> 35x35x384, with three filter concats."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv_bn(3, 32, 3, 2, padding=0),  # 149x149x32
            conv_bn(32, 32, 3, padding=0),  # 147x147x32
            conv_bn(32, 64, 3),  # 147x147x64
        )
        self.mixed1 = _Branches(nn.MaxPool2d(3, 2), conv_bn(64, 96, 3, 2, padding=0))  # 73, 160
        self.mixed2 = _Branches(
            nn.Sequential(conv_bn(160, 64, 1), conv_bn(64, 96, 3, padding=0)),
            nn.Sequential(
                conv_bn(160, 64, 1),
                conv_bn(64, 64, (7, 1)),
                conv_bn(64, 64, (1, 7)),
                conv_bn(64, 96, 3, padding=0),
            ),
        )  # 71x71x192
        self.mixed3 = _Branches(conv_bn(192, 192, 3, 2, padding=0), nn.MaxPool2d(3, 2))  # 35, 384

    def forward(self, x: Tensor) -> Tensor:
        return self.mixed3(self.mixed2(self.mixed1(self.convs(x))))


def _inception_a() -> nn.Module:
    """Figure 4, on 35x35x384."""
    return _Branches(
        nn.Sequential(_avg_pool_same(), conv_bn(384, 96, 1)),
        conv_bn(384, 96, 1),
        nn.Sequential(conv_bn(384, 64, 1), conv_bn(64, 96, 3)),
        nn.Sequential(conv_bn(384, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3)),
    )


def _reduction_a(k: int = 192, l: int = 224, m: int = 256, n: int = 384) -> nn.Module:  # noqa: E741
    """Figure 7 with Table 1's Inception-v4 filter counts: 35x35x384 -> 17x17x1024."""
    return _Branches(
        nn.MaxPool2d(3, 2),
        conv_bn(384, n, 3, 2, padding=0),
        nn.Sequential(conv_bn(384, k, 1), conv_bn(k, l, 3), conv_bn(l, m, 3, 2, padding=0)),
    )


def _inception_b() -> nn.Module:
    """Figure 5, on 17x17x1024."""
    return _Branches(
        nn.Sequential(_avg_pool_same(), conv_bn(1024, 128, 1)),
        conv_bn(1024, 384, 1),
        nn.Sequential(conv_bn(1024, 192, 1), conv_bn(192, 224, (1, 7)), conv_bn(224, 256, (7, 1))),
        nn.Sequential(
            conv_bn(1024, 192, 1),
            conv_bn(192, 192, (1, 7)),
            conv_bn(192, 224, (7, 1)),
            conv_bn(224, 224, (1, 7)),
            conv_bn(224, 256, (7, 1)),
        ),
    )


def _reduction_b() -> nn.Module:
    """Figure 8: 17x17x1024 -> 8x8x1536."""
    return _Branches(
        nn.MaxPool2d(3, 2),
        nn.Sequential(conv_bn(1024, 192, 1), conv_bn(192, 192, 3, 2, padding=0)),
        nn.Sequential(
            conv_bn(1024, 256, 1),
            conv_bn(256, 256, (1, 7)),
            conv_bn(256, 320, (7, 1)),
            conv_bn(320, 320, 3, 2, padding=0),
        ),
    )


class _InceptionC(nn.Module):
    """Figure 6, on 8x8x1536: two branches end in a 1x3 and a 3x1 conv side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Sequential(_avg_pool_same(), conv_bn(1536, 256, 1))
        self.b1 = conv_bn(1536, 256, 1)
        self.b2 = conv_bn(1536, 384, 1)
        self.b2_split = _Branches(conv_bn(384, 256, (1, 3)), conv_bn(384, 256, (3, 1)))
        self.b3 = nn.Sequential(
            conv_bn(1536, 384, 1), conv_bn(384, 448, (1, 3)), conv_bn(448, 512, (3, 1))
        )
        self.b3_split = _Branches(conv_bn(512, 256, (3, 1)), conv_bn(512, 256, (1, 3)))

    def forward(self, x: Tensor) -> Tensor:
        parts = [self.pool(x), self.b1(x), self.b2_split(self.b2(x)), self.b3_split(self.b3(x))]
        return torch.cat(parts, 1)


class InceptionV4(nn.Module):
    """Figure 9: stem, 4 x Inception-A, Reduction-A, 7 x Inception-B, Reduction-B,
    3 x Inception-C, average pool (8x8, global), dropout (identity at inference), FC-1000."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _Stem(),
            *(_inception_a() for _ in range(4)),
            _reduction_a(),
            *(_inception_b() for _ in range(7)),
            _reduction_b(),
            *(_InceptionC() for _ in range(3)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1536, 1000)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))
