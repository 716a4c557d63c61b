"""``dlakit trace run``: CRC lines, summary, exit codes, unmodelled features named."""

import shutil

from dlakit.cli import main

SDP_TRACE = "nvdla-traces/nv_small/sdp_3x3x33_bs_int8_reg_0"


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_single_trace_passes_and_prints_crcs(shared, capsys):
    assert main(["trace", "run", str(shared / SDP_TRACE), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "expected 0x" in out and "computed 0x" in out and "1 passed, 0 failed" in out


def test_wrong_golden_fails_with_exit_1(shared, tmp_path, capsys):
    folder = tmp_path / "t"
    shutil.copytree(shared / SDP_TRACE, folder)
    cfg = next(folder.glob("*.cfg"))
    text = cfg.read_text()
    golden = text.rsplit(",", 1)[1].strip(" );\n")
    cfg.write_text(text.replace(golden, "0x12345678"))
    assert _exit_code(["trace", "run", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "0 passed, 1 failed" in out


def test_unmodelled_feature_names_register_and_field(shared, tmp_path, capsys):
    folder = tmp_path / "t"
    shutil.copytree(shared / SDP_TRACE, folder)
    cfg = next(folder.glob("*.cfg"))
    # OUT_PRECISION = INT16 (bits 3:2 of SDP.D_DATA_FORMAT) is outside this INT8 model.
    cfg.write_text(
        cfg.read_text().replace(
            "NVDLA_SDP.D_OP_ENABLE_0, 0x1);",
            "NVDLA_SDP.D_DATA_FORMAT_0, 0x4);\nreg_write(NVDLA_SDP.D_OP_ENABLE_0, 0x1);",
        )
    )
    assert _exit_code(["trace", "run", str(folder)]) == 1
    assert "SDP.D_DATA_FORMAT.OUT_PRECISION=INT16 is not modelled" in capsys.readouterr().out


def test_missing_path_is_a_user_error(tmp_path):
    assert main(["trace", "run", str(tmp_path / "nope")]) == 2
