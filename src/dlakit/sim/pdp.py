"""PDP: max / min / average pooling of a cube read from memory (nvdla.md §5.5).

Max and min see real input elements only. Average adds the programmed padding values for the
padded taps of the window (a table indexed by how many taps a row or column lacks, see ``pool``),
then divides by the kernel area with two reciprocal multiplies (width, then height), each rounded
half away from zero at 16 fraction bits. FP16 max/min compare the FP16 numbers; FP16 average
is FP17 arithmetic (``_average_fp16``). Split-width mode cuts the same pooling into column strips
for the line buffer; the arithmetic does not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlakit.errors import DlakitError
from dlakit.sim.arith import saturate, shift_right_round, sign_extend
from dlakit.sim.fp16 import FP17, fp16_to_fp17, fp17_to_fp16, fp_add, fp_mul
from dlakit.sim.memory import Memory
from dlakit.sim.precision import INT_BITS, padded, read_elements, write_elements
from dlakit.sim.regs import NotModelled, UnitView

_MAX_PAD = 7  # PAD_* fields are 3 bits
_FAR = float(1 << 40)  # beyond any INT8 value: padded taps never win a max or a min


def pool(
    x: torch.Tensor,
    method: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    out_hw: tuple[int, int],
    pad_table: tuple[int, ...] = (0,) * 7,
    recip: tuple[int, int] = (0x10000, 0x10000),
    out_bits: int = 8,
) -> torch.Tensor:
    """Pool an integer cube [C, H, W]; ``pads`` = (left, right, top, bottom); int64 out.

    Average: each real row of a window adds ``pad_table[n-1]`` for the n padded columns on
    either side, and n padded rows on either side add ``kernel_w * pad_table[n-1]`` (cmod
    ``LineOperation`` / ``PoolingStage0Calc``); with ``pad_table[i] = (i+1) * p`` this is the
    inclusive ``p`` per padded tap.
    """
    kh, kw = kernel
    sy, sx = stride
    left, _, top, _ = pads
    out_h, out_w = out_hw
    h, w = x.shape[1:]
    right = max((out_w - 1) * sx + kw - w - left, 0)
    bottom = max((out_h - 1) * sy + kh - h - top, 0)
    if max(right, bottom) > _MAX_PAD:
        raise DlakitError(
            f"PDP.D_DATA_CUBE_OUT_WIDTH/HEIGHT: {out_w}x{out_h} outputs need {right} right / "
            f"{bottom} bottom padding of a {w}x{h} input (the hardware pads at most {_MAX_PAD})"
        )
    # float64 holds every INT8 window sum exactly; pooling kernels want floating point.
    xf = x.to(torch.float64)[None]
    if method in ("MAX", "MIN"):
        # MIN is a MAX of the negated cube; padded taps are -FAR so they never win.
        padded = F.pad(xf if method == "MAX" else -xf, (left, right, top, bottom), value=-_FAR)
        y = F.max_pool2d(padded, (kh, kw), (sy, sx))[0, :, :out_h, :out_w]
        return (y if method == "MAX" else -y).to(torch.int64)
    padded = F.pad(xf, (left, right, top, bottom))
    window = F.avg_pool2d(padded, (kh, kw), (sy, sx), divisor_override=1)[0, :, :out_h, :out_w]
    total = window.to(torch.int64) + _padding_sums(
        (h, w), kernel, stride, (left, top), out_hw, pad_table, x.device
    )
    t = shift_right_round(total * recip[0], 16, 64, 64)
    return saturate(shift_right_round(t * recip[1], 16, 64, 64), out_bits)


def _padding_sums(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    left_top: tuple[int, int],
    out_hw: tuple[int, int],
    pad_table: tuple[int, ...],
    device: torch.device,
) -> torch.Tensor:
    """What the padding adds to each window's sum, [OH, OW] (broadcast over channels)."""
    table = torch.tensor((0, *pad_table), dtype=torch.int64, device=device)

    def sides(n_out: int, step: int, k: int, before: int, size: int) -> tuple[torch.Tensor, ...]:
        start = torch.arange(n_out, dtype=torch.int64, device=device) * step - before
        lo = (-start).clamp(0, k)  # padded positions before the input
        hi = (start + k - size).clamp(0, k)  # ... and after it
        return lo, hi, k - lo - hi

    (h, w), (kh, kw) = in_hw, kernel
    top_n, bottom_n, real_rows = sides(out_hw[0], stride[0], kh, left_top[1], h)
    left_n, right_n, _ = sides(out_hw[1], stride[1], kw, left_top[0], w)
    per_row = table[left_n.clamp(max=7)] + table[right_n.clamp(max=7)]
    rows = table[top_n.clamp(max=7)] + table[bottom_n.clamp(max=7)]
    return real_rows[:, None] * per_row[None, :] + kw * rows[:, None]


