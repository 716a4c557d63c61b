"""LE/LO lookup tables of SDP and CDP (nvdla.md §5.7; cmod ``NV_NVDLA_cdp.cpp lookup_lut_int8``).

The LE table (65 entries) indexes linearly or by log2; the LO table (257 entries) linearly. An
input inside a table interpolates between two entries with a 16-bit fraction; below or above it
extrapolates from the first or last entry with a slope (16-bit scale, signed 5-bit shift). The
hit/underflow/overflow flags of both tables pick the result (priority bits). Intermediates
saturate to 56 bits, the result to 16 bits; every shift rounds half away from zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlakit.sim.arith import saturate, sign_extend
from dlakit.sim.regs import UnitView

LE_ENTRIES = 65
LO_ENTRIES = 257
_INTERP_BITS = 56


class LutTables:
    """Raw 16-bit table contents; one pair shared by both register groups."""

    def __init__(self) -> None:
        self.le = [0] * LE_ENTRIES
        self.lo = [0] * LO_ENTRIES
        self._table = "LE"
        self._addr = 0

    def select(self, fields: dict[str, int]) -> None:
        self._table = "LO" if fields["LUT_TABLE_ID"] else "LE"
        self._addr = fields["LUT_ADDR"]

    def write(self, value: int) -> None:
        table = self.lo if self._table == "LO" else self.le
        if self._addr < len(table):
            table[self._addr] = value & 0xFFFF
        self._addr += 1


@dataclass(frozen=True)
class Slope:
    scale: int  # signed 16 bits
    shift: int  # signed 5 bits: negative shifts go left


@dataclass(frozen=True)
class LutParams:
    le_exponent: bool
    le_start: int
    le_end: int
    lo_start: int
    lo_end: int
    le_index_offset: int  # signed 8 bits (exponent mode)
    le_index_select: int  # signed 6 bits (linear mode fraction bits)
    lo_index_select: int
    le_uflow: Slope
    le_oflow: Slope
    lo_uflow: Slope
    lo_oflow: Slope
    uflow_lo: bool  # priorities: True selects the LO table
    oflow_lo: bool
    hybrid_lo: bool


def round_shift(v: torch.Tensor, shift: int, bits: int = _INTERP_BITS) -> torch.Tensor:
    """``sat_bits(round_half_away(v / 2**shift))`` for a signed ``shift`` (cmod ``convert``)."""
    lim = 1 << (bits - 1)
    if shift <= 0:
        left = -shift
        v = v.clamp(-(lim >> left) - 1, (lim >> left) + 1) << left
    else:
        mag = (v.abs() + (1 << (shift - 1))) >> shift
        v = torch.where(v < 0, -mag, mag)
    return v.clamp(-lim, lim - 1)


def _linear(
    x: torch.Tensor, table: torch.Tensor, start: int, end: int, frac: int, under: Slope, over: Slope
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Result, hit, underflow, overflow of a linearly indexed table."""
    n = table.numel() - 1
    rel = x - start
    index = rel << -frac if frac < 0 else rel >> frac
    uflow = (index < 0) | (rel <= 0)
    oflow = ~uflow & (index >= n)
    hit = ~uflow & ~oflow
    i = index.clamp(0, n - 1)
    if frac < 0:
        offset = torch.zeros_like(rel)
    else:
        offset = rel & ((1 << frac) - 1)
        offset = offset >> (frac - 16) if frac > 16 else offset << (16 - frac)
    r0, r1 = _signed16(table[i]), _signed16(table[i + 1])
    inside = r0 + round_shift((r1 - r0) * offset, 16)
    below = table[0] + round_shift((x - start) * under.scale, under.shift)
    above = table[n] + round_shift((x - end) * over.scale, over.shift)
    result = torch.where(uflow, below, torch.where(oflow, above, inside))
    return saturate(result, 16), hit, uflow, oflow


