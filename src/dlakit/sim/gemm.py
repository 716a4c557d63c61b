"""Exact integer convolution arithmetic on fast GEMM kernels.

INT8 x INT8 products are at most 2**14 in magnitude, so any partial sum of at most 1024 of them
is an integer below 2**24 and exact in float32 whatever the summation order (CPU path: float32
GEMM on chunks of 1024 terms, chunk results added in float64). On CUDA the INT8 tensor-core GEMM
(``torch._int_mm``) accumulates in int32, exact while the reduction is shorter than 2**17 terms.
"""

from __future__ import annotations

import torch

CHUNK = 1024
_INT32_TERMS = 1 << 17


def im2col(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """Patches of an already padded cube [C, H, W] as [C*R*S, OH*OW] (one strided copy)."""
    c = x.shape[0]
    r, s = kernel
    sy, sx = stride
    dy, dx = dilation
    oh, ow = out_hw
    x = x.contiguous()
    cs, hs, ws = x.stride()
    view = x.as_strided((c, r, s, oh, ow), (cs, dy * hs, dx * ws, sy * hs, sx * ws))
    return view.reshape(c * r * s, oh * ow)


def use_int8_gemm(device: torch.device, terms: int) -> bool:
    return device.type == "cuda" and terms < _INT32_TERMS


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for integer tensors with |entries| <= 128 (int8 or float32); int64 result."""
    if a.dtype == torch.int8:
        try:
            return _int8_matmul(a, b)
        except RuntimeError:
            # cuBLASLt refuses some INT8 shapes: the float32 path is exact too, only slower.
            exact_float_matmul()
            a, b = a.float(), b.float()
    n = a.shape[-1]
    if n <= CHUNK:
        return torch.matmul(a, b).to(torch.int64)
    total = None
    for start in range(0, n, CHUNK):
        part = torch.matmul(a[..., start : start + CHUNK], b[..., start : start + CHUNK, :])
        total = part.double() if total is None else total + part.double()
    assert total is not None
    return total.to(torch.int64)


def _int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """INT8 tensor-core GEMM, zero-padded to the shapes cuBLASLt takes (multiples of 32)."""
    m, k = a.shape
    n = b.shape[1]
    mp, kp, np_ = max(-(-m // 32) * 32, 32), -(-k // 32) * 32, -(-n // 32) * 32
    if (mp, kp) != (m, k):
        a = torch.nn.functional.pad(a, (0, kp - k, 0, mp - m))
    if (kp, np_) != (k, n):
        b = torch.nn.functional.pad(b, (0, np_ - n, 0, kp - k))
    return torch._int_mm(a.contiguous(), b.contiguous())[:m, :n].to(torch.int64)


def exact_float_matmul() -> None:
    """Keep CUDA float GEMMs in true float32 (TF32 would round the 11-bit products)."""
    torch.backends.cuda.matmul.allow_tf32 = False
