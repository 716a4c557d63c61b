"""Building blocks shared by the standard architectures: conv+BN+act, ResNet/ResNeXt stages, and
the two layers whose PyTorch form would export as many ONNX nodes (LRN, darknet's stride-1 max
pool), which export here as the one node the published network has."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Activation names the architectures use; LeakyReLU's 0.1 slope is darknet's "leaky".
_ACTS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "leaky": lambda: nn.LeakyReLU(0.1, inplace=True),
}


def conv_bn(
    cin: int,
    cout: int,
    kernel: int | tuple[int, int],
    stride: int = 1,
    groups: int = 1,
    act: str | None = "relu",
    padding: int | tuple[int, int] | None = None,
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + optional activation (a name in ``_ACTS``).

    ``padding`` defaults to 'same'-style symmetric padding (half the kernel in each dimension);
    ``padding=0`` is TF's "valid".
    """
    if padding is None:
        padding = kernel // 2 if isinstance(kernel, int) else (kernel[0] // 2, kernel[1] // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(_ACTS[act]())
    return nn.Sequential(*layers)


class _LrnFunction(torch.autograd.Function):
    """Cross-channel LRN with ONNX's semantics; the legacy exporter writes its ``symbolic``."""

    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, bias: float) -> Tensor:
        return F.local_response_norm(x, size, alpha, beta, bias)

    @staticmethod
    def symbolic(g, x, size: int, alpha: float, beta: float, bias: float):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=bias)


class LRN(nn.Module):
    """Local response normalization across channels, exported as one ONNX ``LRN`` node.

    ``nn.LocalResponseNorm`` traces into ~35 Pad/AveragePool/Pow/Div nodes; AlexNet and GoogLeNet
    have one LRN layer each time (the DLA runs it in its CDP engine).
    """

    def __init__(self, size: int, alpha: float, beta: float, bias: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.bias = size, alpha, beta, bias

    def forward(self, x: Tensor) -> Tensor:
        return _LrnFunction.apply(x, self.size, self.alpha, self.beta, self.bias)


class _PadEndMaxPoolFunction(torch.autograd.Function):
    """Max pool that pads only the bottom/right, exported as one ``MaxPool`` with those pads."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: int, stride: int) -> Tensor:
        pad = kernel - 1
        return F.max_pool2d(F.pad(x, (0, pad, 0, pad), value=float("-inf")), kernel, stride)

    @staticmethod
    def symbolic(g, x, kernel: int, stride: int):
        pad = kernel - 1
        return g.op(
            "MaxPool",
            x,
            kernel_shape_i=[kernel, kernel],
            strides_i=[stride, stride],
            pads_i=[0, 0, pad, pad],
        )


class PadEndMaxPool(nn.Module):
    """darknet's ``[maxpool]``: padding ``size - 1`` in all, placed after the data (darknet's
    offset is ``-pad / 2``, which rounds to 0), padded cells never win. With stride 1 the map keeps
    its size; PyTorch's MaxPool2d pads symmetrically only, so this is one ONNX MaxPool with pads
    [0, 0, 1, 1]."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return _PadEndMaxPoolFunction.apply(x, self.kernel, self.stride)


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
