"""PDP: max / min / average pooling of a cube read from memory (nvdla.md §5.5).

Max and min see real input elements only. Average adds, for every padded tap of the window, the
programmed padding value, then divides by the kernel area with two reciprocal multiplies (width,
then height), each rounded half away from zero at 16 fraction bits. Split-width mode cuts the
same pooling into column strips for the line buffer; the arithmetic does not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlakit.sim.arith import saturate, shift_right_round
from dlakit.sim.layout import padded_channels, read_cube, write_cube
from dlakit.sim.memory import Memory
from dlakit.sim.regs import NotModelled, UnitView

_FAR = float(1 << 40)  # beyond any INT8 value: padded taps never win a max or a min


def pool(
    x: torch.Tensor,
    method: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    out_hw: tuple[int, int],
    pad_value: int = 0,
    recip: tuple[int, int] = (0x10000, 0x10000),
) -> torch.Tensor:
    """Pool an integer cube [C, H, W]; ``pads`` = (left, right, top, bottom); int64 out."""
    kh, kw = kernel
    sy, sx = stride
    left, _, top, _ = pads
    out_h, out_w = out_hw
    h, w = x.shape[1:]
    right = max((out_w - 1) * sx + kw - w - left, 0)
    bottom = max((out_h - 1) * sy + kh - h - top, 0)
    # float64 holds every INT8 window sum exactly; pooling kernels want floating point.
    xf = x.to(torch.float64)[None]
    if method in ("MAX", "MIN"):
        # MIN is a MAX of the negated cube; padded taps are -FAR so they never win.
        padded = F.pad(xf if method == "MAX" else -xf, (left, right, top, bottom), value=-_FAR)
        y = F.max_pool2d(padded, (kh, kw), (sy, sx))[0, :, :out_h, :out_w]
        return (y if method == "MAX" else -y).to(torch.int64)
    padded = F.pad(xf, (left, right, top, bottom))
    window_sum = F.avg_pool2d(padded, (kh, kw), (sy, sx), divisor_override=1)[0]
    ones = F.pad(torch.ones_like(xf[:, :1]), (left, right, top, bottom))
    real = F.avg_pool2d(ones, (kh, kw), (sy, sx), divisor_override=1)[0]
    total = window_sum + (kh * kw - real) * pad_value
    total = total[:, :out_h, :out_w].to(torch.int64)
    t = shift_right_round(total * recip[0], 16, 64, 64)
    return saturate(shift_right_round(t * recip[1], 16, 64, 64), 8)


def _check_pad_values(pdp: UnitView, pad1: int) -> None:
    """The model adds ``n * PAD_VALUE_1`` for n padded taps; other tables are not modelled."""
    if not any(
        pdp.f("D_POOLING_PADDING_CFG", f)
        for f in ("PAD_LEFT", "PAD_RIGHT", "PAD_TOP", "PAD_BOTTOM")
    ):
        return
    for n in range(2, 8):
        reg = f"D_POOLING_PADDING_VALUE_{n}_CFG"
        if pdp.signed(reg) != n * pad1:
            raise NotModelled(
                f"PDP.{reg}.PAD_VALUE_{n}X={pdp.signed(reg)} is not {n} x PAD_VALUE_1X "
                "(only proportional padding values are modelled)"
            )


def run_pdp(mem: Memory, pdp: UnitView, rdma: UnitView, atom: int) -> None:
    """Off-flying pooling: the source cube comes from the PDP_RDMA registers."""
    rdma.require("D_DATA_FORMAT", "INPUT_DATA", {"INT8"}, "INT8 only on this model")
    c = rdma["D_DATA_CUBE_IN_CHANNEL"] + 1
    h = rdma["D_DATA_CUBE_IN_HEIGHT"] + 1
    w = rdma["D_DATA_CUBE_IN_WIDTH"] + 1
    x = read_cube(
        mem,
        rdma.addr("D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
        padded_channels(c, atom),
        h,
        w,
        rdma["D_SRC_LINE_STRIDE"],
        rdma["D_SRC_SURFACE_STRIDE"],
        atom,
    )
    pool_and_write(mem, pdp, x, atom)


def pool_and_write(mem: Memory, pdp: UnitView, x: torch.Tensor, atom: int) -> None:
    """Pool an INT8 cube [C', H, W] with the PDP registers and write it (also on the fly,
    where ``x`` is SDP's output)."""
    pdp.require("D_DATA_FORMAT", "INPUT_DATA", {"INT8"}, "INT8 only on this model")
    method = pdp.enum("D_OPERATION_MODE_CFG", "POOLING_METHOD").removeprefix("POOLING_METHOD_")
    if method not in ("MAX", "MIN", "AVERAGE"):
        pdp.require("D_OPERATION_MODE_CFG", "POOLING_METHOD", set())
    k = "D_POOLING_KERNEL_CFG"
    p = "D_POOLING_PADDING_CFG"
    pad_value = pdp.signed("D_POOLING_PADDING_VALUE_1_CFG")
    if method == "AVERAGE":
        _check_pad_values(pdp, pad_value)
    out_h = pdp["D_DATA_CUBE_OUT_HEIGHT"] + 1
    out_w = pdp["D_DATA_CUBE_OUT_WIDTH"] + 1
    y = pool(
        x,
        method,
        kernel=(pdp.f(k, "KERNEL_HEIGHT") + 1, pdp.f(k, "KERNEL_WIDTH") + 1),
        stride=(pdp.f(k, "KERNEL_STRIDE_HEIGHT") + 1, pdp.f(k, "KERNEL_STRIDE_WIDTH") + 1),
        pads=(
            pdp.f(p, "PAD_LEFT"),
            pdp.f(p, "PAD_RIGHT"),
            pdp.f(p, "PAD_TOP"),
            pdp.f(p, "PAD_BOTTOM"),
        ),
        out_hw=(out_h, out_w),
        pad_value=pad_value,
        recip=(pdp["D_RECIP_KERNEL_WIDTH"], pdp["D_RECIP_KERNEL_HEIGHT"]),
    )
    write_cube(
        mem,
        pdp.addr("D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
        y,
        pdp["D_DST_LINE_STRIDE"],
        pdp["D_DST_SURFACE_STRIDE"],
        atom,
    )
