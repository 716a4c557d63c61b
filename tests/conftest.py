"""Shared fixtures: where the official NVDLA material is, and markers for GPU-only tests."""

from pathlib import Path

import pytest

from dlakit.paths import shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``shared/`` folder (DLAKIT_SHARED, default ../shared); skip when it is absent."""
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared material not found at {path}; set DLAKIT_SHARED to an nvdla checkout")
    return path


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
