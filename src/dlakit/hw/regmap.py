"""Register maps of the NVDLA hardware trees, read from ``data/nvdla_<tree>_regs.toml``.

The compiler and the simulator program the hardware through the same map, so a register or field
is spelled once: ``RegisterMap.encode("SDP", "D_DP_BS_CFG", BS_BYPASS="YES")`` gives the CSB byte
address and the 32-bit value; ``lookup("NVDLA_SDP.D_DP_BS_CFG_0")`` accepts the trace spelling.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

from dlakit.errors import DlakitError

TRACE_PREFIX = "NVDLA_"


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    msb: int
    enums: dict[str, int]

    @cached_property
    def width(self) -> int:
        return self.msb - self.lsb + 1

    @cached_property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    @cached_property
    def _low_mask(self) -> int:
        return (1 << self.width) - 1

    def get(self, value: int) -> int:
        return (value >> self.lsb) & self._low_mask


@dataclass(frozen=True)
class Register:
    unit: str
    name: str
    offset: int
    address: int
    fields: dict[str, Field]
    reset: int
    read_only: tuple[str, ...]

    @cached_property
    def per_group(self) -> bool:
        """``D_`` registers exist once per ping-pong group; ``S_`` registers are shared."""
        return self.name.startswith("D_")

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise DlakitError(
                f"{self.unit}.{self.name} has no field {name} (fields: {', '.join(self.fields)})"
            ) from None

    def encode(self, **values: int | str) -> int:
        """Pack field values (ints or enum names) into a register value; unset fields are 0."""
        word = 0
        for name, val in values.items():
            fld = self.field(name)
            if isinstance(val, str):
                if val not in fld.enums:
                    raise DlakitError(
                        f"{self.unit}.{self.name}.{name} has no value {val} "
                        f"(values: {', '.join(fld.enums) or 'numeric only'})"
                    )
                val = fld.enums[val]
            if not 0 <= val < (1 << fld.width):
                # Negative numbers are stored as two's complement of the field width.
                if -(1 << (fld.width - 1)) <= val < 0:
                    val &= (1 << fld.width) - 1
                else:
                    raise DlakitError(
                        f"{self.unit}.{self.name}.{name}={val} does not fit {fld.width} bits"
                    )
            word |= val << fld.lsb
        return word

    def decode(self, value: int) -> dict[str, int]:
        return {name: fld.get(value) for name, fld in self.fields.items()}


@dataclass(frozen=True)
class RegisterMap:
    """All units of one hardware tree: ``units[unit] = (base, {reg name: Register})``."""

    hw_tree: str
    bases: dict[str, int]
    registers: dict[str, dict[str, Register]]

    def register(self, unit: str, reg: str) -> Register:
        unit = unit.removeprefix(TRACE_PREFIX)
        regs = self.registers.get(unit)
        if regs is None:
            raise DlakitError(f"unknown NVDLA unit {unit} in hw tree {self.hw_tree}")
        found = regs.get(reg) or (regs.get(reg[:-2]) if reg.endswith("_0") else None)
        if found is None:
            raise DlakitError(f"unknown register {unit}.{reg} in hw tree {self.hw_tree}")
        return found

    def lookup(self, name: str) -> Register:
        """Resolve the trace spelling ``NVDLA_UNIT.REG_NAME_0`` (the ``_0`` is the instance)."""
        unit, sep, reg = name.partition(".")
        if not sep:
            raise DlakitError(f"register name {name!r} is not of the form NVDLA_UNIT.REG_0")
        unit = unit.removeprefix(TRACE_PREFIX)
        regs = self.registers.get(unit, {})
        if reg.endswith("_0") and reg[:-2] in regs:
            return regs[reg[:-2]]
        return self.register(unit, reg)

    @property
    def by_address(self) -> dict[int, Register]:
        return _address_index(self)

    def at(self, address: int) -> Register:
        try:
            return self.by_address[address]
        except KeyError:
            raise DlakitError(f"no NVDLA register at CSB address 0x{address:x}") from None

    def encode(self, unit: str, reg: str, **fields: int | str) -> tuple[int, int]:
        """``(CSB byte address, value)`` for writing ``fields`` into ``unit.reg``."""
        r = self.register(unit, reg)
        return r.address, r.encode(**fields)

    def decode(self, unit: str, reg: str, value: int) -> dict[str, int]:
        return self.register(unit, reg).decode(value)


_INDEXES: dict[str, dict[int, Register]] = {}


def _address_index(regmap: RegisterMap) -> dict[int, Register]:
    index = _INDEXES.get(regmap.hw_tree)
    if index is None:
        index = {r.address: r for regs in regmap.registers.values() for r in regs.values()}
        _INDEXES[regmap.hw_tree] = index
    return index


@cache
def load_register_map(hw_tree: str = "v2") -> RegisterMap:
    """The register map of hardware tree ``v2`` (nvdla/hw master: nv_small ...)."""
    path = resources.files("dlakit.hw") / "data" / f"nvdla_{hw_tree}_regs.toml"
    if not path.is_file():
        raise DlakitError(f"no register map for NVDLA hw tree {hw_tree!r} (known: v1, v2)")
    raw = tomllib.loads(path.read_text())
    bases: dict[str, int] = {}
    registers: dict[str, dict[str, Register]] = {}
    for unit, spec in raw["units"].items():
        bases[unit] = spec["base"]
        regs = {}
        for name, r in spec.get("regs", {}).items():
            enums = r.get("enums", {})
            fields = {
                f: Field(f, lsb, msb, dict(enums.get(f, {})))
                for f, (lsb, msb) in r["fields"].items()
            }
            regs[name] = Register(
                unit=unit,
                name=name,
                offset=r["offset"],
                address=spec["base"] + r["offset"],
                fields=fields,
                reset=r.get("reset", 0),
                read_only=tuple(r.get("read_only", ())),
            )
        registers[unit] = regs
    return RegisterMap(hw_tree=hw_tree, bases=bases, registers=registers)
