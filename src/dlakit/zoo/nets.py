"""PyTorch architectures whose state-dict keys match the zoo's pretrained weights.

Written here rather than imported, because torchvision does not import beside the CPU torch this
project uses and the wheels that ship the weights pin old torch versions. Each class reproduces
the module tree of its source exactly, so ``load_state_dict(strict=True)`` proves the match:

* :class:`MobileNetV2`: torchvision's ``mobilenet_v2`` (``features.*``, ``classifier.1.*``).
* :class:`MnistNet`: ccexam's ``MNISTNet`` (``features.{0,3}``, ``classifier.{0,2}``).
* :class:`FmnistNet`: the small Fashion-MNIST CNN trained by ``scripts/train_fmnist.py``.

EfficientNet-Lite0 is not here: its architecture code ships in its own wheel (see export.py).
"""

from torch import Tensor, nn

# torchvision's MobileNetV2 table: expansion t, output channels c, repeats n, first stride s.
_MOBILENETV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn_relu6(cin, hidden, 1)]
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's module names."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, stride=2)]
        cin = 32
        for expand, cout, repeats, stride in _MOBILENETV2_SETTINGS:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))


class MnistNet(nn.Module):
    """ccexam's MNISTNet: padding 1 keeps 28 → 14 → 7 through the two 2×2 pools."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class FmnistNet(nn.Module):
    """The project's Fashion-MNIST CNN: only Conv/Relu/MaxPool/Gemm, all DLA-native."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


NETS: dict[str, type[nn.Module]] = {
    "mobilenetv2": MobileNetV2,
    "mnist-cnn": MnistNet,
    "fmnist-cnn": FmnistNet,
}
