"""Register file of one NVDLA: two ping-pong groups per unit, shared ``S_`` registers.

``S_POINTER.PRODUCER`` picks the group that CSB writes to ``D_`` registers land in; writing
``D_OP_ENABLE`` arms that group of the unit. A :class:`UnitView` reads one unit in one group by
register and field name, for the unit models.
"""

from __future__ import annotations

from dlakit.errors import DlakitError
from dlakit.hw import Register, RegisterMap
from dlakit.sim.arith import sign_extend


class NotModelled(DlakitError):
    """The program uses a feature the simulator does not model; the message names it."""


class RegisterFile:
    def __init__(self, regmap: RegisterMap) -> None:
        self.regmap = regmap
        self.values: dict[tuple[str, int], dict[str, int]] = {}
        for unit, regs in regmap.registers.items():
            for group in (0, 1):
                self.values[(unit, group)] = {n: r.reset for n, r in regs.items()}

    def producer(self, unit: str) -> int:
        regs = self.regmap.registers[unit]
        if "S_POINTER" not in regs:
            return 0
        return self.values[(unit, 0)]["S_POINTER"] & 1

    def store(self, reg: Register, value: int, group: int | None = None) -> int:
        """Write ``value``; returns the group written (0 for shared registers)."""
        value &= 0xFFFFFFFF
        g = (self.producer(reg.unit) if group is None else group) if reg.per_group else 0
        self.values[(reg.unit, g)][reg.name] = value
        if not reg.per_group:
            self.values[(reg.unit, 1)][reg.name] = value
        return g

    def load(self, reg: Register, group: int | None = None) -> int:
        g = (self.producer(reg.unit) if group is None else group) if reg.per_group else 0
        return self.values[(reg.unit, g)][reg.name]

    def view(self, unit: str, group: int) -> UnitView:
        return UnitView(self, unit, group)


class UnitView:
    """Read-only access to one unit's registers in one group."""

    def __init__(self, regfile: RegisterFile, unit: str, group: int) -> None:
        self.regfile = regfile
        self.unit = unit
        self.group = group
        self._regs = regfile.regmap.registers[unit]
        self._values = regfile.values[(unit, group)]

    def __getitem__(self, reg: str) -> int:
        return self._values[self._regs[reg].name]

    def f(self, reg: str, field: str) -> int:
        return self._regs[reg].field(field).get(self._values[reg])

    def signed(self, reg: str, field: str | None = None) -> int:
        r = self._regs[reg]
        fld = r.field(field) if field else next(iter(r.fields.values()))
        return sign_extend(fld.get(self._values[reg]), fld.width)

    def addr(self, low: str, high: str | None = None) -> int:
        hi = self._values[high] if high else 0
        return (hi << 32) | self._values[low]

    def enum(self, reg: str, field: str) -> str:
        """The enum name of a field's value (or its number when it has no name)."""
        fld = self._regs[reg].field(field)
        value = fld.get(self._values[reg])
        for name, v in fld.enums.items():
            if v == value:
                return name
        return str(value)

    def require(self, reg: str, field: str, allowed: set[str], why: str = "") -> str:
        """The field's enum name, or NotModelled naming register and field."""
        name = self.enum(reg, field)
        if name not in allowed:
            raise NotModelled(
                f"{self.unit}.{reg}.{field}={name} is not modelled" + (f" ({why})" if why else "")
            )
        return name
