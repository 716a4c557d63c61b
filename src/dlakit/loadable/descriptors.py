"""The firmware descriptors a loadable's DLA blobs hold, decoded from their C layout.

The layouts are data (``data/dla_interface.toml``, from nvdla/sw ``dla_interface.h``): packed
little-endian structs whose fields follow in declaration order. A field that the interface gained
at some firmware version (``since``) exists only in blobs of that version or later, so one table
serves the 0.10/0.11 regression loadables and 0.12 ones.
"""

from __future__ import annotations

import struct
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dlakit.errors import DlakitError

Version = tuple[int, int, int]
_SCALARS = {
    "u8": "B",
    "i8": "b",
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "u64": "Q",
    "i64": "q",
    "f32": "f",
}


class Record(Mapping[str, Any]):
    """One decoded struct: fields by attribute or key, nested structs as Records."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self._name = name
        self._values = values

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"{self._name} has no field {key}") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def struct_name(self) -> str:
        return self._name

    def to_json(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            if isinstance(v, Record):
                return v.to_json()
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return {k: plain(v) for k, v in self._values.items() if not k.startswith("reserved")}

    def __repr__(self) -> str:
        return f"{self._name}({self.to_json()})"


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # a scalar code or a struct name
    count: int | None  # None: not an array
    since: Version | None


@dataclass(frozen=True)
class Layout:
    """One struct's fields for one interface version, and how to decode it."""

    name: str
    fields: tuple[_Field, ...]
    size: int

    def decode(self, data: bytes, offset: int = 0, version: Version = (0, 12, 0)) -> Record:
        if offset < 0 or offset + self.size > len(data):
            raise DlakitError(
                f"{self.name} at byte {offset} needs {self.size} bytes, the blob has {len(data)}"
            )
        values: dict[str, Any] = {}
        pos = offset
        for f in self.fields:
            if f.kind in _SCALARS:
                fmt = _SCALARS[f.kind]
                width = struct.calcsize(fmt)
                n = f.count or 1
                items = list(struct.unpack_from(f"<{n}{fmt}", data, pos))
                values[f.name] = items if f.count is not None else items[0]
                pos += width * n
            else:
                sub = layout(f.kind, version)
                items = [sub.decode(data, pos + i * sub.size, version) for i in range(f.count or 1)]
                values[f.name] = items if f.count is not None else items[0]
                pos += sub.size * (f.count or 1)
        return Record(self.name, values)

    def encode(self, values: Mapping[str, Any], version: Version = (0, 12, 0)) -> bytes:
        """The packed bytes of ``values`` (a mapping or Record; nested structs as mappings).
        Fields left out are zero, as the compiler's zero-filled descriptor memory."""
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise DlakitError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        out = bytearray()
        for f in self.fields:
            n = f.count or 1
            given = values.get(f.name)
            items = [given] * n if f.count is None else list(given or [])
            if f.count is not None and given is not None and len(items) != n:
                raise DlakitError(f"{self.name}.{f.name} has {n} entries, not {len(items)}")
            if f.kind in _SCALARS:
                fmt = _SCALARS[f.kind]
                nums = [0 if v is None else v for v in (items or [None] * n)]
                try:
                    out += struct.pack(f"<{n}{fmt}", *nums)
                except struct.error:
                    raise DlakitError(
                        f"{self.name}.{f.name} = {given!r} does not fit {f.kind}"
                    ) from None
            else:
                sub = layout(f.kind, version)
                for v in items or [None] * n:
                    out += sub.encode(v or {}, version)
        out += b"\0" * (self.size - len(out))
        return bytes(out)


INTERFACES = ("dla_interface", "emu_interface")


@cache
def _tables() -> dict[str, Any]:
    """Struct and union tables of every interface file, by name."""
    merged: dict[str, Any] = {"structs": {}, "unions": {}}
    for name in INTERFACES:
        path = resources.files("dlakit.loadable") / "data" / f"{name}.toml"
        raw = tomllib.loads(path.read_text())
        for kind in ("structs", "unions"):
            merged[kind].update(raw.get(kind, {}))
    return merged


def _version(text: str) -> Version:
    major, minor, sub = (int(x) for x in text.split("."))
    return major, minor, sub


@cache
def layout(name: str, version: Version = (0, 12, 0)) -> Layout:
    """The layout of struct or union ``name`` in firmware interface ``version``."""
    tables = _tables()
    if name in tables.get("unions", {}):
        members = [layout(m, version) for m in tables["unions"][name]["members"]]
        size = max(m.size for m in members)
        return Layout(name, (), size)
    spec = tables["structs"].get(name)
    if spec is None:
        raise DlakitError(f"no firmware descriptor layout {name!r}")
    fields = []
    size = 0
    for entry in spec["fields"]:
        fname, ftype = entry[0], entry[1]
        since = _version(entry[2]) if len(entry) > 2 else None
        if since is not None and version < since:
            continue
        kind, count = (ftype[0], int(ftype[1])) if isinstance(ftype, list) else (ftype, None)
        width = struct.calcsize(_SCALARS[kind]) if kind in _SCALARS else layout(kind, version).size
        size += width * (count or 1)
        fields.append(_Field(fname, kind, count, since))
    align = int(spec.get("align", 4))
    return Layout(name, tuple(fields), -(-size // align) * align)


def decode(name: str, data: bytes, offset: int = 0, version: Version = (0, 12, 0)) -> Record:
    return layout(name, version).decode(data, offset, version)


def encode(name: str, values: Mapping[str, Any], version: Version = (0, 12, 0)) -> bytes:
    """``values`` packed as struct ``name`` of firmware interface ``version``."""
    return layout(name, version).encode(values, version)
