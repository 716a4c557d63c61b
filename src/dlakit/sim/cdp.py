"""CDP: cross-channel local response normalisation with the LUT (nvdla.md §5.6).

x9 = sat9(round(((x - offset8) * scale) >> shifter)); the sum of x9**2 over 3/5/7/9 neighbouring
channels (channels outside the cube count 0) indexes the LUT; out = sat8(round(((lut * x9) -
offset) * scale >> shifter)). SQSUM_BYPASS feeds x9 to the LUT, MUL_BYPASS outputs the LUT value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlakit.sim import lut
from dlakit.sim.arith import shift_right_round, sign_extend
from dlakit.sim.memory import Memory
from dlakit.sim.precision import padded, read_elements, write_elements
from dlakit.sim.regs import UnitView

# Per precision (cmod lookup_lut_int8 / lookup_lut): input offset bits, converter product bits,
# converted input bits, input shifter mask; output product bits, output bits, shifter mask.
_WIDTHS = {
    "INT8": (8, 25, 9, 0x1F, 42, 8, 0x3F),
    "INT16": (16, 33, 17, 0x1F, 50, 16, 0x1F),
}


def normalize(
    x: torch.Tensor, cdp: UnitView, tables: lut.LutTables, precision: str = "INT8"
) -> torch.Tensor:
    """CDP datapath on an INT8 or INT16 cube [C, H, W] (int64), channels past C removed."""
    off_bits, in_bits, cvt_bits, in_mask, out_in_bits, out_bits, out_mask = _WIDTHS[precision]
    offset = sign_extend(cdp["D_DATIN_OFFSET"], off_bits)
    x9 = shift_right_round(
        (x - offset) * cdp.signed("D_DATIN_SCALE"),
        cdp["D_DATIN_SHIFTER"] & in_mask,
        in_bits,
        cvt_bits,
    )
    if cdp.f("D_FUNC_BYPASS", "SQSUM_BYPASS"):
        total = x9
    else:
        half = cdp.f("D_LRN_CFG", "NORMALZ_LEN") + 1
        sq = F.pad((x9 * x9)[None, None].to(torch.float64), (0, 0, 0, 0, half, half))
        total = F.avg_pool3d(sq, (2 * half + 1, 1, 1), stride=1, divisor_override=1)[0, 0]
        total = total.to(torch.int64)  # float64 sums of at most 9 values < 2**33 are exact
    y = lut.lookup(total, tables, lut.params_from(cdp, wide_start=True))
    if not cdp.f("D_FUNC_BYPASS", "MUL_BYPASS"):
        y = y * x9
    out_off = sign_extend(cdp["D_DATOUT_OFFSET"], 25)
    return shift_right_round(
        (y - out_off) * cdp.signed("D_DATOUT_SCALE"),
        cdp["D_DATOUT_SHIFTER"] & out_mask,
        out_in_bits,
        out_bits,
    )


def run_cdp(mem: Memory, cdp: UnitView, rdma: UnitView, tables: lut.LutTables, atom: int) -> None:
    allowed = {"INT8", "INT16"}
    precision = rdma.require("D_DATA_FORMAT", "INPUT_DATA", allowed, "no FP16 on this model")
    cdp.require("D_DATA_FORMAT", "INPUT_DATA_TYPE", {precision}, "CDP_RDMA reads another format")
    c = rdma["D_DATA_CUBE_CHANNEL"] + 1
    h = rdma["D_DATA_CUBE_HEIGHT"] + 1
    w = rdma["D_DATA_CUBE_WIDTH"] + 1
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
    # Channels past C hold the input offset in the hardware, so they convert to 0.
    x[c:] = sign_extend(cdp["D_DATIN_OFFSET"], _WIDTHS[precision][0])
    y = normalize(x, cdp, tables, precision)
    write_elements(
        mem,
        cdp.addr("D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
        y,
        cdp["D_DST_LINE_STRIDE"],
        cdp["D_DST_SURFACE_STRIDE"],
        atom,
        precision,
    )
