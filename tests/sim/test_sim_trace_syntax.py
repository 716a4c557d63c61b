"""Every command of the official trace syntax (nvdla/hw verif/tools/nvdla_trace_parser.py) is
played, or refused by name: variants of one official trace, its .dat files read in place."""

from pathlib import Path

import pytest

from dlakit.sim.trace import run_trace

TRACE = Path("nvdla-traces") / "nv_small" / "sdp_8x8x32_bypass_int8_1"
INTR = "intr_notify(SDP_0, SDP_0_SDP_0_interrupt);"
CRC = "check_crc(SDP_0_SDP_0_interrupt, pri_mem, 0x80080000, 0x800, 0x9F5EDD58);"


def _variant(shared: Path, tmp_path: Path, edit) -> Path:
    folder = shared / TRACE
    text = (folder / f"{TRACE.name}.cfg").read_text()
    # The .dat files stay where they are: name them by absolute path.
    text = text.replace('"SDP_0_', f'"{folder}/SDP_0_')
    assert INTR in text and CRC in text
    cfg = tmp_path / "variant.cfg"
    cfg.write_text(edit(text))
    return cfg


def _play(shared, tmp_path, edit):
    return run_trace(_variant(shared, tmp_path, edit))


def test_the_official_trace_passes_as_is(shared, tmp_path):
    result = _play(shared, tmp_path, lambda t: t)
    assert result.passed and [c.kind for c in result.checks] == ["crc"]


def test_events_register_reads_and_every_check_kind(shared, tmp_path):
    folder = shared / TRACE

    def edit(text: str) -> str:
        # Checks before their event wait for it; single-shot interrupt; sync events; reads.
        head = text.replace(INTR, "").replace(CRC, "")
        return head + "\n".join([
            CRC,
            f'check_file(SDP_0_SDP_0_interrupt, pri_mem, 0x80080000, 0x800, '
            f'"{folder}/SDP_0_input.dat");',
            "check_nothing(done);",
            "intr_notify(SDP_0_SDP_0_interrupt);",
            "sync_notify(NVDLA_SDP, done);",
            "sync_wait(NVDLA_SDP, done);",
            "reg_read(NVDLA_SDP.D_CVT_SCALE_0, read_0);",
            "reg_read_check(NVDLA_CDMA.S_CBUF_FLUSH_STATUS_0, 0x1);",
            "mem_reserve(pri_mem, 0x90000000, 0x100);",
            "mem_release(pri_mem, 0x90000000, done);",
        ]) + "\n"  # fmt: skip

    result = _play(shared, tmp_path, edit)
    assert result.error is None, result.error
    assert sorted(c.kind for c in result.checks) == ["crc", "file", "nothing"]
    assert result.passed


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("frobnicate(1);", "trace command frobnicate is not in the NVDLA trace syntax"),
        ("mem_init(pri_mem, 0x90000000, 0x100, RANDOM);", "mem_init pattern RANDOM is not mod"),
        ('mem_init(pri_mem, 0x90000000, "x.dat", ALL_ZERO);', "mem_init from a file"),
        ("mem_init(sec_mem, 0x90000000, 0x100, ALL_ZERO);", "nv_small has no secondary memory"),
        ("sync_wait(NVDLA_SDP, never);", "sync_wait for never, which nothing notified"),
        ("check_crc(never, pri_mem, 0x80080000, 0x800, 0x0);", "waits for event never"),
        ("reg_read_check(NVDLA_CDMA.S_CBUF_FLUSH_STATUS_0, 0x0);", "the trace expects 0x0"),
        ("reg_write(NVDLA_SDP.D_CVT_SCALE_0);", "reg_write takes 2 arguments, the line has 1"),
    ],
)
def test_commands_that_cannot_apply_are_refused_by_name(shared, tmp_path, line, message):
    result = _play(shared, tmp_path, lambda t: t + line + "\n")
    assert not result.passed and result.error is not None and message in result.error
