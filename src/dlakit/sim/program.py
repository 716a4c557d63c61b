"""Register programs for whole operations, written through the register map.

A reference for compiler back ends and the way tests and benchmarks drive the simulator without
a ``.cfg`` file: :func:`program_conv` writes every register a direct convolution + SDP needs in
one group, then enables the units from the back of the pipe to the front (the last write runs
the operation, as in the official traces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlakit.sim.layout import packed_strides, padded_channels
from dlakit.sim.nvdla import Nvdla


@dataclass(frozen=True)
class ConvSpec:
    """One direct convolution written by SDP (X1/X2 per ``sdp_regs``, else bypassed): INT8, or
    INT16 / FP16 on a target with 16-bit MACs (FP16: ``pad_value`` is a bit pattern)."""

    in_addr: int
    weight_addr: int
    out_addr: int
    in_shape: tuple[int, int, int]  # C, H, W
    kernel: tuple[int, int, int]  # K, R, S
    stride: tuple[int, int] = (1, 1)  # y, x
    dilation: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom
    pad_value: int = 0
    clip_truncate: int = 0
    cvt: tuple[int, int, int] = (0, 1, 0)  # SDP output converter offset, scale, shift
    sdp_regs: dict[str, dict[str, int | str]] = field(default_factory=dict)
    precision: str = "INT8"

    @property
    def out_hw(self) -> tuple[int, int]:
        _, h, w = self.in_shape
        _, r, s = self.kernel
        left, right, top, bottom = self.pads
        oh = (h + top + bottom - (r - 1) * self.dilation[0] - 1) // self.stride[0] + 1
        ow = (w + left + right - (s - 1) * self.dilation[1] - 1) // self.stride[1] + 1
        return oh, ow


def program_conv(nv: Nvdla, spec: ConvSpec, group: int = 0) -> None:
    c, h, w = spec.in_shape
    k, r, s = spec.kernel
    oh, ow = spec.out_hw
    atom = nv.atom
    line, surf = packed_strides(h, w, atom)
    out_line, out_surf = packed_strides(oh, ow, atom)
    size = 1 if spec.precision == "INT8" else 2
    weight_bytes = -(-(k * c * r * s * size) // 128) * 128
    left, right, top, bottom = spec.pads
    units = ("SDP", "CACC", "CMAC_A", "CMAC_B", "CSC", "CDMA")
    for unit in units:
        nv.write_reg(unit, "S_POINTER", PRODUCER=group)
    wr = nv.write_reg
    # Reset values select INT16: every unit of the pipe is set to its precision explicitly.
    prec = spec.precision
    mode = {"CONV_MODE": "DIRECT", "PROC_PRECISION": prec}
    for unit in ("CDMA", "CSC"):
        wr(unit, "D_MISC_CFG", IN_PRECISION=prec, **mode)
    for unit in ("CMAC_A", "CMAC_B", "CACC"):
        wr(unit, "D_MISC_CFG", **mode)
    wr("SDP", "D_DATA_FORMAT", PROC_PRECISION=prec, OUT_PRECISION=prec)
    wr("CDMA", "D_DATAIN_FORMAT", DATAIN_FORMAT="FEATURE")
    wr("CDMA", "D_DATAIN_SIZE_0", DATAIN_WIDTH=w - 1, DATAIN_HEIGHT=h - 1)
    wr("CDMA", "D_DATAIN_SIZE_1", DATAIN_CHANNEL=c - 1)
    wr("CDMA", "D_DAIN_ADDR_LOW_0", spec.in_addr & 0xFFFFFFFF)
    wr("CDMA", "D_DAIN_ADDR_HIGH_0", spec.in_addr >> 32)
    wr("CDMA", "D_LINE_STRIDE", line)
    wr("CDMA", "D_SURF_STRIDE", surf)
    wr("CDMA", "D_WEIGHT_SIZE_0", BYTE_PER_KERNEL=c * r * s * size - 1)
    wr("CDMA", "D_WEIGHT_SIZE_1", WEIGHT_KERNEL=k - 1)
    wr("CDMA", "D_WEIGHT_ADDR_LOW", spec.weight_addr & 0xFFFFFFFF)
    wr("CDMA", "D_WEIGHT_ADDR_HIGH", spec.weight_addr >> 32)
    wr("CDMA", "D_WEIGHT_BYTES", weight_bytes)
    wr("CDMA", "D_CONV_STRIDE", CONV_X_STRIDE=spec.stride[1] - 1, CONV_Y_STRIDE=spec.stride[0] - 1)
    wr("CDMA", "D_ZERO_PADDING", PAD_LEFT=left, PAD_RIGHT=right, PAD_TOP=top, PAD_BOTTOM=bottom)
    wr("CDMA", "D_ZERO_PADDING_VALUE", spec.pad_value & 0xFFFF)
    wr("CSC", "D_WEIGHT_SIZE_EXT_0", WEIGHT_WIDTH_EXT=s - 1, WEIGHT_HEIGHT_EXT=r - 1)
    wr("CSC", "D_WEIGHT_SIZE_EXT_1", WEIGHT_CHANNEL_EXT=c - 1, WEIGHT_KERNEL=k - 1)
    wr("CSC", "D_DATAIN_SIZE_EXT_0", DATAIN_WIDTH_EXT=w - 1, DATAIN_HEIGHT_EXT=h - 1)
    wr("CSC", "D_DATAIN_SIZE_EXT_1", DATAIN_CHANNEL_EXT=c - 1)
    wr("CSC", "D_DATAOUT_SIZE_0", DATAOUT_WIDTH=ow - 1, DATAOUT_HEIGHT=oh - 1)
    wr("CSC", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=k - 1)
    wr(
        "CSC",
        "D_CONV_STRIDE_EXT",
        CONV_X_STRIDE_EXT=spec.stride[1] - 1,
        CONV_Y_STRIDE_EXT=spec.stride[0] - 1,
    )
    wr(
        "CSC",
        "D_DILATION_EXT",
        X_DILATION_EXT=spec.dilation[1] - 1,
        Y_DILATION_EXT=spec.dilation[0] - 1,
    )
    wr("CSC", "D_ZERO_PADDING", PAD_LEFT=left, PAD_TOP=top)
    wr("CSC", "D_ZERO_PADDING_VALUE", spec.pad_value & 0xFFFF)
    wr("CACC", "D_DATAOUT_SIZE_0", DATAOUT_WIDTH=ow - 1, DATAOUT_HEIGHT=oh - 1)
    wr("CACC", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=k - 1)
    wr("CACC", "D_CLIP_CFG", CLIP_TRUNCATE=spec.clip_truncate)
    wr("SDP", "D_FEATURE_MODE_CFG", FLYING_MODE="ON", OUTPUT_DST="MEM")
    wr("SDP", "D_DATA_CUBE_WIDTH", WIDTH=ow - 1)
    wr("SDP", "D_DATA_CUBE_HEIGHT", HEIGHT=oh - 1)
    wr("SDP", "D_DATA_CUBE_CHANNEL", CHANNEL=k - 1)
    wr("SDP", "D_DST_BASE_ADDR_LOW", spec.out_addr & 0xFFFFFFFF)
    wr("SDP", "D_DST_BASE_ADDR_HIGH", spec.out_addr >> 32)
    wr("SDP", "D_DST_LINE_STRIDE", out_line)
    wr("SDP", "D_DST_SURFACE_STRIDE", out_surf)
    for stem in ("BS", "BN", "EW"):
        wr("SDP", f"D_DP_{stem}_CFG", **{f"{stem}_BYPASS": "YES"})
    offset, scale, shift = spec.cvt
    wr("SDP", "D_CVT_OFFSET", offset & 0xFFFFFFFF)
    wr("SDP", "D_CVT_SCALE", scale & 0xFFFF)
    wr("SDP", "D_CVT_SHIFT", shift)
    for reg, fields in spec.sdp_regs.items():
        wr("SDP", reg, **fields)
    nv.memory.alloc_covering(
        spec.out_addr, spec.out_addr + padded_channels(k, atom // size) // (atom // size) * out_surf
    )
    for unit in units:
        wr(unit, "D_OP_ENABLE", OP_EN="ENABLE")
