"""The ``.dla`` artifact validator: ``inspect`` and ``run`` read nothing an artifact says before
it passes.

* **The zip**: it opens, each member is at most :data:`MAX_MEMBER_BYTES`, every member's bytes
  match their CRC-32, and the members the manifest names are there.
* **The manifest** (``docs/artifact.md``), field by field with types and ranges: format and
  version; a known open NVDLA target whose ``hw`` section is that target's; inputs and outputs
  that are tensors; every tensor's shape positive, its precision known, an INT8 scale finite and
  positive, its surface inside the memory allocation; the memory allocation inside the target's
  address space and under :data:`MAX_MEMORY_BYTES`; ``constants.bin`` of the size and SHA-256
  the manifest gives; at least one segment, each of a known kind; fallback members that are
  valid ONNX; DLA operations with register writes of the form ``UNIT.REGISTER=0x%08x`` naming
  registers of the hw tree's map, each value within the register's fields (no bit set outside
  a field), and data cubes (the size registers) that fit the memory allocation.

Every failure is a :class:`~dlakit.errors.DlakitError` naming the file and the field
(``segments[1].ops[4].registers[17]``).
"""

from __future__ import annotations

import hashlib
import math
import re
import zipfile
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import onnx

from dlakit.errors import DlakitError
from dlakit.hw import load_register_map

