"""Trace files (dlakit.sim.trace_check): every malformed line a named failure, out-of-range
addresses and over-wide values refused (exit 2) before any trace runs."""

import pytest
from badinput_cases import TRACE_CFG, TRACE_DAT, refused

from dlakit.sim.trace import run_trace
from dlakit.sim.trace_check import TraceFormatError, check_trace

CFG = {
    "an out-of-range mem_load": (
        TRACE_CFG.replace('mem_load(pri_mem, 0x80000000', 'mem_load(pri_mem, 0xfffffffe'),
        None, "32-bit address space"),
    "a 33-bit register value": (
        TRACE_CFG.replace("S_POINTER_0, 0x0", "S_POINTER_0, 0x1ffffffff"), None, "wider"),
    "a value that is no number": (TRACE_CFG.replace("S_POINTER_0, 0x0", "S_POINTER_0, zz"),
                                  None, "not a number"),
    "an unknown register": (TRACE_CFG.replace("S_POINTER_0", "NOPE_0"), None, "NOPE"),
    "a decimal with a leading zero": (TRACE_CFG.replace("S_POINTER_0, 0x0", "S_POINTER_0, 080"),
                                      None, "not a number"),
    "a .dat name with a NUL byte": (TRACE_CFG.replace('"t.dat"', '"t\0.dat"'), None, "not found"),
    "an unknown command": (TRACE_CFG + "frobnicate(1, 2);\n", None, "frobnicate"),
    "a wrong number of arguments": (
        TRACE_CFG.replace("0x80000000, 0x20, ALL_ZERO", "0x80000000"), None, "4 arguments"),
    "an unparseable line": (TRACE_CFG + ")(\n", None, "cannot parse"),
    "check_crc outside memory": (TRACE_CFG.replace("1, 0x80000000, 0x20", "1, 0x10, 0x20"),
                                 None, "check_crc"),
    "a 2^40-byte mem_init": (TRACE_CFG.replace("0x20, ALL_ZERO", "0x10000000000, ALL_ZERO"),
                             None, "size"),
    "a .dat offset of 0xFFFFFFFF": (TRACE_CFG, TRACE_DAT.replace("offset:0x0", "offset:0xFFFFFFFF"),
                                    "address space"),
    "garbage .dat lines": (TRACE_CFG, TRACE_DAT.replace("}\n", "}\nnot a packet\n", 1),
                           "t.dat:4"),
    "a .dat size that is not the payload's": (TRACE_CFG, TRACE_DAT.replace("size:4", "size:5"),
                                              "size 5"),
    "a .dat payload byte over 0xff": (TRACE_CFG, TRACE_DAT.replace("0x01", "0x1FF"),
                                      "not a memory packet"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CFG))
def test_a_broken_trace_is_refused_and_never_passes(work, capsys, name):
    cfg, dat, needle = CFG[name]
    (work / "trace" / "t.cfg").write_text(cfg)
    if dat is not None:
        (work / "trace" / "t.dat").write_text(dat)
    refused(["trace", "run", "trace/t.cfg", "-q"], capsys, needle)
    result = run_trace(work / "trace" / "t.cfg")  # the library path: an error, never a pass
    assert not result.passed and needle.split()[0] in (result.error or "")


def test_a_missing_dat_file_is_named(work, capsys):
    (work / "trace" / "t.dat").unlink()
    refused(["trace", "run", "trace/t.cfg", "-q"], capsys, "t.dat")


def test_the_validator_accepts_the_official_traces(shared):
    from dlakit.hw import load_register_map

    regmap = load_register_map("v2")
    cfgs = sorted((shared / "nvdla-traces" / "nv_small").glob("*/*.cfg"))
    assert len(cfgs) == 50
    for cfg in cfgs:
        check_trace(cfg, 32, regmap)


def test_mem_load_past_the_address_space_is_a_format_error(tmp_path):
    (tmp_path / "t.cfg").write_text('mem_load(pri_mem, 0xffffffff, "t.dat");\n')
    (tmp_path / "t.dat").write_text(TRACE_DAT)
    with pytest.raises(TraceFormatError, match="address space"):
        check_trace(tmp_path / "t.cfg", 32)
