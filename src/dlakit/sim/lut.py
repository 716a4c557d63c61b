"""The LE/LO lookup tables of SDP and CDP, filled through S_LUT_ACCESS_CFG / S_LUT_ACCESS_DATA."""

from __future__ import annotations

LE_ENTRIES = 65
LO_ENTRIES = 257


class LutTables:
    """Raw 16-bit table contents; one pair shared by both register groups (nvdla.md §5.7)."""

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
            table[self._addr] = value
        self._addr += 1
