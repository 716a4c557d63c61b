"""The one exception type users see.

Every stage raises :class:`DlakitError` (or a subclass) for bad input: a missing file, an unknown
target, a model with dynamic shapes. The CLI prints its message on one line and exits non-zero;
anything else reaching the CLI is a bug in dlakit and is reported as such.
"""


class DlakitError(Exception):
    """A user-facing error; its message names what is wrong (file, node, flag)."""


class ModelError(DlakitError):
    """The model file cannot be used: missing, not ONNX, truncated, unknown op, dynamic shape."""


class TargetError(DlakitError):
    """Unknown target, rule set, power mode or a limit the target does not have."""
