"""dlakit: an open toolchain for DLA-class deep-learning accelerators."""

__version__ = "0.1.0"