def _exponent(
    x: torch.Tensor, table: torch.Tensor, p: LutParams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rel = x - p.le_start
    positive = rel > 0
    safe = torch.where(positive, rel, torch.ones_like(rel))
    log = torch.floor(torch.log2(safe.to(torch.float64))).to(torch.int64)
    log = log - ((torch.ones_like(log) << log) > safe).to(torch.int64)
    log = log + ((torch.ones_like(log) << (log + 1)) <= safe).to(torch.int64)
    log = torch.where(positive, log, torch.zeros_like(log))
    index = log - p.le_index_offset
    uflow = (index < 0) | ~positive
    oflow = ~uflow & (index >= LE_ENTRIES - 1)
    hit = ~uflow & ~oflow
    i = index.clamp(0, LE_ENTRIES - 2)
    pos = (i + p.le_index_offset).clamp(min=0)
    offset = rel - (torch.ones_like(pos) << pos)
    offset = torch.where(
        pos > 16, offset >> (pos - 16).clamp(min=0), offset << (16 - pos).clamp(min=0)
    )
    r0, r1 = _signed16(table[i]), _signed16(table[i + 1])
    inside = r0 + round_shift((r1 - r0) * offset, 16)
    base = 0 if p.le_index_offset < 0 else 1 << p.le_index_offset
    below = table[0] + round_shift((x - p.le_start - base) * p.le_uflow.scale, p.le_uflow.shift)
    above = table[LE_ENTRIES - 1] + round_shift((x - p.le_end) * p.le_oflow.scale, p.le_oflow.shift)
    result = torch.where(uflow, below, torch.where(oflow, above, inside))
    return saturate(result, 16), hit, uflow, oflow


def _signed16(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v >= 1 << 15, v - (1 << 16), v)


def lookup(x: torch.Tensor, tables: LutTables, p: LutParams) -> torch.Tensor:
    """The 16-bit LUT output for every element of the int64 tensor ``x``.

    As in the C model, the first/last entry used for out-of-range extrapolation is taken as an
    unsigned 16-bit number before the final 16-bit saturation.
    """
    le = torch.tensor(tables.le, dtype=torch.int64, device=x.device)
    lo = torch.tensor(tables.lo, dtype=torch.int64, device=x.device)
    if p.le_exponent:
        le_out, le_hit, le_u, le_o = _exponent(x, le, p)
    else:
        le_out, le_hit, le_u, le_o = _linear(
            x, le, p.le_start, p.le_end, p.le_index_select, p.le_uflow, p.le_oflow
        )
    lo_out, lo_hit, lo_u, lo_o = _linear(
        x, lo, p.lo_start, p.lo_end, p.lo_index_select, p.lo_uflow, p.lo_oflow
    )
    hybrid = lo_out if p.hybrid_lo else le_out
    pick = torch.where(le_hit ^ lo_hit, torch.where(le_hit, le_out, lo_out), hybrid)
    pick = torch.where(le_o & lo_o, lo_out if p.oflow_lo else le_out, pick)
    return torch.where(le_u & lo_u, lo_out if p.uflow_lo else le_out, pick)


def params_from(view: UnitView, wide_start: bool) -> LutParams:
    """Read the S_LUT_* registers of CDP (``wide_start``) or SDP.

    CDP's start/end are 38 bits (LOW + 6-bit HIGH) and its C model reads the index selects as
    6-bit signed numbers; SDP's bounds are 32 bits and its selects 8-bit signed.
    """
    sel_bits = 6 if wide_start else 8

    def bound(name: str) -> int:
        if wide_start:
            return sign_extend((view[f"S_LUT_{name}_HIGH"] << 32) | view[f"S_LUT_{name}_LOW"], 38)
        return sign_extend(view[f"S_LUT_{name}"], 32)

    def slope(table: str, kind: str) -> Slope:
        scale = view.f(f"S_LUT_{table}_SLOPE_SCALE", f"LUT_{table}_SLOPE_{kind}_SCALE")
        shift = view.f(f"S_LUT_{table}_SLOPE_SHIFT", f"LUT_{table}_SLOPE_{kind}_SHIFT")
        return Slope(sign_extend(scale, 16), sign_extend(shift, 5))

    return LutParams(
        le_exponent=view.enum("S_LUT_CFG", "LUT_LE_FUNCTION") == "EXPONENT",
        le_start=bound("LE_START"),
        le_end=bound("LE_END"),
        lo_start=bound("LO_START"),
        lo_end=bound("LO_END"),
        le_index_offset=sign_extend(view.f("S_LUT_INFO", "LUT_LE_INDEX_OFFSET"), 8),
        le_index_select=sign_extend(view.f("S_LUT_INFO", "LUT_LE_INDEX_SELECT"), sel_bits),
        lo_index_select=sign_extend(view.f("S_LUT_INFO", "LUT_LO_INDEX_SELECT"), sel_bits),
        le_uflow=slope("LE", "UFLOW"),
        le_oflow=slope("LE", "OFLOW"),
        lo_uflow=slope("LO", "UFLOW"),
        lo_oflow=slope("LO", "OFLOW"),
        uflow_lo=view.enum("S_LUT_CFG", "LUT_UFLOW_PRIORITY") == "LO",
        oflow_lo=view.enum("S_LUT_CFG", "LUT_OFLOW_PRIORITY") == "LO",
        hybrid_lo=view.enum("S_LUT_CFG", "LUT_HYBRID_PRIORITY") == "LO",
    )


def _sdp_linear(
    x: torch.Tensor, start: int, select: int, depth: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index, 35-bit fraction, underflow, overflow of a linear table (cmod ``sdp_y_idx``)."""
    uflow = x <= start
    rel = (x - start).clamp(min=0)
    index = rel << -select if select < 0 else rel >> select
    oflow = ~uflow & (index >= depth - 1)
    if select < 0:
        frac = torch.zeros_like(rel)
    else:
        frac = rel & ((1 << select) - 1)
        frac = frac >> (select - _SDP_FRAC) if select > _SDP_FRAC else frac << (_SDP_FRAC - select)
    index = torch.where(uflow, 0, torch.where(oflow, depth - 1, index))
    return index, frac, uflow, oflow


def _sdp_exponent(
    x: torch.Tensor, start: int, offset: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    positive = x > start
    rel = torch.where(positive, x - start, torch.ones_like(x))
    log = _floor_log2(rel)
    frac = (rel - (torch.ones_like(log) << log)) << (_SDP_FRAC - log)
    uflow = ~positive | (log < offset)
    index = log - offset
    oflow = ~uflow & (index >= LE_ENTRIES - 1)
    index = torch.where(uflow, 0, torch.where(oflow, LE_ENTRIES - 1, index))
    return index, torch.where(uflow | oflow, 0, frac), uflow, oflow


def _floor_log2(v: torch.Tensor) -> torch.Tensor:
    """floor(log2(v)) of positive int64 values, exact (float64 only seeds the estimate)."""
    log = torch.floor(torch.log2(v.to(torch.float64))).to(torch.int64)
    log = log - ((torch.ones_like(log) << log) > v).to(torch.int64)
    return log + ((torch.ones_like(log) << (log + 1)) <= v).to(torch.int64)


_SDP_FRAC = 35


def sdp_lookup(x: torch.Tensor, tables: LutTables, p: LutParams) -> torch.Tensor:
    """SDP Y-unit LUT (cmod ``sdp_y_idx`` + ``sdp_y_inp``): int32 in, int32 out.

    Inside a table: ``round((y0 * (2**35 - f) + y1 * f) / 2**35)``; outside: ``y0 + round((x -
    start_or_end - bias) * scale / 2**shift)`` with the table's first or last entry as y0.
    """
    le = _signed16(torch.tensor(tables.le, dtype=torch.int64, device=x.device))
    lo = _signed16(torch.tensor(tables.lo, dtype=torch.int64, device=x.device))
    if p.le_exponent:
        le_i, le_f, le_u, le_o = _sdp_exponent(x, p.le_start, p.le_index_offset)
    else:
        le_i, le_f, le_u, le_o = _sdp_linear(x, p.le_start, p.le_index_select, LE_ENTRIES)
    lo_i, lo_f, lo_u, lo_o = _sdp_linear(x, p.lo_start, p.lo_index_select, LO_ENTRIES)
    le_hit, lo_hit = ~(le_u | le_o), ~(lo_u | lo_o)
    use_lo = torch.where(
        le_u & lo_u,
        p.uflow_lo,
        torch.where(
            le_o & lo_o,
            p.oflow_lo,
            torch.where(le_hit == lo_hit, p.hybrid_lo, lo_hit),
        ),
    )
    index = torch.where(use_lo, lo_i, le_i)
    frac = torch.where(use_lo, lo_f, le_f)
    uflow = torch.where(use_lo, lo_u, le_u)
    oflow = torch.where(use_lo, lo_o, le_o)
    # Both tables are read at the chosen index; the one not chosen may be past its end.
    le_at, lo_at = index.clamp(max=LE_ENTRIES - 1), index.clamp(max=LO_ENTRIES - 1)
    y0 = torch.where(use_lo, lo[lo_at], le[le_at])
    nxt = (index + 1).clamp(max=LE_ENTRIES - 1)
    y1 = torch.where(use_lo, lo[(index + 1).clamp(max=LO_ENTRIES - 1)], le[nxt])
    full = 1 << _SDP_FRAC
    inside = shift_right_round_exact(y0 * (full - frac) + y1 * frac, _SDP_FRAC)
    # Out of range: extrapolate from the edge entry with that table's slope.
    exp_bias = 1 << p.le_index_offset if (p.le_exponent and p.le_index_offset > 0) else 0
    results = [inside]
    masks = [~(uflow | oflow)]
    for table_lo, flow, slope, edge, bias in (
        (False, le_u, p.le_uflow, p.le_start, exp_bias),
        (False, le_o, p.le_oflow, p.le_end, 0),
        (True, lo_u, p.lo_uflow, p.lo_start, 0),
        (True, lo_o, p.lo_oflow, p.lo_end, 0),
    ):
        c = round_shift((x - (edge + bias)) * slope.scale, slope.shift, 32)
        results.append(saturate(y0 + c, 32))
        masks.append(flow & (use_lo == table_lo))
    out = torch.zeros_like(x)
    for mask, value in zip(masks, results, strict=True):
        out = torch.where(mask, value, out)
    return saturate(out, 32)


def shift_right_round_exact(v: torch.Tensor, shift: int) -> torch.Tensor:
    """Round half away from zero of ``v / 2**shift`` (no saturation); |v| < 2**62."""
    mag = (v.abs() + (1 << (shift - 1))) >> shift
    return torch.where(v < 0, -mag, mag)
