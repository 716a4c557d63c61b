"""Decode a launched operation's registers into an operation descriptor, once.

A descriptor holds everything the operation does as plain numbers and tensors: surfaces, the
convolution's geometry and weights, the SDP chain (:class:`~dlakit.sim.sdp_fused.SdpParams`),
pooling parameters. :mod:`dlakit.sim.replay` runs descriptors on a whole batch without looking
at a register again. The decoder reads the registers exactly as the unit models (the
definition) do, but only for the subset it can run fast: anything else (another precision, the
SDP LUT (activations), the Y multiplier with a per-element operand (two-tensor Mul),
per-element X operands, CDP, RUBIK (a deconvolution's contract), hardware batches, gaps in a
surface ...) decodes to None and that operation runs the unit models instead.

With ``constant_only`` (a program decoded once and replayed on new data), what the decoder
reads from memory -- weights, per-kernel operand tables -- must lie in a shared (constant)
region; otherwise the operation is not decoded either.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from dlakit.sim import conv, pdp, sdp
from dlakit.sim.arith import shift_left_sat
from dlakit.sim.batch import BatchedMemory
from dlakit.sim.layout import padded_channels, weight_offsets
from dlakit.sim.regs import UnitView
from dlakit.sim.sdp_fused import ALU_CODES, SdpParams, XParams, YParams

_MAX_CONV_PAD = 63  # CDMA PAD_RIGHT / PAD_BOTTOM are 6 bits
_MAX_POOL_PAD = 7
FLOAT32_EXACT = 1 << 24  # integer sums below this are exact in float32 in any order
ACC_SATURATES = 1 << (conv.ACC_BITS - 1)


@dataclass(frozen=True)
class Cube:
    """A feature surface: ``channels`` (a multiple of the atom) x height x width."""

    base: int
    channels: int
    height: int
    width: int
    line: int
    surf: int

    def layout(self, atom: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        shape = (self.channels // atom, self.height, self.width, atom)
        return shape, (self.surf, self.line, atom, 1)

    def fits(self, atom: int) -> bool:
        """A plain strided view: lines and surfaces do not overlap."""
        return self.line >= self.width * atom and (
            self.channels <= atom or self.surf >= self.height * self.line
        )


@dataclass(frozen=True)
class Pool:
    method: str  # MAX | MIN | AVERAGE
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # left, right, top, bottom
    out_hw: tuple[int, int]
    pad_table: tuple[int, ...]
    recip: tuple[int, int]
    dst: Cube


@dataclass(frozen=True)
class ConvOp:
    src: Cube
    in_channels: int
    weights: torch.Tensor  # float [K', C/groups, R, S], K' = the SDP cube's channels
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # left, right, top, bottom (right/bottom: what out_hw needs)
    pad_value: int
    out_hw: tuple[int, int]  # CSC output size
    sdp_hw: tuple[int, int]  # the part of it SDP processes
    chain: SdpParams
    ew: Cube | None
    dst: Cube | None  # None: pooled on the fly into ``pool``
    pool: Pool | None
    # The same weights as int32 for the compiled loops: "depthwise" [C/a, R, S, a] (kernel k
    # reads channel k only) or "dense" [G, R, S, C/G, K/G].
    lanes: str = "dense"
    packed: np.ndarray | None = None


def pack_weights_for_lanes(
    weights: torch.Tensor, groups: int, src_channels: int, atom: int
) -> tuple[str, np.ndarray]:
    """The layout of :class:`ConvOp` ``lanes``/``packed`` for float ``weights``
    [K, C/groups, R, S], in the type the compiled loops sum in: float32 when every partial sum
    stays below 2**24 (exact), int32 below 2**31, else int64."""
    kp, cg, r, s = weights.shape
    w = weights.to(torch.int64).cpu()
    bound = 128 * int(w.abs().reshape(kp, -1).sum(dim=1).max())
    dtype = np.float32 if bound < FLOAT32_EXACT else np.int32 if bound < 1 << 31 else np.int64
    diagonal = None
    if groups == kp and cg == 1 and kp == src_channels:
        diagonal = w[:, 0]
    elif groups == 1 and kp == src_channels and cg <= kp:
        eye = torch.eye(kp, cg, dtype=torch.bool)
        if not bool(w.ne(0).any(dim=(2, 3))[~eye].any()):
            diagonal = torch.zeros((kp, r, s), dtype=torch.int64)
            diagonal[:cg] = w[torch.arange(cg), torch.arange(cg)]
    if diagonal is not None:
        packed = diagonal.reshape(kp // atom, atom, r, s).permute(0, 2, 3, 1)
        return "depthwise", np.ascontiguousarray(packed.numpy().astype(dtype))
    dense = w.reshape(groups, kp // groups, cg, r, s).permute(0, 3, 4, 2, 1)
    return "dense", np.ascontiguousarray(dense.numpy().astype(dtype))


@dataclass(frozen=True)
class SdpOp:
    src: Cube
    chain: SdpParams
    ew: Cube | None
    dst: Cube | None
    pool: Pool | None


@dataclass(frozen=True)
class PdpOp:
    src: Cube
    pool: Pool


Descriptor = ConvOp | SdpOp | PdpOp


class Decoder:
    """Descriptors for the operations of one NVDLA configuration, reading ``memory``."""

    def __init__(self, memory: BatchedMemory, atom: int, atomic_c: int, atomic_k: int,
                 constant_only: bool) -> None:  # fmt: skip
        self.memory = memory
        self.atom = atom
        self.atomic_c = atomic_c
        self.atomic_k = atomic_k
        self.constant_only = constant_only
        self._image = memory.image(0)

    def decode(self, kind: str, views: dict[str, UnitView], on_the_fly: bool) -> Descriptor | None:
        if kind == "conv":
            return self._conv(views, on_the_fly)
        if kind == "sdp":
            return self._sdp(views, on_the_fly)
        if kind == "pdp":
            return self._pdp(views)
        return None

    # -- memory the decoder reads ---------------------------------------------------------
    def _readable(self, lo: int, hi: int) -> bool:
        if self.constant_only:
            return self.memory.shared(lo, hi)
        return self.memory.find(lo, hi) is not None

    def _surface(self, cube: Cube, writable: bool) -> bool:
        if not cube.fits(self.atom):
            return False
        return self.memory.view(cube.base, *cube.layout(self.atom), writable=writable) is not None

    # -- SDP ------------------------------------------------------------------------------
    def _chain(
        self, s: UnitView, rdma: UnitView, channels: int, cacc_shift: int
    ) -> tuple[SdpParams, Cube | None] | None:
        """The SDP chain on ``channels`` channels and the per-element Y operand cube, or None."""
        if s.enum("D_DATA_FORMAT", "OUT_PRECISION") != "INT8":
            return None
        if s.enum("D_DATA_FORMAT", "PROC_PRECISION") != "INT8":
            return None
        if s.enum("D_FEATURE_MODE_CFG", "WINOGRAD") != "OFF":
            return None
        if s.f("D_FEATURE_MODE_CFG", "BATCH_NUMBER"):
            return None
        units: list[XParams | None] = []
        for stem, dma in (("BS", "BRDMA"), ("BN", "NRDMA")):
            if s.f(f"D_DP_{stem}_CFG", f"{stem}_BYPASS"):
                units.append(None)
                continue
            x = self._x_unit(s, rdma, stem, dma, channels)
            if x is None:
                return None
            units.append(x)
        y, ew = None, None
        if not s.f("D_DP_EW_CFG", "EW_BYPASS"):
            decoded = self._y_unit(s, rdma, channels)
            if decoded is None:
                return None
            y, ew = decoded
        chain = SdpParams(
            channels=channels,
            cacc_shift=cacc_shift,
            x1=units[0],
            x2=units[1],
            y=y,
            cvt_offset=s.signed("D_CVT_OFFSET"),
            cvt_scale=s.signed("D_CVT_SCALE"),
            cvt_shift=s["D_CVT_SHIFT"] & 0x3F,
        )
        return chain, ew

    def _operands(
        self, rdma: UnitView, stem: str, dma: str, channels: int
    ) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        """Per-kernel ALU and MUL operands of one RDMA (as the definition reads them), or None
        when they are per element or not readable here."""
        cfg = f"D_{dma}_CFG"
        if rdma.enum(cfg, f"{dma}_DISABLE") == "YES":
            return None, None
        if rdma.enum(cfg, f"{dma}_DATA_MODE") != "PER_KERNEL":
            return None
        size = 2 if rdma.enum(cfg, f"{dma}_DATA_SIZE") == "TWO_BYTE" else 1
        n = 2 if rdma.enum(cfg, f"{dma}_DATA_USE") == "BOTH" else 1
        base = rdma.addr(f"D_{stem}_BASE_ADDR_LOW", f"D_{stem}_BASE_ADDR_HIGH")
        if not self._readable(base, base + channels * n * size):
            return None
        # As the definition reads them: channel i at base + i * n * size, the ALU operand
        # first, then (BOTH) the MUL operand; little-endian signed.
        view = self.memory.view(base, (channels * n * size,), (1,))
        assert view is not None
        values = view[0].cpu().numpy().view(f"<i{size}").reshape(channels, n).astype(np.int64)
        use = rdma.enum(cfg, f"{dma}_DATA_USE")
        if use == "ALU":
            return values[:, 0], None
        if use == "MUL":
            return None, values[:, 0]
        return values[:, 0], values[:, 1]

    def _x_unit(
        self, s: UnitView, rdma: UnitView, stem: str, dma: str, channels: int
    ) -> XParams | None:
        cfg = f"D_DP_{stem}_CFG"
        ops = self._operands(rdma, stem, dma, channels)
        if ops is None:
            return None
        alu_mem, mul_mem = ops
        alu, alu_op = 0, np.zeros(channels, dtype=np.int64)
        if not s.f(cfg, f"{stem}_ALU_BYPASS"):
            algo = s.enum(cfg, f"{stem}_ALU_ALGO")
            if algo not in ALU_CODES:
                return None
            shift = s.f(f"D_DP_{stem}_ALU_CFG", f"{stem}_ALU_SHIFT_VALUE")
            if s.enum(f"D_DP_{stem}_ALU_CFG", f"{stem}_ALU_SRC") == "MEM":
                if alu_mem is None:
                    return None
                raw = torch.as_tensor(alu_mem)
            else:
                raw = torch.full((channels,), s.signed(f"D_DP_{stem}_ALU_SRC_VALUE"))
            alu, alu_op = ALU_CODES[algo], shift_left_sat(raw, shift, 32).numpy()  # type: ignore[union-attr]
        mul, mul_op = False, np.ones(channels, dtype=np.int64)
        if not s.f(cfg, f"{stem}_MUL_BYPASS"):
            mul = True
            if s.enum(f"D_DP_{stem}_MUL_CFG", f"{stem}_MUL_SRC") == "MEM":
                if mul_mem is None:
                    return None
                mul_op = np.asarray(mul_mem, dtype=np.int64)
            else:
                mul_op = np.full(channels, s.signed(f"D_DP_{stem}_MUL_SRC_VALUE"), dtype=np.int64)
        return XParams(
            alu=alu,
            alu_op=np.asarray(alu_op, dtype=np.int64),
            mul=mul,
            mul_op=mul_op,
            shift=s.f(f"D_DP_{stem}_MUL_CFG", f"{stem}_MUL_SHIFT_VALUE") & 0x3F,
            prelu=mul and bool(s.f(cfg, f"{stem}_MUL_PRELU")),
            relu=not s.f(cfg, f"{stem}_RELU_BYPASS"),
        )

    def _y_unit(
        self, s: UnitView, rdma: UnitView, channels: int
    ) -> tuple[YParams, Cube | None] | None:
        cfg = "D_DP_EW_CFG"
        if not s.f(cfg, "EW_LUT_BYPASS"):
            return None
        per_element = rdma.enum("D_ERDMA_CFG", "ERDMA_DISABLE") == "NO" and (
            rdma.enum("D_ERDMA_CFG", "ERDMA_DATA_MODE") != "PER_KERNEL"
        )
        ops: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        if not per_element:
            found = self._operands(rdma, "EW", "ERDMA", channels)
            if found is None:
                return None
            ops = found
        mul, mul_op, mul_shift, mul_prelu = False, np.zeros(channels, dtype=np.int64), 0, False
        if not s.f(cfg, "EW_MUL_BYPASS"):
            op = self._y_operand(s, "MUL", ops[1], per_element, channels)
            if op is None:
                return None
            mul, mul_op = True, op
            mul_shift = min(s["D_DP_EW_TRUNCATE_VALUE"] & 0x3FF, 63)
            mul_prelu = bool(s.f(cfg, "EW_MUL_PRELU"))
        alu, alu_op = 0, np.zeros(channels, dtype=np.int64)
        ew: Cube | None = None
        elem, cvt, off, scale, shift = False, False, 0, 1, 0
        if not s.f(cfg, "EW_ALU_BYPASS"):
            algo = s.enum(cfg, "EW_ALU_ALGO")
            if algo not in ALU_CODES:
                return None
            alu = ALU_CODES[algo]
            if s.enum("D_DP_EW_ALU_CFG", "EW_ALU_SRC") == "MEM" and per_element:
                # The residual add: an INT8 cube through the ALU operand converter.
                ecfg = "D_ERDMA_CFG"
                if rdma.enum(ecfg, "ERDMA_DATA_SIZE") == "TWO_BYTE":
                    return None
                if rdma.enum(ecfg, "ERDMA_DATA_USE") != "ALU":
                    return None
                elem = True
                ew = Cube(
                    rdma.addr("D_EW_BASE_ADDR_LOW", "D_EW_BASE_ADDR_HIGH"),
                    channels,
                    s["D_DATA_CUBE_HEIGHT"] + 1,
                    s["D_DATA_CUBE_WIDTH"] + 1,
                    rdma["D_EW_LINE_STRIDE"],
                    rdma["D_EW_SURFACE_STRIDE"],
                )
                cvt = not s.f("D_DP_EW_ALU_CFG", "EW_ALU_CVT_BYPASS")
                off = s.signed("D_DP_EW_ALU_CVT_OFFSET_VALUE")
                scale = s.signed("D_DP_EW_ALU_CVT_SCALE_VALUE")
                shift = s["D_DP_EW_ALU_CVT_TRUNCATE_VALUE"] & 0x3F
            else:
                op = self._y_operand(s, "ALU", ops[0], per_element, channels)
                if op is None:
                    return None
                alu_op = op
        elif per_element:
            return None
        y = YParams(mul, mul_op, mul_shift, mul_prelu, alu, alu_op, elem, cvt, off, scale, shift)
        return y, ew

    def _y_operand(
        self, s: UnitView, kind: str, mem: np.ndarray | None, per_element: bool, channels: int
    ) -> np.ndarray | None:
        cfg = f"D_DP_EW_{kind}_CFG"
        if s.enum(cfg, f"EW_{kind}_SRC") == "REG":
            return np.full(channels, s.signed(f"D_DP_EW_{kind}_SRC_VALUE"), dtype=np.int64)
        if per_element or mem is None:
            return None
        value = sdp._y_operand(s, kind, torch.as_tensor(mem))
        return torch.as_tensor(value).reshape(-1).to(torch.int64).numpy()

    def _out(
        self, s: UnitView, views: dict[str, UnitView], on_the_fly: bool, channels: int
    ) -> tuple[Cube | None, Pool | None] | None:
        """Where SDP's result (``channels`` channels) goes: a surface, or PDP on the fly."""
        if on_the_fly:
            pool = self._pool(
                views["PDP"], channels, (s["D_DATA_CUBE_HEIGHT"] + 1, s["D_DATA_CUBE_WIDTH"] + 1)
            )
            return None if pool is None else (None, pool)
        out = sdp.output_cube(s)
        cube = Cube(out.base, padded_channels(out.channels, self.atom), out.height, out.width,
                    out.line_stride, out.surf_stride)  # fmt: skip
        return (cube, None) if self._surface(cube, writable=True) else None

    def _sdp(self, views: dict[str, UnitView], on_the_fly: bool) -> SdpOp | None:
        s, rdma = views["SDP"], views["SDP_RDMA"]
        if rdma.enum("D_FEATURE_MODE_CFG", "IN_PRECISION") != "INT8":
            return None
        if rdma.f("D_FEATURE_MODE_CFG", "BATCH_NUMBER"):
            return None
        src = Cube(
            rdma.addr("D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
            padded_channels(rdma["D_DATA_CUBE_CHANNEL"] + 1, self.atom),
            rdma["D_DATA_CUBE_HEIGHT"] + 1,
            rdma["D_DATA_CUBE_WIDTH"] + 1,
            rdma["D_SRC_LINE_STRIDE"],
            rdma["D_SRC_SURFACE_STRIDE"],
        )
        if not self._surface(src, writable=False):
            return None
        out = sdp.output_cube(s)
        if (src.channels, src.height, src.width) != (
            padded_channels(out.channels, self.atom),
            out.height,
            out.width,
        ):
            return None
        decoded = self._chain(s, rdma, src.channels, -1)
        where = self._out(s, views, on_the_fly, src.channels)
        if decoded is None or where is None:
            return None
        chain, ew = decoded
        if ew is not None and not self._surface(ew, writable=False):
            return None
        return SdpOp(src, chain, ew, *where)

    # -- convolution ----------------------------------------------------------------------
    def _conv(self, views: dict[str, UnitView], on_the_fly: bool) -> ConvOp | None:
        cdma, csc, cacc, s = views["CDMA"], views["CSC"], views["CACC"], views["SDP"]
        for reg, field, value in (
            ("D_DATAIN_FORMAT", "DATAIN_FORMAT", "FEATURE"),
            ("D_MISC_CFG", "CONV_MODE", "DIRECT"),
            ("D_MISC_CFG", "IN_PRECISION", "INT8"),
            ("D_MISC_CFG", "PROC_PRECISION", "INT8"),
            ("D_WEIGHT_FORMAT", "WEIGHT_FORMAT", "UNCOMPRESSED"),
        ):
            if cdma.enum(reg, field) != value:
                return None
        if cdma["D_BATCH_NUMBER"] or cdma.f("D_CVT_CFG", "CVT_EN"):
            return None
        atom = self.atom
        c = cdma["D_DATAIN_SIZE_1"] + 1
        h = cdma.f("D_DATAIN_SIZE_0", "DATAIN_HEIGHT") + 1
        w = cdma.f("D_DATAIN_SIZE_0", "DATAIN_WIDTH") + 1
        src = Cube(cdma.addr("D_DAIN_ADDR_LOW_0", "D_DAIN_ADDR_HIGH_0"), padded_channels(c, atom),
                   h, w, cdma["D_LINE_STRIDE"], cdma["D_SURF_STRIDE"])  # fmt: skip
        if not self._surface(src, writable=False):
            return None
        k = cdma["D_WEIGHT_SIZE_1"] + 1
        r = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_HEIGHT_EXT") + 1
        ks = csc.f("D_WEIGHT_SIZE_EXT_0", "WEIGHT_WIDTH_EXT") + 1
        w_base = cdma.addr("D_WEIGHT_ADDR_LOW", "D_WEIGHT_ADDR_HIGH")
        if not self._readable(w_base, w_base + k * c * r * ks):
            return None
        weights = self._weights(w_base, k, c, r, ks)
        geo = conv.conv_geometry(cdma, csc)
        (sy, sx), (dy, dx) = geo.stride, geo.dilation
        top, left = geo.pad_top_left
        oh, ow = geo.out_hw
        bottom = max((oh - 1) * sy + (r - 1) * dy + 1 - h - top, 0)
        right = max((ow - 1) * sx + (ks - 1) * dx + 1 - w - left, 0)
        if max(right, bottom) > _MAX_CONV_PAD:
            return None  # the definition refuses it, naming the register
        out = sdp.output_cube(s)
        kp = padded_channels(out.channels, atom)
        if out.height > oh or out.width > ow:
            return None
        # Kernels missing from the last group produce zero sums; the SDP cube sets how many.
        if kp > k:
            weights = torch.cat([weights, weights.new_zeros((kp - k, c, r, ks))])
        weights = weights[:kp]
        bound = 128 * int(weights.abs().reshape(kp, -1).sum(dim=1).max())
        if bound >= ACC_SATURATES:
            return None  # the 34-bit accumulator could saturate: the definition replays it
        decoded = self._chain(s, views["SDP_RDMA"], kp, cacc["D_CLIP_CFG"] & 0x1F)
        where = self._out(s, views, on_the_fly, kp)
        if decoded is None or where is None:
            return None
        chain, ew = decoded
        if ew is not None and not self._surface(ew, writable=False):
            return None
        groups = _block_groups(weights)
        dtype = torch.float32 if bound < FLOAT32_EXACT else torch.float64
        per_group = weights.reshape(groups, kp // groups, groups, c // groups, r, ks)
        dense = torch.stack([per_group[g, :, g] for g in range(groups)])
        dense = dense.reshape(kp, c // groups, r, ks).to(dtype)
        lanes, packed = pack_weights_for_lanes(dense, groups, src.channels, atom)
        return ConvOp(
            src=src,
            in_channels=c,
            weights=dense.contiguous(memory_format=torch.channels_last),
            groups=groups,
            stride=geo.stride,
            dilation=geo.dilation,
            pads=(left, right, top, bottom),
            pad_value=geo.pad_value,
            out_hw=geo.out_hw,
            sdp_hw=(out.height, out.width),
            chain=chain,
            ew=ew,
            dst=where[0],
            pool=where[1],
            lanes=lanes,
            packed=packed,
        )

    def _weights(self, base: int, k: int, c: int, r: int, s: int) -> torch.Tensor:
        """INT8 weights [K, C, R, S] (int64) read from the direct-convolution layout."""
        ak, ac = self.atomic_k, self.atomic_c
        size = k * c * r * s
        if k % ak == 0 and c % ac == 0:
            # Whole kernel groups and channel blocks: the layout is a reshape of the bytes.
            view = self.memory.view(base, (size,), (1,))
            assert view is not None
            raw = view[0].view(torch.int8).reshape(k // ak, c // ac, r, s, ak, ac)
            return raw.permute(0, 4, 1, 5, 2, 3).reshape(k, c, r, s).to(torch.int64)
        view = self.memory.view(base, (size,), (1,))
        assert view is not None
        raw = view[0].view(torch.int8).cpu().numpy()
        offsets = _weight_offsets(k, c, r, s, ak, ac)
        return torch.from_numpy(raw[offsets].astype(np.int64)).to(self.memory.device)

    # -- pooling --------------------------------------------------------------------------
    def _pool(self, p: UnitView, channels: int, in_hw: tuple[int, int]) -> Pool | None:
        """PDP's pooling of a ``channels``-channel cube (the unit writes that many)."""
        if p.enum("D_DATA_FORMAT", "INPUT_DATA") != "INT8":
            return None
        method = p.enum("D_OPERATION_MODE_CFG", "POOLING_METHOD").removeprefix("POOLING_METHOD_")
        if method not in ("MAX", "MIN", "AVERAGE"):
            return None
        k, pc = "D_POOLING_KERNEL_CFG", "D_POOLING_PADDING_CFG"
        dst = Cube(p.addr("D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"), channels,
                   p["D_DATA_CUBE_OUT_HEIGHT"] + 1, p["D_DATA_CUBE_OUT_WIDTH"] + 1,
                   p["D_DST_LINE_STRIDE"], p["D_DST_SURFACE_STRIDE"])  # fmt: skip
        if not self._surface(dst, writable=True):
            return None
        kernel = (p.f(k, "KERNEL_HEIGHT") + 1, p.f(k, "KERNEL_WIDTH") + 1)
        stride = (p.f(k, "KERNEL_STRIDE_HEIGHT") + 1, p.f(k, "KERNEL_STRIDE_WIDTH") + 1)
        left, top = p.f(pc, "PAD_LEFT"), p.f(pc, "PAD_TOP")
        # As the definition: the right and bottom padding are what the output size needs.
        right = max((dst.width - 1) * stride[1] + kernel[1] - in_hw[1] - left, 0)
        bottom = max((dst.height - 1) * stride[0] + kernel[0] - in_hw[0] - top, 0)
        if max(right, bottom) > _MAX_POOL_PAD:
            return None  # the definition refuses it, naming the registers
        return Pool(
            method=method,
            kernel=kernel,
            stride=stride,
            pads=(left, right, top, bottom),
            out_hw=(dst.height, dst.width),
            pad_table=pdp.pad_table(p),
            recip=(p["D_RECIP_KERNEL_WIDTH"], p["D_RECIP_KERNEL_HEIGHT"]),
            dst=dst,
        )

    def _pdp(self, views: dict[str, UnitView]) -> PdpOp | None:
        rdma = views["PDP_RDMA"]
        if rdma.enum("D_DATA_FORMAT", "INPUT_DATA") != "INT8":
            return None
        src = Cube(
            rdma.addr("D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
            padded_channels(rdma["D_DATA_CUBE_IN_CHANNEL"] + 1, self.atom),
            rdma["D_DATA_CUBE_IN_HEIGHT"] + 1,
            rdma["D_DATA_CUBE_IN_WIDTH"] + 1,
            rdma["D_SRC_LINE_STRIDE"],
            rdma["D_SRC_SURFACE_STRIDE"],
        )
        pool = self._pool(views["PDP"], src.channels, (src.height, src.width))
        if pool is None or not self._surface(src, writable=False):
            return None
        return PdpOp(src, pool)


@functools.lru_cache(maxsize=64)
def _weight_offsets(k: int, c: int, r: int, s: int, atom_k: int, atom_c: int) -> np.ndarray:
    return weight_offsets(k, c, r, s, atom_k, atom_c).numpy()


def _block_groups(weights: torch.Tensor) -> int:
    """The most groups G such that the weights [K, C, R, S] are block diagonal (kernel block g
    reads channel block g only): the compiler's channel blocks of a grouped layer."""
    k, c = weights.shape[:2]
    # numpy: these are small arrays, decoded once.
    used = weights.reshape(k, c, -1).cpu().numpy().any(axis=2)
    index = np.arange(c)
    first = np.where(used, index, c).min(axis=1)  # c: the kernel reads nothing
    last = np.where(used, index, -1).max(axis=1)
    kernels = np.arange(k)
    for groups in sorted({g for g in range(1, min(k, c) + 1) if k % g == 0 and c % g == 0},
                         reverse=True):  # fmt: skip
        block = kernels // (k // groups) * (c // groups)
        if bool(((first >= block) & (last < block + c // groups)).all()):
            return groups
    return 1