# Bits of PAD_VALUE_1X .. 7X that the C model keeps for INT8 data (sign bits 7, 8, 9, 9, 10...).
_PAD_BITS = (8, 9, 10, 10, 11, 11, 11)


def pad_table(pdp: UnitView) -> tuple[int, ...]:
    """PAD_VALUE_1X .. 7X: what n = 1..7 padded taps of a window row or column add."""
    return tuple(
        sign_extend(pdp[f"D_POOLING_PADDING_VALUE_{n}_CFG"], bits)
        for n, bits in enumerate(_PAD_BITS, start=1)
    )


_PRECISIONS = {"INT8", "INT16", "FP16"}


def run_pdp(mem: Memory, pdp: UnitView, rdma: UnitView, atom: int) -> None:
    """Off-flying pooling: the source cube comes from the PDP_RDMA registers."""
    precision = rdma.require("D_DATA_FORMAT", "INPUT_DATA", _PRECISIONS)
    c = rdma["D_DATA_CUBE_IN_CHANNEL"] + 1
    h = rdma["D_DATA_CUBE_IN_HEIGHT"] + 1
    w = rdma["D_DATA_CUBE_IN_WIDTH"] + 1
    x = read_elements(
        mem,
        rdma.addr("D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
        padded(c, atom, precision),
        h,
        w,
        rdma["D_SRC_LINE_STRIDE"],
        rdma["D_SRC_SURFACE_STRIDE"],
        atom,
        precision,
    )
    pool_and_write(mem, pdp, x, atom)


def pool_and_write(mem: Memory, pdp: UnitView, x: torch.Tensor, atom: int) -> None:
    """Pool an INT8 cube [C', H, W] with the PDP registers and write it (also on the fly,
    where ``x`` is SDP's output)."""
    precision = pdp.require("D_DATA_FORMAT", "INPUT_DATA", _PRECISIONS)
    method = pdp.enum("D_OPERATION_MODE_CFG", "POOLING_METHOD").removeprefix("POOLING_METHOD_")
    if method not in ("MAX", "MIN", "AVERAGE"):
        pdp.require("D_OPERATION_MODE_CFG", "POOLING_METHOD", set())
    k = "D_POOLING_KERNEL_CFG"
    p = "D_POOLING_PADDING_CFG"
    out_h = pdp["D_DATA_CUBE_OUT_HEIGHT"] + 1
    out_w = pdp["D_DATA_CUBE_OUT_WIDTH"] + 1
    geometry = dict(
        kernel=(pdp.f(k, "KERNEL_HEIGHT") + 1, pdp.f(k, "KERNEL_WIDTH") + 1),
        stride=(pdp.f(k, "KERNEL_STRIDE_HEIGHT") + 1, pdp.f(k, "KERNEL_STRIDE_WIDTH") + 1),
        pads=(
            pdp.f(p, "PAD_LEFT"),
            pdp.f(p, "PAD_RIGHT"),
            pdp.f(p, "PAD_TOP"),
            pdp.f(p, "PAD_BOTTOM"),
        ),
        out_hw=(out_h, out_w),
    )
    if precision == "FP16" and method == "AVERAGE":
        y = _average_fp16(x, pdp, **geometry)
    else:
        if precision == "FP16":
            # FpMax/FpMin order FP16 numbers as sign-magnitude integers (-0 below +0).
            x = _fp16_key(x)
        y = pool(
            x,
            method,
            **geometry,
            pad_table=pad_table(pdp),
            recip=(pdp["D_RECIP_KERNEL_WIDTH"], pdp["D_RECIP_KERNEL_HEIGHT"]),
            out_bits=INT_BITS.get(precision, 16),
        )
        if precision == "FP16":
            y = _fp16_bits(y)
    write_elements(
        mem,
        pdp.addr("D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
        y,
        pdp["D_DST_LINE_STRIDE"],
        pdp["D_DST_SURFACE_STRIDE"],
        atom,
        precision,
    )


def _average_fp16(
    x: torch.Tensor,
    pdp: UnitView,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """FP16 average pooling as the C model's FP16 line operations do it (cmod
    ``pdp_hls_wrapper.cpp``): in FP17, each window row's real elements summed left to right
    (``FpAdd(sum, element)``), the row sums top to bottom (``FpAdd(row, sum)``), then times
    ``RECIP_KERNEL_WIDTH`` and ``RECIP_KERNEL_HEIGHT`` (FP17 numbers) and narrowed to FP16.
    The padding values are added at every step; the firmware requires them to be 0 for FP16
    (``pdp.c``), which leaves the sums unchanged, and other values are not modelled."""
    for n in range(1, 8):
        if pdp[f"D_POOLING_PADDING_VALUE_{n}_CFG"] & 0x7FFFF:
            raise NotModelled(f"PDP.D_POOLING_PADDING_VALUE_{n}_CFG != 0 with FP16 average pooling")
    if bool((((x >> 10) & 0x1F) == 0x1F).any()):
        raise NotModelled("PDP: FP16 infinities or NaNs in average pooling are not modelled")
    kh, kw = kernel
    sy, sx = stride
    left, _, top, _ = pads
    out_h, out_w = out_hw
    h, w = x.shape[1:]
    dev = x.device
    x17 = fp16_to_fp17(x)

    def accumulate(
        data: torch.Tensor, dim: int, size: int, k: int, s: int, pad: int, n_out: int, new_first
    ) -> torch.Tensor:
        shape = list(data.shape)
        shape[dim] = n_out
        acc = torch.zeros(shape, dtype=torch.int64, device=dev)
        view = [1, 1, 1]
        view[dim] = n_out
        started = torch.zeros(view, dtype=torch.bool, device=dev)
        for t in range(k):
            pos = torch.arange(n_out, device=dev) * s - pad + t
            valid = ((pos >= 0) & (pos < size)).view(view)
            elem = data.index_select(dim, pos.clamp(0, size - 1))
            summed = fp_add(elem, acc, FP17) if new_first else fp_add(acc, elem, FP17)
            take = torch.where(started, summed, elem)
            acc = torch.where(valid, take, acc)
            started = started | valid
        return acc

    rows = accumulate(x17, 2, w, kw, sx, left, out_w, new_first=False)
    sums = accumulate(rows, 1, h, kh, sy, top, out_h, new_first=True)
    rw = torch.full_like(sums, pdp["D_RECIP_KERNEL_WIDTH"] & 0x1FFFF)
    rh = torch.full_like(sums, pdp["D_RECIP_KERNEL_HEIGHT"] & 0x1FFFF)
    return fp17_to_fp16(fp_mul(fp_mul(sums, rw, FP17), rh, FP17))


def _fp16_key(bits: torch.Tensor) -> torch.Tensor:
    """A monotonic integer for FP16 patterns: FpCmp's order (NaNs are refused)."""
    if bool((((bits >> 10) & 0x1F) == 0x1F).logical_and((bits & 0x3FF) != 0).any()):
        raise NotModelled("PDP: FP16 NaN inputs are not modelled")
    magnitude = bits & 0x7FFF
    return torch.where((bits >> 15) == 1, -magnitude - 1, magnitude)


def _fp16_bits(key: torch.Tensor) -> torch.Tensor:
    return torch.where(key < 0, (-key - 1) | 0x8000, key)
