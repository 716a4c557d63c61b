"""Every official nv_small trace must reproduce its golden CRC-32 (shared/nvdla-traces)."""

from pathlib import Path

import pytest

from dlakit.paths import shared_dir
from dlakit.sim.trace import find_traces, run_trace

TRACE_DIR = Path("nvdla-traces") / "nv_small"
_FOUND = find_traces(shared_dir() / TRACE_DIR) if (shared_dir() / TRACE_DIR).is_dir() else []


@pytest.mark.parametrize("cfg", _FOUND or [None], ids=[p.parent.name for p in _FOUND] or ["none"])
def test_trace_matches_golden_crc(shared, cfg):
    assert cfg is not None, f"no traces under {shared / TRACE_DIR}"
    result = run_trace(cfg)
    assert result.error is None, result.error
    assert result.checks, "trace has no check_crc"
    for check in result.checks:
        assert check.computed == check.expected, (
            f"{result.name}: 0x{check.computed:08x} != golden 0x{check.expected:08x}"
        )


def test_all_fifty_traces_present(shared):
    assert len(find_traces(shared / TRACE_DIR)) == 50
