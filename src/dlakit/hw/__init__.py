"""NVDLA register layouts as data: units, registers and fields per hardware tree."""

from dlakit.hw.regmap import Field, Register, RegisterMap, load_register_map

__all__ = ["Field", "Register", "RegisterMap", "load_register_map"]
