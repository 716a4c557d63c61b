"""Scale tables other tools read: TensorRT's calibration cache and the NVDLA compiler's JSON table.

TensorRT calibration cache (text; what ``IInt8Calibrator::writeCalibrationCache`` writes and
``readCalibrationCache`` hands back; format per dla_rules.md §1.6 and nvdla/sw
``umd/utils/calibdata/resnet50.txt``)::

    TRT-8600-EntropyCalibration2
    input: 3c010a14
    conv1_out: 3d2c7b3a

One line per tensor: its name, ``": "``, then the big-endian IEEE-754 bits of the float32 scale
(amax/127) as 8 lowercase hex digits. The header names the calibrator class TensorRT will read the
cache with; DLA builds need ``EntropyCalibration2``, so that is written whatever method dlakit used.
Names may hold spaces and colons (``(Unnamed Layer* 0) [Convolution]_output``), so a line splits at
its last ``": "``.

NVDLA calibration table (JSON; nvdla/sw ``LowPrecision.md``, nvdla.md §9.3): an object keyed by
tensor (top blob) name, each ``{"scale": s, "min": m, "max": M, "offset": 0}``. The compiler uses
``scale`` when present; dlakit also writes ``min = -amax`` and ``max = amax`` so a reader that
prefers min/max gets the same scale, and ``offset`` 0 (symmetric).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.files import atomic_write
from dlakit.graph.load import LoadedModel
from dlakit.quant.observe import calibration_tensors
from dlakit.quant.scales import QMAX, ActivationRange, Scales, graph_sha256
from dlakit.quant.validate import add_once, check_range_value, check_scale, one_per_name
from dlakit.quant.weights import weight_ranges

DEFAULT_TRT_VERSION = 8600
TRT_ALGORITHM = "EntropyCalibration2"
_HEADER_RE = re.compile(r"^TRT-(?P<version>\d+)-(?P<algo>[A-Za-z0-9]+)$")
# TensorRT writes the bits unpadded; fewer than 7 digits is a subnormal, which check_scale refuses.
_HEX_RE = re.compile(r"^[0-9a-fA-F]{1,8}$")


def float_to_hex(value: float) -> str:
    """The big-endian float32 bits of ``value`` as 8 lowercase hex digits (1.0 -> 3f800000)."""
    return struct.pack(">f", value).hex()


def hex_to_float(text: str) -> float:
    """Inverse of :func:`float_to_hex` (shorter hex is zero-padded on the left)."""
    return struct.unpack(">f", bytes.fromhex(text.rjust(8, "0")))[0]


@dataclass
class TrtCache:
    """A parsed TensorRT calibration cache: header fields and the scale of each tensor."""

    version: int
    algorithm: str
    scales: dict[str, float]


def write_trt_cache(
    scales: Scales, path: str | Path, trt_version: int = DEFAULT_TRT_VERSION
) -> Path:
    """Write the activation scales as a TensorRT calibration cache (see the module docstring)."""
    lines = [f"TRT-{trt_version}-{TRT_ALGORITHM}"]
    for name, act in scales.activations.items():
        if "\n" in name:
            raise DlakitError(f"tensor name {name!r} holds a newline; a TensorRT cache cannot")
        lines.append(f"{name}: {float_to_hex(act.scale)}")
    return atomic_write(path, "\n".join(lines) + "\n")


def read_trt_cache(path: str | Path) -> TrtCache:
    """Parse a TensorRT calibration cache; DlakitError naming the file and line if malformed."""
    path = Path(path)
    text = _read_text(path, "TensorRT calibration cache")
    lines = text.splitlines()
    header = _HEADER_RE.match(lines[0].strip()) if lines else None
    if header is None:
        first = lines[0][:60] if lines else ""
        raise DlakitError(
            f"{path}:1: not a TensorRT calibration cache: header {first!r} is not "
            f"'TRT-<version>-<calibrator>' (e.g. TRT-8600-EntropyCalibration2)"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        value = value.strip()
        if not sep or not name or not _HEX_RE.match(value):
            raise DlakitError(
                f"{path}:{number}: expected 'tensor_name: <8 hex digits>', got {line[:80]!r}"
            )
        scale = check_scale(hex_to_float(value), f"{path}:{number}: tensor '{name}' scale")
        add_once(scales, name, scale, f"{path}:{number}")
    return TrtCache(int(header["version"]), header["algo"], scales)


def write_nvdla_table(scales: Scales, path: str | Path) -> Path:
    """Write the activation scales as the NVDLA compiler's JSON calibration table."""
    table = {
        name: {"scale": act.scale, "min": -act.amax, "max": act.amax, "offset": 0}
        for name, act in scales.activations.items()
    }
    return atomic_write(path, json.dumps(table, indent=4) + "\n")


def read_nvdla_table(path: str | Path) -> dict[str, float]:
    """Scale per tensor of an NVDLA calibration table (``scale``, else max(|min|,|max|)/127)."""
    path = Path(path)
    try:
        doc = json.loads(
            _read_text(path, "NVDLA calibration table"),
            object_pairs_hook=partial(one_per_name, where=path),
        )
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DlakitError(f"{path} is not an NVDLA calibration table (not JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise DlakitError(f"{path} is not an NVDLA calibration table (not a JSON object)")
    scales: dict[str, float] = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            raise DlakitError(f"{path}: layer '{name}' is not an object with a 'scale'")
        where = f"{path}: layer '{name}'"
        if "scale" in entry:
            scale = check_scale(entry["scale"], f"{where} scale")
        elif "min" in entry and "max" in entry:
            low = check_range_value(entry["min"], f"{where} min")
            high = check_range_value(entry["max"], f"{where} max")
            scale = check_scale(max(abs(low), abs(high)) / QMAX, f"{where} max(|min|, |max|)/127")
        else:
            raise DlakitError(f"{where} has neither a 'scale' nor 'min'/'max'")
        scales[name] = scale
    return scales


def read_scale_table(path: str | Path) -> dict[str, float]:
    """Per-tensor scales from a TensorRT cache or an NVDLA table (a JSON object)."""
    path = Path(path)
    text = _read_text(path, "calibration cache or table")
    if text.lstrip().startswith("{"):
        return read_nvdla_table(path)
    return read_trt_cache(path).scales


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise DlakitError(f"{what} not found: {path}")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise DlakitError(f"{path} is not a {what} (not text)") from None


def scales_from_table(loaded: LoadedModel, table: dict[str, float], source: str) -> Scales:
    """A scales file for ``loaded`` from imported per-tensor scales (a TensorRT cache or an NVDLA
    table): amax = scale * 127, min/max unknown so set to -amax/amax, weights measured from the
    model. Names the model does not calibrate are ignored; a model tensor the table lacks is an
    error, since every INT8 stage needs them all."""
    wanted = calibration_tensors(loaded)
    missing = [name for name in wanted if name not in table]
    if missing:
        raise DlakitError(
            f"{source} has no scale for {len(missing)} of the {len(wanted)} tensors of "
            f"{loaded.path} (first: '{missing[0]}'); was it made for this model?"
        )
    activations = {
        name: ActivationRange(
            amax=table[name] * QMAX, min=-table[name] * QMAX, max=table[name] * QMAX
        )
        for name in wanted
    }
    return Scales(
        model_name=loaded.path.stem,
        graph_sha256=graph_sha256(loaded),
        method="imported",
        percentile=None,
        num_inputs=0,
        data=f"imported from {source}",
        activations=activations,
        weights=weight_ranges(loaded),
    )
