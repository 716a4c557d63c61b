"""Direct convolution: CDMA -> CSC -> CMAC -> CACC, fused into one batched integer op.

CDMA reads the INT8 feature cube and the weights (nvdla.md §3 layouts), out-of-bounds taps take
the low 8 bits of ZERO_PADDING_VALUE (sign-extended); CSC supplies stride, dilation and the output
size; CMAC/CACC products are summed exactly (im2col + exact GEMM) and CACC rounds, truncates and
saturates to INT32 before SDP processes the result on the fly. The RTL accumulator saturates at 34
bits at every step: when the operands could reach that, the sum is replayed in hardware order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dlakit.errors import DlakitError
from dlakit.sim import fp16_conv, fp16_sdp, sdp
from dlakit.sim.arith import saturate, shift_right_round, sign_extend
from dlakit.sim.gemm import exact_float_matmul, im2col, int_matmul, use_int8_gemm
from dlakit.sim.layout import padded_channels, read_cube, weight_offsets
from dlakit.sim.precision import padded, read_elements
from dlakit.sim.regs import NotModelled, UnitView

if TYPE_CHECKING:
    from dlakit.sim.nvdla import Nvdla

ACC_BITS = 34
INT16_ACC_BITS = 48  # CACC assembly SRAM width for INT16 (cmod ACCU_ASSEMBLY_BIT_WIDTH_INT16)
_MAX_PAD = 63  # CDMA PAD_RIGHT / PAD_BOTTOM are 6 bits


@dataclass(frozen=True)
class ConvGeometry:
    stride: tuple[int, int]  # (y, x)
    dilation: tuple[int, int]
    pad_top_left: tuple[int, int]
    out_hw: tuple[int, int]
    pad_value: int


def _pads(x: torch.Tensor, w: torch.Tensor, geo: ConvGeometry) -> tuple[int, int, int, int]:
    """(left, right, top, bottom): the right and bottom padding the output size needs, refused
    beyond what CDMA pads."""
    r, s = w.shape[2:]
    h, wd = x.shape[1:]
    sy, sx = geo.stride
    dy, dx = geo.dilation
    top, left = geo.pad_top_left
    oh, ow = geo.out_hw
    bottom = max((oh - 1) * sy + (r - 1) * dy + 1 - h - top, 0)
    right = max((ow - 1) * sx + (s - 1) * dx + 1 - wd - left, 0)
    if max(right, bottom) > _MAX_PAD:
        raise DlakitError(
            f"CSC.D_DATAOUT_SIZE_0: {ow}x{oh} outputs need {right} right / {bottom} bottom "
            f"padding of a {wd}x{h} input (CDMA pads at most {_MAX_PAD})"
        )
    return left, right, top, bottom


def conv_accumulate(
    x: torch.Tensor, w: torch.Tensor, geo: ConvGeometry, atom_c: int = 8
) -> torch.Tensor:
    """CACC accumulator values [K, OH, OW] (int64) of INT8 data [C, H, W] and weights [K, C, R, S].

    Exact: the GEMM runs on float32 in chunks (see ``gemm``); a sum that could reach the 34-bit
    accumulator's range is recomputed step by step with the hardware's saturation.
    """
    k, c, r, s = w.shape
    sy, sx = geo.stride
    dy, dx = geo.dilation
    oh, ow = geo.out_hw
    left, right, top, bottom = _pads(x, w, geo)
    terms = c * r * s
    dtype = torch.int8 if use_int8_gemm(x.device, terms) else torch.float32
    if dtype == torch.float32:
        exact_float_matmul()
    padded = x.to(dtype)
    if left or right or top or bottom:
        padded = F.pad(padded[None], (left, right, top, bottom), value=geo.pad_value)[0]
    cols = im2col(padded, (r, s), (sy, sx), (dy, dx), (oh, ow))
    wm = w.reshape(k, terms).to(dtype)
    if terms * (1 << 14) < (1 << (ACC_BITS - 1)):
        acc = int_matmul(wm, cols)
    else:
        acc = _saturating_replay(wm.reshape(k, c, r * s), cols.reshape(c, r * s, -1), atom_c)
    return acc.reshape(k, oh, ow)


def conv_accumulate_int16(x: torch.Tensor, w: torch.Tensor, geo: ConvGeometry) -> torch.Tensor:
    """CACC sums [K, OH, OW] of INT16 data and weights: products reach 2**30, sums of a layer
    stay far below float64's 2**53, so one float64 GEMM is exact; the 48-bit assembly SRAM
    saturates (cmod)."""
    k, c, r, s = w.shape
    sy, sx = geo.stride
    dy, dx = geo.dilation
    oh, ow = geo.out_hw
    left, right, top, bottom = _pads(x, w, geo)
    padded_x = F.pad(x.to(torch.float64)[None], (left, right, top, bottom), value=geo.pad_value)[0]
    cols = im2col(padded_x, (r, s), (sy, sx), (dy, dx), (oh, ow))
    acc = torch.matmul(w.reshape(k, c * r * s).to(torch.float64), cols).to(torch.int64)
    return saturate(acc, INT16_ACC_BITS).reshape(k, oh, ow)


def _saturating_replay(w: torch.Tensor, cols: torch.Tensor, atom_c: int) -> torch.Tensor:
    """Accumulate in CSC order (C-block, then R*S), saturating to 34 bits after each step.

    The partial sum of every step comes from one batched GEMM; the clamped running sum is only
    walked step by step when an exact prefix sum actually leaves the 34-bit range.
    """
    k, c, taps = w.shape
    blocks = -(-c // atom_c)
    pad = blocks * atom_c - c
    w = F.pad(w, (0, 0, 0, pad)).reshape(k, blocks, atom_c, taps).permute(1, 3, 0, 2)
    cols = F.pad(cols, (0, 0, 0, 0, 0, pad)).reshape(blocks, atom_c, taps, -1).permute(0, 2, 1, 3)
    w = w.reshape(blocks * taps, k, atom_c)
    cols = cols.reshape(blocks * taps, atom_c, -1)
    # At most atom_c products per step: exact in float32 (TF32 off).
    exact_float_matmul()
    steps = torch.bmm(w.float(), cols.float()).to(torch.int64)
    lim = 1 << (ACC_BITS - 1)
    prefix = steps.cumsum(0)
    if int(prefix.abs().max()) < lim:
        return prefix[-1]
    acc = torch.zeros_like(steps[0])
    for step in steps:
        acc = (acc + step).clamp(-lim, lim - 1)
    return acc


def cacc_truncate(acc: torch.Tensor, shift: int) -> torch.Tensor:
    """CACC output: round half away at ``shift`` bits, saturate to INT32 (RTL CALC_int8).

    The RTL keeps only 16 fraction bits, so for shifts above 16 the lowest bits no longer count
    towards the sticky bit of a negative value.
    """
    if shift == 0:
        return saturate(acc, 32)
    floor = acc >> shift
    guide = (acc >> (shift - 1)) & 1
    lo = max(shift - 16, 0)
    width = shift - 1 - lo
    sticky = (
        ((acc >> lo) & ((1 << width) - 1)) != 0
        if width > 0
        else torch.zeros_like(acc, dtype=torch.bool)
    )
    up = (guide == 1) & ((acc >= 0) | sticky)
    return saturate(floor + up.to(torch.int64), 32)


@functools.lru_cache(maxsize=16)
def _weight_offsets(
    k: int, c: int, r: int, s: int, atom_k: int, atom_c: int, device: torch.device
) -> torch.Tensor:
    return weight_offsets(k, c, r, s, atom_k, atom_c).to(device)


def conv_geometry(cdma: UnitView, csc: UnitView, pad_bits: int = 8) -> ConvGeometry:
    """Stride, dilation, padding, output size and pad value as CDMA and CSC are programmed."""
    return ConvGeometry(
        stride=(
            cdma.f("D_CONV_STRIDE", "CONV_Y_STRIDE") + 1,
            cdma.f("D_CONV_STRIDE", "CONV_X_STRIDE") + 1,
        ),
        dilation=(
            csc.f("D_DILATION_EXT", "Y_DILATION_EXT") + 1,
            csc.f("D_DILATION_EXT", "X_DILATION_EXT") + 1,
        ),
        pad_top_left=(cdma.f("D_ZERO_PADDING", "PAD_TOP"), cdma.f("D_ZERO_PADDING", "PAD_LEFT")),
        out_hw=(
            csc.f("D_DATAOUT_SIZE_0", "DATAOUT_HEIGHT") + 1,
            csc.f("D_DATAOUT_SIZE_0", "DATAOUT_WIDTH") + 1,
        ),
        pad_value=sign_extend(cdma["D_ZERO_PADDING_VALUE"], pad_bits),
    )


def run_conv(
    nv: Nvdla,
    group: int,
    pdp_view: UnitView | None = None,
    sdp_group: int | None = None,
    rdma_group: int | None = None,
    rdma_on: bool = True,
) -> None:
    """The fused convolution operation of one register group of the convolution pipe, written
    out by SDP (in its own group, by default the same). Without ``rdma_on`` SDP_RDMA takes no
    part: its registers (another operation's, or never written) are not read."""
    cdma, csc, cacc = nv.view("CDMA", group), nv.view("CSC", group), nv.view("CACC", group)
    s = nv.view("SDP", group if sdp_group is None else sdp_group)
    rdma = nv.view("SDP_RDMA", group if rdma_group is None else rdma_group) if rdma_on else None
    cdma.require("D_DATAIN_FORMAT", "DATAIN_FORMAT", {"FEATURE"}, "image input")
    cdma.require("D_MISC_CFG", "CONV_MODE", {"DIRECT"}, "Winograd")
    precision = cdma.require("D_MISC_CFG", "IN_PRECISION", {"INT8", "INT16", "FP16"})
    if precision != "INT8":
        _run_conv16(nv, group, precision, pdp_view, s, rdma)
        return
    cdma.require("D_WEIGHT_FORMAT", "WEIGHT_FORMAT", {"UNCOMPRESSED"})
    if cdma["D_BATCH_NUMBER"]:
        raise NotModelled("CDMA.D_BATCH_NUMBER.BATCHES>0 (batched convolution) is not modelled")
    sdp.check_formats(s)
    atom = nv.atom
    atom_c, atom_k = nv.config.atomic_c, nv.config.atomic_k
    mem = nv.memory
    c = cdma["D_DATAIN_SIZE_1"] + 1
    h = cdma.f("D_DATAIN_SIZE_0", "DATAIN_HEIGHT") + 1
    w = cdma.f("D_DATAIN_SIZE_0", "DATAIN_WIDTH") + 1
    x = read_cube(
        mem,
        cdma.addr("D_DAIN_ADDR_LOW_0", "D_DAIN_ADDR_HIGH_0"),
        padded_channels(c, atom),
        h,
        w,
        cdma["D_LINE_STRIDE"],
        cdma["D_SURF_STRIDE"],
        atom,
        torch.int8,  # the GEMM takes INT8 (or float32) operands: no int64 round trip
    )
    x = _input_convert(x[:c], cdma)
    k = cdma["D_WEIGHT_SIZE_1"] + 1
    r = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_HEIGHT_EXT") + 1
    ks = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_WIDTH_EXT") + 1
    offsets = _weight_offsets(k, c, r, ks, atom_k, atom_c, mem.device)
    w_base = cdma.addr("D_WEIGHT_ADDR_LOW", "D_WEIGHT_ADDR_HIGH")
    w_bytes = mem.gather(w_base + offsets, (w_base, w_base + k * c * r * ks))
    weights = w_bytes.view(torch.int8).reshape(k, c, r, ks)
    geo = conv_geometry(cdma, csc)
    acc = conv_accumulate(x, weights, geo, atom_c)
    clip = cacc["D_CLIP_CFG"] & 0x1F
    # Without a truncate, sums that cannot leave INT32 need no saturation pass.
    y = acc if clip == 0 and c * r * ks * (1 << 14) < (1 << 31) else cacc_truncate(acc, clip)
    out = sdp.output_cube(s)
    kp = padded_channels(out.channels, atom)
    if kp > y.shape[0]:
        # Kernels missing from the last group produce zero sums in CMAC.
        y = torch.cat([y, y.new_zeros((kp - y.shape[0], *y.shape[1:]))])
    result = sdp.sdp_process(y[:kp, : out.height, : out.width], mem, s, rdma, nv.luts["SDP"], atom)
    sdp.deliver(mem, s, result, atom, pdp_view)


def _run_conv16(
    nv: Nvdla,
    group: int,
    precision: str,
    pdp_view: UnitView | None,
    s: UnitView,
    rdma: UnitView | None,
) -> None:
    """INT16 or FP16 direct convolution: 16-bit data and weights, kernels in groups of the
    16-bit atomic K, channel blocks of atomic C elements (two bytes each), the INT8 layouts."""
    cdma, csc, cacc = nv.view("CDMA", group), nv.view("CSC", group), nv.view("CACC", group)
    cdma.require("D_MISC_CFG", "PROC_PRECISION", {precision}, "input and processing differ")
    atom_k = nv.config.atomic_k_int16
    if atom_k is None:
        raise NotModelled(
            f"CDMA.D_MISC_CFG.IN_PRECISION={precision}: {nv.target.name} is INT8-only"
        )
    if cdma.f("D_CVT_CFG", "CVT_EN"):
        raise NotModelled("CDMA.D_CVT_CFG.CVT_EN=1 with INT16 data is not modelled")
    atom, mem = nv.atom, nv.memory
    c = cdma["D_DATAIN_SIZE_1"] + 1
    h = cdma.f("D_DATAIN_SIZE_0", "DATAIN_HEIGHT") + 1
    w = cdma.f("D_DATAIN_SIZE_0", "DATAIN_WIDTH") + 1
    x = read_elements(
        mem,
        cdma.addr("D_DAIN_ADDR_LOW_0", "D_DAIN_ADDR_HIGH_0"),
        padded(c, atom, precision),
        h,
        w,
        cdma["D_LINE_STRIDE"],
        cdma["D_SURF_STRIDE"],
        atom,
        precision,
    )[:c]
    k = cdma["D_WEIGHT_SIZE_1"] + 1
    r = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_HEIGHT_EXT") + 1
    ks = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_WIDTH_EXT") + 1
    offsets = _weight_offsets(k, c, r, ks, atom_k, nv.config.atomic_c, mem.device) * 2
    w_base = cdma.addr("D_WEIGHT_ADDR_LOW", "D_WEIGHT_ADDR_HIGH")
    lo = mem.gather(w_base + offsets).to(torch.int64)
    hi = mem.gather(w_base + offsets + 1).to(torch.int64)
    weights = ((hi << 8) | lo).to(torch.int16).to(torch.int64).reshape(k, c, r, ks)
    geo = conv_geometry(cdma, csc, pad_bits=16)
    if precision == "FP16":
        y = _conv_fp16(x & 0xFFFF, weights & 0xFFFF, geo, s)
    else:
        acc = conv_accumulate_int16(x, weights, geo)
        y = shift_right_round(acc, cacc["D_CLIP_CFG"] & 0x1F, INT16_ACC_BITS, 32)
    out = sdp.output_cube(s)
    kp = padded(out.channels, atom, precision)
    if kp > y.shape[0]:
        y = torch.cat([y, y.new_zeros((kp - y.shape[0], *y.shape[1:]))])
    result = sdp.sdp_process(y[:kp, : out.height, : out.width], mem, s, rdma, nv.luts["SDP"], atom)
    sdp.deliver(mem, s, result, atom, pdp_view)


def _conv_fp16(x: torch.Tensor, w: torch.Tensor, geo: ConvGeometry, s: UnitView) -> torch.Tensor:
    """CMAC/CACC FP16 (``fp16_conv``): FP32 bit patterns for SDP, which must process FP16."""
    if not sdp.is_fp16(s):
        raise NotModelled("SDP.D_DATA_FORMAT.PROC_PRECISION must be FP16 after an FP16 convolution")
    top, left = geo.pad_top_left
    y = fp16_conv.conv_fp16(
        x, w, geo.stride, geo.dilation, (left, 0, top, 0), geo.out_hw, geo.pad_value & 0xFFFF
    )
    return fp16_sdp.prepare_input(y, s, from_memory=False)


def _input_convert(x: torch.Tensor, cdma: UnitView) -> torch.Tensor:
    """CDMA input converter (CVT_EN): ((x - offset) * scale) >> truncate, rounded, INT8."""
    if not cdma.f("D_CVT_CFG", "CVT_EN"):
        return x
    x = x.to(torch.int64)
    t = shift_right_round(
        (x - cdma.signed("D_CVT_OFFSET")) * cdma.signed("D_CVT_SCALE"),
        cdma.f("D_CVT_CFG", "CVT_TRUNCATE"),
        64,
        17,
    )
    return saturate(t, 8)
