from dlakit.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "dlakit" in capsys.readouterr().out


def test_unknown_verb_is_a_usage_error(capsys):
    assert main(["no-such-verb"]) != 0


def test_a_failing_trace_exits_1(shared, tmp_path):
    import re
    import shutil

    src = shared / "nvdla-traces" / "nv_small" / "sdp_1x1x1_pass_through_int8"
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    cfg = dst / f"{src.name}.cfg"
    text = cfg.read_text()
    cfg.write_text(re.sub(r"(check_crc\([^)]*,\s*)0x[0-9a-fA-F]+\)", r"\g<1>0x12345678)", text))
    assert main(["trace", "run", str(cfg)]) == 1
