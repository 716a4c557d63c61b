"""The side-file validator: scales files, TensorRT calibration caches and NVDLA calibration tables.

Every reader of these files (:mod:`dlakit.quant.scales`, :mod:`dlakit.quant.formats`) passes each
value through here, so a scale is the same kind of number whichever file it came from:

* a scale (and an activation's ``amax``) is finite, positive and a normal float32 (at least
  :data:`MIN_SCALE`, at most float32's largest): INT8 values are ``round(x / scale)``, and a zero,
  subnormal or infinite scale turns them into garbage without an error;
* a weight channel's ``amax`` is finite and >= 0 (an all-zero channel has 0);
* one value per tensor: a name given twice (a repeated JSON key, a repeated cache line) with two
  values is refused; the same value twice is taken once.
"""

from __future__ import annotations

import math
from typing import Any

from dlakit.errors import DlakitError

MIN_SCALE = 1.1754943508222875e-38  # float32's smallest normal number
MAX_FLOAT32 = 3.4028234663852886e38


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DlakitError(f"{where}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DlakitError(f"{where}: {value!r} is not a number") from None


def check_scale(value: Any, where: str) -> float:
    """A scale or activation amax: finite, positive, a normal float32."""
    number = _number(value, where)
    if not math.isfinite(number) or not MIN_SCALE <= number <= MAX_FLOAT32:
        raise DlakitError(
            f"{where}: {value!r} is not a finite positive normal float32 "
            f"(a scale must be in [{MIN_SCALE:.3g}, {MAX_FLOAT32:.3g}])"
        )
    return number


def check_range_value(value: Any, where: str) -> float:
    """An observed extreme (min or max): finite, within float32."""
    number = _number(value, where)
    if not math.isfinite(number) or abs(number) > MAX_FLOAT32:
        raise DlakitError(f"{where}: {value!r} is not a finite float32 value")
    return number


def check_weight_amax(value: Any, where: str) -> float:
    """A weight channel's amax: finite and >= 0."""
    number = check_range_value(value, where)
    if number < 0:
        raise DlakitError(f"{where}: {value!r} is negative; an amax is >= 0")
    return number


def one_per_name(pairs: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    """``json.loads(..., object_pairs_hook=...)``: a key given twice with two values is refused."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise DlakitError(f"{where}: {key!r} is given twice, with two values")
        out[key] = value
    return out


def add_once(table: dict[str, float], name: str, value: float, where: str) -> None:
    """Record ``name``'s scale; a second, different one for the same name is refused."""
    if name in table and table[name] != value:
        raise DlakitError(
            f"{where}: tensor '{name}' is given twice with two scales ({table[name]!r} and "
            f"{value!r})"
        )
    table[name] = value
