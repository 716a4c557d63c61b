"""Performance model: per-hardware-layer DLA cycles, GPU roofline, host timing, calibration.

Modeled numbers always carry :func:`model_version`; the fitted parameters and their provenance
live in ``data/params.toml``, target facts (clocks, MAC arrays, bandwidth) in the target files.
"""

from dlakit.perf.api import images_per_second, profile_model
from dlakit.perf.hw import load_params, model_version
from dlakit.perf.layers import HwLayer, build_layers
from dlakit.perf.model import Profile

__all__ = [
    "HwLayer",
    "Profile",
    "build_layers",
    "images_per_second",
    "load_params",
    "model_version",
    "profile_model",
]
