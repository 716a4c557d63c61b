"""Where the official NVDLA material is, and what a test does when it is missing."""

import os
from pathlib import Path

import pytest

from dlakit.paths import shared_dir


def in_ci() -> bool:
    """CI sets ``CI`` (``.ci/run`` does too); there the ground truth must be present."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_folder() -> Path:
    """The ``shared/`` folder (DLAKIT_SHARED, default ../shared). Absent, its tests skip with a note
    on a developer's machine and fail under CI, so the ground-truth tests cannot vanish from a CI
    run unnoticed."""
    path = shared_dir()
    if not path.is_dir():
        note = f"shared material not found at {path}; set DLAKIT_SHARED to the shared/ folder"
        if in_ci():
            pytest.fail(f"{note} (CI is set: the official traces and loadables are required)")
        pytest.skip(note)
    return path
