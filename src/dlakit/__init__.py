"""dlakit: an open toolchain for DLA-class deep-learning accelerators."""

import os

# torch's OpenMP threads spin after each parallel region by default, and fight the compiled
# (numba) loops of the simulator, integer reference and calibration for the same cores: 2-3x
# slower on a 2-core machine. Passive waiting, unless the user chose otherwise; it has to be set
# before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
