"""LUT programming shared by SDP and CDP (nvdla/sw ``kmd/firmware/common.c`` ``update_lut``):
the raw (LE, 65 entries) and density (LO, 257 entries) tables through ``S_LUT_ACCESS_*``, then
the function, priorities, index offsets/selects, start/end points and slopes."""

from __future__ import annotations

from dlakit.loadable.descriptors import Record
from dlakit.loadable.firmware.engine import PRECISION_FP16, Firmware, Group, Processor

_METHOD = ("EXPONENT", "LINEAR")
_PRIORITY = ("LE", "LO")


def lut_ready(proc: Processor, group: Group) -> bool:
    """One LUT serves both groups of a unit: a group may program a different one only when the
    other group is idle."""
    assert group.operation is not None
    lut = int(group.operation.lut_index)
    other = proc.groups[int(not group.id)]
    if lut == -1 or other.lut_index == lut:
        return True
    if other.lut_index != -1:
        return False
    return not other.active


def update_lut(fw: Firmware, unit: str, lut: Record, precision: int) -> None:
    w, wr = fw.write, fw.word
    is_sdp = unit == "SDP"
    for table, entries in (("LE", lut.linear_exp_table), ("LO", lut.linear_only_table)):
        w(
            unit,
            "S_LUT_ACCESS_CFG",
            wr(unit, "S_LUT_ACCESS_CFG", LUT_TABLE_ID=table, LUT_ACCESS_TYPE="WRITE"),
        )
        for value in entries:
            w(unit, "S_LUT_ACCESS_DATA", int(value) & 0xFFFFFFFF)
    method, hybrid = int(lut.method), int(lut.hybrid_priority)
    under, over = int(lut.underflow_priority), int(lut.overflow_priority)
    for name, v in (
        ("method", method),
        ("hybrid_priority", hybrid),
        ("underflow_priority", under),
        ("overflow_priority", over),
    ):
        if v > 1:
            raise fw.fail(f"LUT {name}={v} is out of range (0..1)")
    w(
        unit,
        "S_LUT_CFG",
        wr(
            unit,
            "S_LUT_CFG",
            LUT_LE_FUNCTION=_METHOD[method],
            LUT_HYBRID_PRIORITY=_PRIORITY[hybrid],
            LUT_UFLOW_PRIORITY=_PRIORITY[under],
            LUT_OFLOW_PRIORITY=_PRIORITY[over],
        ),
    )
    mask = fw.field_mask
    le_off, lo_off = int(lut.linear_exp_offset), int(lut.linear_only_offset)
    if _METHOD[method] == "EXPONENT":
        info = wr(unit, "S_LUT_INFO", LUT_LE_INDEX_OFFSET=le_off) & mask(
            unit, "S_LUT_INFO", "LUT_LE_INDEX_OFFSET"
        )
    else:
        info = wr(unit, "S_LUT_INFO", LUT_LE_INDEX_SELECT=le_off) & mask(
            unit, "S_LUT_INFO", "LUT_LE_INDEX_SELECT"
        )
    info |= wr(unit, "S_LUT_INFO", LUT_LO_INDEX_SELECT=lo_off) & mask(
        unit, "S_LUT_INFO", "LUT_LO_INDEX_SELECT"
    )
    w(unit, "S_LUT_INFO", info)
    for point, reg in (
        ("linear_exp_start", "LE_START"),
        ("linear_exp_end", "LE_END"),
        ("linear_only_start", "LO_START"),
        ("linear_only_end", "LO_END"),
    ):
        value = int(lut[point])
        if is_sdp:
            w(unit, f"S_LUT_{reg}", value & 0xFFFFFFFF)
        else:
            w(unit, f"S_LUT_{reg}_LOW", value & 0xFFFFFFFF)
            w(unit, f"S_LUT_{reg}_HIGH", value >> 32)
    slopes = {
        "LE": (lut.linear_exp_underflow_slope, lut.linear_exp_overflow_slope),
        "LO": (lut.linear_only_underflow_slope, lut.linear_only_overflow_slope),
    }
    for table, (uslope, oslope) in slopes.items():
        scale = f"S_LUT_{table}_SLOPE_SCALE"
        uf, of = f"LUT_{table}_SLOPE_UFLOW_SCALE", f"LUT_{table}_SLOPE_OFLOW_SCALE"
        if precision == PRECISION_FP16:
            # The FP16 slope (data_f) is the union's first 16 bits; no shift register.
            w(
                unit,
                scale,
                wr(unit, scale, **{uf: int(uslope.scale) & 0xFFFF, of: int(oslope.scale) & 0xFFFF}),
            )
            continue
        w(
            unit,
            scale,
            (wr(unit, scale, **{uf: int(uslope.scale)}) & mask(unit, scale, uf))
            | (wr(unit, scale, **{of: int(oslope.scale)}) & mask(unit, scale, of)),
        )
        shift = f"S_LUT_{table}_SLOPE_SHIFT"
        us, os_ = f"LUT_{table}_SLOPE_UFLOW_SHIFT", f"LUT_{table}_SLOPE_OFLOW_SHIFT"
        w(
            unit,
            shift,
            (wr(unit, shift, **{us: int(uslope.shifter)}) & mask(unit, shift, us))
            | (wr(unit, shift, **{os_: int(oslope.shifter)}) & mask(unit, shift, os_)),
        )
