"""Optional dependencies and the extra that installs each.

``pip install dlakit`` serves ``check``, ``fix``, ``profile`` (without ``--plot``), ``calibrate``
and ``compile`` on onnx, onnxruntime and numpy. The heavier libraries come with extras
(pyproject.toml):

* ``sim``: torch, for the simulator, running a ``.dla``, the integer reference behind
  ``accuracy``, zoo models exported from PyTorch and ``profile --target host``;
* ``plot``: matplotlib, for ``profile --plot``;
* ``ray``: ray, for ``--ray`` (shards as Ray tasks on a cluster).

Code that needs one imports it through :func:`require` (or :func:`missing_extra` around a
module-level import), so a missing extra ends in one line naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dlakit.errors import DlakitError

# Top-level module -> the extra of pyproject.toml that installs it.
EXTRA_OF = {"torch": "sim", "matplotlib": "plot", "ortools": "plan", "ray": "ray"}


def missing_extra(exc: ModuleNotFoundError, for_what: str) -> Exception:
    """The one-line error for ``for_what`` when ``exc`` is a missing optional dependency; ``exc``
    itself when the missing module is anything else (a broken install is not a missing extra)."""
    top = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return exc
    return DlakitError(
        f"{for_what} needs {top}, from the '{extra}' extra: pip install 'dlakit[{extra}]'"
    )


def require(module: str, for_what: str) -> ModuleType:
    """Import ``module`` (torch, matplotlib or a submodule) or raise the one-line error."""
    if module.partition(".")[0] not in EXTRA_OF:
        raise ValueError(f"{module} is not an optional dependency of dlakit")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, for_what) from None
