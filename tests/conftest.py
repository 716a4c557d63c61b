"""Shared fixtures: where the official NVDLA material is, and markers for GPU-only tests."""

import os
from pathlib import Path

import pytest

from dlakit.paths import shared_dir
from shared_material import shared_folder


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``shared/`` folder with the official NVDLA traces and loadables: skipped when absent,
    failed under CI (shared_material.shared_folder)."""
    return shared_folder()


def pytest_configure(config):
    # pytest-xdist workers start with COLUMNS=80, and rich fixes a console's width from COLUMNS when
    # the console is made, at a CLI module's import: the first test to import a verb would decide
    # its width for every later test. Without the variable, consoles follow COLUMNS as tests set it.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    # The shared folder's default is relative to the current directory; tests that run commands
    # in a work folder must still find it, so pin it once, from where pytest started.
    os.environ.setdefault("DLAKIT_SHARED", str(shared_dir()))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
