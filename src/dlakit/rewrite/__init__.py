"""DLA-friendly graph rewrites that keep the model's function, checked with onnxruntime.

``fix_model(loaded, target, verify_inputs=None) -> FixResult`` runs every pass in
:data:`~dlakit.rewrite.driver.PASSES` to a fixed point and verifies the result against the
original (max relative error <= 1e-5, see :mod:`dlakit.rewrite.verify`). Each pass lives in its
own module, states its rule ``Pattern -> Replacement`` and conditions in its docstring, and
reports each rewrite (or refusal) with a reason.
"""

from dlakit.rewrite.base import Refusal, Rewrite, RewritePass
from dlakit.rewrite.driver import PASSES, FixResult, fix_model, rewrite_limits
from dlakit.rewrite.verify import TOLERANCE, Verification, VerifyInputs, random_inputs

__all__ = [
    "PASSES",
    "TOLERANCE",
    "FixResult",
    "Refusal",
    "Rewrite",
    "RewritePass",
    "Verification",
    "VerifyInputs",
    "fix_model",
    "random_inputs",
    "rewrite_limits",
]
