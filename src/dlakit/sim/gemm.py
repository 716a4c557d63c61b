"""Exact integer matrix products on floating-point GEMM hardware.

INT8 x INT8 products are at most 2**14 in magnitude, so any partial sum of at most 1024 of them
is an integer below 2**24 and exact in float32 whatever the summation order. Longer reductions
are cut into chunks of 1024 terms whose results are added in float64 (exact below 2**53).
"""

from __future__ import annotations

import torch

CHUNK = 1024


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for integer-valued float32 tensors with |entries| <= 128; int64 result."""
    n = a.shape[-1]
    if n <= CHUNK:
        return torch.matmul(a, b).to(torch.int64)
    total = None
    for start in range(0, n, CHUNK):
        part = torch.matmul(a[..., start : start + CHUNK], b[..., start : start + CHUNK, :])
        part = part.to(torch.float64)
        total = part if total is None else total + part
    assert total is not None
    return total.to(torch.int64)


def exact_float_matmul() -> None:
    """Keep CUDA GEMMs in true float32 (TF32 would round the 11-bit products)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