# One zip member: the constants of the largest network compiled here are ~150 MB.
MAX_MEMBER_BYTES = 2**31
# The memory allocation (activations + constants) the simulator is asked to hold.
MAX_MEMORY_BYTES = 2**32
# Tensor dimensions, as for models (dlakit.graph.validate.MAX_DIM).
MAX_DIM = 2**31 - 1
PRECISIONS = ("int8", "fp16", "fp32")
STAT_COUNTS = ("dla_segments", "fallback_segments", "hardware_ops")  # what inspect prints
SEGMENT_KINDS = ("dla", "fallback")
_WRITE_RE = re.compile(r"^([A-Z][A-Z0-9_]*)\.([A-Z][A-Z0-9_]*)=0x([0-9a-fA-F]{1,8})$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class _Where:
    """Names the field being checked: ``file: segments[1].ops[4].kind``."""

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def fail(self, field: str, message: str) -> DlakitError:
        return DlakitError(f"{self.path}: manifest {field}: {message}")


def read_members(path: Path) -> dict[str, bytes]:
    """Every member of the artifact's zip, integrity checked (size caps, CRC-32)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            for info in infos:
                if info.file_size > MAX_MEMBER_BYTES:
                    raise DlakitError(
                        f"{path}: member {info.filename} declares {info.file_size} bytes, more "
                        f"than the cap of {MAX_MEMBER_BYTES}"
                    )
            return {info.filename: z.read(info) for info in infos if not info.is_dir()}
    except DlakitError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
    ) as e:
        raise DlakitError(f"{path} is not a dlakit .dla artifact (zip: {e})") from None


def fallback_model(data: bytes, member: str, path: Path | str) -> onnx.ModelProto:
    """A fallback segment's ONNX member, parsed and passed by onnx's checker."""
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DlakitError(f"{path}: {member} is not a valid ONNX model: {first}") from None
    return model


def _int_list(value: Any, where: _Where, field: str, low: int) -> None:
    _check(
        isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value),
        where,
        field,
        f"{value!r} is not a list of integers >= {low}",
    )


def _op_info(op: dict, where: _Where, field: str) -> None:
    """The fields ``inspect`` shows (for people; the registers are what runs), typed."""
    for key, low in (("in", 1), ("out", 1), ("kernel", 1), ("stride", 1)):
        if key in op:
            _int_list(op[key], where, f"{field}.{key}", low)
    if "groups" in op:
        _int(op, "groups", where, field, 1)
    for key, kind in (("memory", str), ("tile", int)):
        if key in op:
            value = _dict(op, key, where, field)
            for k, v in value.items():
                _check(
                    isinstance(v, kind) and not isinstance(v, bool),
                    where,
                    f"{field}.{key}.{k}",
                    f"{v!r} is not a {kind.__name__}",
                )
    if "pool" in op:
        _dict(op, "pool", where, field)


# The data cubes an operation's registers describe (value + 1 per axis). Each is read from or
# written to memory, so none can be larger than the memory allocation; a convolution's output may
# reach memory only after pooling on the fly (PDP windows up to 8x8, so 64 times smaller). This
# bounds the work and the index tensors of the simulator before it runs anything.
POOLED_ON_THE_FLY = 64
ON_THE_FLY = ("CSC output", "CACC output", "SDP cube")
CUBE_REGISTERS = {
    "CDMA input": ("CDMA", ("D_DATAIN_SIZE_0", "DATAIN_WIDTH"),
                   ("D_DATAIN_SIZE_0", "DATAIN_HEIGHT"), ("D_DATAIN_SIZE_1", "DATAIN_CHANNEL")),
    "CSC input": ("CSC", ("D_DATAIN_SIZE_EXT_0", "DATAIN_WIDTH_EXT"),
                  ("D_DATAIN_SIZE_EXT_0", "DATAIN_HEIGHT_EXT"),
                  ("D_DATAIN_SIZE_EXT_1", "DATAIN_CHANNEL_EXT")),
    "CSC output": ("CSC", ("D_DATAOUT_SIZE_0", "DATAOUT_WIDTH"),
                   ("D_DATAOUT_SIZE_0", "DATAOUT_HEIGHT"), ("D_DATAOUT_SIZE_1", "DATAOUT_CHANNEL")),
    "CACC output": ("CACC", ("D_DATAOUT_SIZE_0", "DATAOUT_WIDTH"),
                    ("D_DATAOUT_SIZE_0", "DATAOUT_HEIGHT"),
                    ("D_DATAOUT_SIZE_1", "DATAOUT_CHANNEL")),
    "SDP_RDMA cube": ("SDP_RDMA", ("D_DATA_CUBE_WIDTH", "WIDTH"), ("D_DATA_CUBE_HEIGHT", "HEIGHT"),
                      ("D_DATA_CUBE_CHANNEL", "CHANNEL")),
    "SDP cube": ("SDP", ("D_DATA_CUBE_WIDTH", "WIDTH"), ("D_DATA_CUBE_HEIGHT", "HEIGHT"),
                 ("D_DATA_CUBE_CHANNEL", "CHANNEL")),
    "PDP input": ("PDP", ("D_DATA_CUBE_IN_WIDTH", "CUBE_IN_WIDTH"),
                  ("D_DATA_CUBE_IN_HEIGHT", "CUBE_IN_HEIGHT"),
                  ("D_DATA_CUBE_IN_CHANNEL", "CUBE_IN_CHANNEL")),
    "PDP output": ("PDP", ("D_DATA_CUBE_OUT_WIDTH", "CUBE_OUT_WIDTH"),
                   ("D_DATA_CUBE_OUT_HEIGHT", "CUBE_OUT_HEIGHT"),
                   ("D_DATA_CUBE_OUT_CHANNEL", "CUBE_OUT_CHANNEL")),
    "PDP_RDMA input": ("PDP_RDMA", ("D_DATA_CUBE_IN_WIDTH", "CUBE_IN_WIDTH"),
                       ("D_DATA_CUBE_IN_HEIGHT", "CUBE_IN_HEIGHT"),
                       ("D_DATA_CUBE_IN_CHANNEL", "CUBE_IN_CHANNEL")),
    "CDP_RDMA cube": ("CDP_RDMA", ("D_DATA_CUBE_WIDTH", "WIDTH"), ("D_DATA_CUBE_HEIGHT", "HEIGHT"),
                      ("D_DATA_CUBE_CHANNEL", "CHANNEL")),
}  # fmt: skip


def _check_cubes(doc: dict, where: _Where, hw_tree: str, atom: int, budget: int) -> None:
    """No operation's register-programmed cube exceeds the memory allocation (``budget``)."""
    regmap = load_register_map(hw_tree)
    state: dict[tuple[str, str], int] = {}  # the register values in force, as the ops run
    for i, seg in enumerate(doc["segments"]):
        for k, op in enumerate(seg.get("ops", [])):
            for text in op["registers"]:
                m = _WRITE_RE.match(text)
                assert m is not None  # the writes were checked by _op
                state[(m.group(1), m.group(2))] = int(m.group(3), 16)
            for what, (unit, *axes) in CUBE_REGISTERS.items():
                if unit not in regmap.registers:
                    continue
                dims = []
                for reg, fld in axes:
                    r = regmap.registers[unit].get(reg)
                    if r is None or fld not in r.fields:
                        break
                    dims.append(r.fields[fld].get(state.get((unit, reg), r.reset)) + 1)
                else:
                    w, h, c = dims
                    size = w * h * (-(-c // atom) * atom)
                    fly = op.get("kind") == "conv" and what in ON_THE_FLY
                    limit = budget * (POOLED_ON_THE_FLY if fly else 1)
                    _check(
                        size <= limit,
                        where,
                        f"segments[{i}].ops[{k}]",
                        f"its {what} of {w}x{h}x{c} would need {size} bytes, more than "
                        f"{limit} (the memory allocation is {budget})",
                    )


def _check(ok: bool, where: _Where, field: str, message: str) -> None:
    if not ok:
        raise where.fail(field, message)


def _int(doc: Any, key: str, where: _Where, field: str, low: int = 0, high: int | None = None):
    value = doc.get(key) if isinstance(doc, dict) else None
    name = f"{field}.{key}" if field else key
    _check(isinstance(value, int) and not isinstance(value, bool), where, name, "not an integer")
    _check(value >= low, where, name, f"{value} is below {low}")
    if high is not None:
        _check(value <= high, where, name, f"{value} is above {high}")
    return value


def _str(doc: Any, key: str, where: _Where, field: str, optional: bool = False) -> str | None:
    value = doc.get(key) if isinstance(doc, dict) else None
    name = f"{field}.{key}" if field else key
    if value is None and optional:
        return None
    _check(isinstance(value, str) and value != "", where, name, "not a non-empty string")
    return value


def _names(doc: Any, key: str, where: _Where, field: str) -> list[str]:
    value = doc.get(key) if isinstance(doc, dict) else None
    name = f"{field}.{key}" if field else key
    _check(
        isinstance(value, list) and all(isinstance(v, str) for v in value),
        where,
        name,
        "not a list of names",
    )
    return value


def _dict(doc: Any, key: str, where: _Where, field: str = "") -> dict:
    value = doc.get(key) if isinstance(doc, dict) else None
    _check(isinstance(value, dict), where, f"{field}.{key}" if field else key, "not an object")
    return value


@cache
def _field_masks(hw_tree: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(unit, register) -> (bits any field covers, CSB address) for the tree's register map."""
    regmap = load_register_map(hw_tree)
    masks = {}
    for unit, regs in regmap.registers.items():
        for name, reg in regs.items():
            mask = 0
            for fld in reg.fields.values():
                mask |= fld.mask
            masks[(unit, name)] = (mask, reg.address)
    return masks


def validate_manifest(doc: Any, path: Path | str, members: dict[str, bytes]) -> None:
    """Refuse a manifest that is not what ``docs/artifact.md`` says, naming the field."""
    from dlakit.nvdla.config import nvdla_target

    where = _Where(path)
    _check(isinstance(doc, dict), where, "(top level)", "not a JSON object")
    target_name = _str(doc, "target", where, "")
    try:
        target = nvdla_target(target_name)  # type: ignore[arg-type]
    except DlakitError:
        raise where.fail("target", f"{target_name!r} is not an open NVDLA target") from None
    assert target.nvdla is not None
    hw = _dict(doc, "hw", where)
    known = target.nvdla.to_json()
    for key, value in known.items():
        _check(
            type(hw.get(key)) is type(value) and hw.get(key) == value,
            where,
            f"hw.{key}",
            f"{hw.get(key)!r}, but target {target_name} has {value!r} (recompile the model)",
        )
    _check(set(hw) == set(known), where, "hw", f"keys {sorted(set(hw) ^ set(known))} differ")
    _str(doc, "model", where, "")
    _str(doc, "preprocess", where, "", optional=True)
    stats = _dict(doc, "stats", where)
    for key in STAT_COUNTS:
        _int(stats, key, where, "stats")

    regions = _memory(doc, where, target.nvdla.mem_address_width, members)
    tensors = _tensors(doc, where, regions, target.nvdla.memory_atomic)
    for key in ("inputs", "outputs"):
        names = _names(doc, key, where, "")
        _check(bool(names), where, key, "empty")
        for i, name in enumerate(names):
            _check(name in tensors, where, f"{key}[{i}]", f"{name!r} is not in tensors")
    _segments(doc, where, tensors, members, target.nvdla.hw_tree)
    budget = sum(hi - lo for lo, hi in regions)
    _check_cubes(doc, where, target.nvdla.hw_tree, target.nvdla.memory_atomic, budget)


def _memory(
    doc: dict, where: _Where, address_bits: int, members: dict[str, bytes]
) -> list[tuple[int, int]]:
    mem = _dict(doc, "memory", where)
    top = 1 << address_bits
    act = _dict(mem, "activations", where, "memory")
    act_base = _int(act, "base", where, "memory.activations", 0, top - 1)
    act_size = _int(act, "size", where, "memory.activations")
    const = _dict(mem, "constants", where, "memory")
    const_base = _int(const, "base", where, "memory.constants", 0, top - 1)
    const_size = _int(const, "size", where, "memory.constants")
    total = act_size + const_size
    _check(
        total <= MAX_MEMORY_BYTES,
        where,
        "memory",
        f"the allocation would need {total} bytes ({total / 2**30:.1f} GiB), more than the "
        f"simulator's cap of {MAX_MEMORY_BYTES // 2**30} GiB",
    )
    for name, base, size in (("activations", act_base, act_size), ("constants", const_base,
                                                                    const_size)):  # fmt: skip
        _check(
            base + size <= top,
            where,
            f"memory.{name}",
            f"[0x{base:x}, 0x{base + size:x}) ends past the {address_bits}-bit address space",
        )
    _check(
        act_base + act_size <= const_base or const_base + const_size <= act_base,
        where,
        "memory",
        "activations and constants overlap",
    )
    _int(mem, "peak_bytes", where, "memory")
    file = _str(const, "file", where, "memory.constants")
    _check(file in members, where, "memory.constants.file", f"no member {file!r} in the zip")
    data = members[file]  # type: ignore[index]
    _check(
        len(data) == const_size,
        where,
        "memory.constants.size",
        f"{const_size}, but {file} holds {len(data)} bytes",
    )
    sha = _str(const, "sha256", where, "memory.constants")
    _check(bool(_SHA_RE.match(sha or "")), where, "memory.constants.sha256", "not 64 hex digits")
    _check(
        hashlib.sha256(data).hexdigest() == sha,
        where,
        "memory.constants.sha256",
        f"{file} does not match its checksum",
    )
    return [(act_base, act_base + act_size), (const_base, const_base + const_size)]


def _tensors(
    doc: dict, where: _Where, regions: list[tuple[int, int]], atom: int
) -> dict[str, dict]:
    tensors = _dict(doc, "tensors", where)
    for name, t in tensors.items():
        field = f"tensors[{name!r}]"
        _check(isinstance(t, dict), where, field, "not an object")
        shape = t.get("shape")
        _check(
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape),
            where,
            f"{field}.shape",
            "not a list of integers",
        )
        _check(
            all(1 <= d <= MAX_DIM for d in shape),
            where,
            f"{field}.shape",
            f"{shape}: every dimension must be in [1, {MAX_DIM}]",
        )
        precision = t.get("precision")
        _check(
            precision in PRECISIONS,
            where,
            f"{field}.precision",
            f"{precision!r}, not one of {', '.join(PRECISIONS)}",
        )
        scale = t.get("scale")
        if precision == "int8" or scale is not None:
            _check(
                isinstance(scale, int | float)
                and not isinstance(scale, bool)
                and math.isfinite(scale)
                and scale > 0,
                where,
                f"{field}.scale",
                f"{scale!r} is not a finite positive number",
            )
        surface = t.get("surface")
        if surface is not None:
            _surface(surface, shape, where, f"{field}.surface", regions, atom)
    return tensors


def _surface(
    s: Any,
    shape: list[int],
    where: _Where,
    field: str,
    regions: list[tuple[int, int]],
    atom: int,
) -> None:
    _check(isinstance(s, dict), where, field, "not an object")
    address = _int(s, "address", where, field)
    c = _int(s, "channels", where, field, 1, MAX_DIM)
    h = _int(s, "height", where, field, 1, MAX_DIM)
    w = _int(s, "width", where, field, 1, MAX_DIM)
    line = _int(s, "line_stride", where, field, 0)
    surf = _int(s, "surf_stride", where, field, 0)
    _check(len(shape) in (2, 3, 4), where, field, f"a surface for a tensor of shape {shape}")
    _check(
        math.prod(shape[1:]) == c * h * w,
        where,
        field,
        f"a {c}x{h}x{w} cube does not hold a tensor of shape {shape}",
    )
    end = address + (-(-c // atom) - 1) * surf + (h - 1) * line + w * atom
    _check(
        any(lo <= address and end <= hi for lo, hi in regions),
        where,
        field,
        f"bytes [0x{address:x}, 0x{end:x}) are outside the memory allocation",
    )


def _segments(
    doc: dict, where: _Where, tensors: dict, members: dict[str, bytes], hw_tree: str
) -> None:
    segments = doc.get("segments")
    _check(isinstance(segments, list), where, "segments", "not a list")
    _check(bool(segments), where, "segments", "empty: the artifact runs nothing")
    masks = _field_masks(hw_tree)
    for i, seg in enumerate(segments):
        field = f"segments[{i}]"
        _check(isinstance(seg, dict), where, field, "not an object")
        kind = seg.get("kind")
        _check(kind in SEGMENT_KINDS, where, f"{field}.kind", f"{kind!r}, not dla or fallback")
        _str(seg, "name", where, field)
        _names(seg, "layers", where, field)
        for key in ("inputs", "outputs"):
            for j, name in enumerate(_names(seg, key, where, field)):
                _check(name in tensors, where, f"{field}.{key}[{j}]", f"{name!r} is not in tensors")
        if kind == "fallback":
            member = _str(seg, "onnx", where, field)
            _check(member in members, where, f"{field}.onnx", f"no member {member!r} in the zip")
            fallback_model(members[member], member, where.path)  # type: ignore[index]
            continue
        ops = seg.get("ops")
        _check(isinstance(ops, list) and bool(ops), where, f"{field}.ops", "not a list of ops")
        for k, op in enumerate(ops):
            _op(op, where, f"{field}.ops[{k}]", tensors, masks, hw_tree)


def _op(
    op: Any,
    where: _Where,
    field: str,
    tensors: dict,
    masks: dict[tuple[str, str], tuple[int, int]],
    hw_tree: str,
) -> None:
    _check(isinstance(op, dict), where, field, "not an object")
    for key in ("name", "kind", "layer"):
        _str(op, key, where, field)
    _names(op, "onnx_nodes", where, field)
    _op_info(op, where, field)
    for key in ("inputs", "outputs"):
        for j, name in enumerate(_names(op, key, where, field)):
            _check(name in tensors, where, f"{field}.{key}[{j}]", f"{name!r} is not in tensors")
    writes = op.get("registers")
    _check(
        isinstance(writes, list) and bool(writes),
        where,
        f"{field}.registers",
        "not a list of register writes",
    )
    for j, text in enumerate(writes):
        name = f"{field}.registers[{j}]"
        m = _WRITE_RE.match(text) if isinstance(text, str) else None
        _check(m is not None, where, name, f"{text!r} is not UNIT.REGISTER=0x%08x")
        assert m is not None
        unit, reg, value = m.group(1), m.group(2), int(m.group(3), 16)
        known = masks.get((unit, reg))
        _check(known is not None, where, name, f"no register {unit}.{reg} in hw tree {hw_tree}")
        assert known is not None
        _check(
            value & ~known[0] == 0,
            where,
            name,
            f"{unit}.{reg}=0x{value:08x} sets bits outside its fields (mask 0x{known[0]:08x})",
        )
