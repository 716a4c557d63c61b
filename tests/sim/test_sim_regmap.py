"""The v2 register map: addresses and fields as in opendla_small.h / the RDL manual."""

import pytest

from dlakit.errors import DlakitError
from dlakit.hw import load_register_map


@pytest.fixture(scope="module")
def regmap():
    return load_register_map("v2")


def test_unit_bases_match_opendla_small(regmap):
    # Source: nvdla/sw kmd/firmware/include/opendla_small.h (nvdla.md §2).
    expected = {
        "GLB": 0x1000,
        "CDMA": 0x3000,
        "CSC": 0x4000,
        "CMAC_A": 0x5000,
        "CMAC_B": 0x6000,
        "CACC": 0x7000,
        "SDP_RDMA": 0x8000,
        "SDP": 0x9000,
        "PDP_RDMA": 0xA000,
        "PDP": 0xB000,
        "CDP_RDMA": 0xC000,
        "CDP": 0xD000,
    }
    for unit, base in expected.items():
        assert regmap.bases[unit] == base


def test_encode_fields_and_enums(regmap):
    addr, value = regmap.encode("SDP", "D_DP_BS_CFG", BS_BYPASS="YES", BS_ALU_ALGO="SUM")
    assert addr == 0x9000 + regmap.register("SDP", "D_DP_BS_CFG").offset
    assert value == 0b1001
    assert regmap.decode("SDP", "D_DP_BS_CFG", value)["BS_ALU_ALGO"] == 2


def test_negative_field_values_wrap_to_width(regmap):
    _, value = regmap.encode("PDP", "D_POOLING_PADDING_VALUE_1_CFG", PAD_VALUE_1X=-1)
    assert value == (1 << 19) - 1


def test_trace_spelling_and_address_lookup(regmap):
    reg = regmap.lookup("NVDLA_CACC.D_DATAOUT_SIZE_0_0")
    assert (reg.unit, reg.name) == ("CACC", "D_DATAOUT_SIZE_0")
    assert regmap.at(reg.address) is reg
    assert regmap.lookup("NVDLA_SDP.D_OP_ENABLE_0").per_group
    assert not regmap.lookup("NVDLA_SDP.S_POINTER_0").per_group


def test_errors_name_the_problem(regmap):
    with pytest.raises(DlakitError, match="no field NOPE"):
        regmap.encode("SDP", "D_DP_BS_CFG", NOPE=1)
    with pytest.raises(DlakitError, match="does not fit 1 bits"):
        regmap.encode("SDP", "D_DP_BS_CFG", BS_BYPASS=2)
    with pytest.raises(DlakitError, match="unknown register"):
        regmap.lookup("NVDLA_SDP.D_NOT_A_REG_0")


def test_v1_map_bases_match_opendla_initial():
    # Source: nvdla/sw kmd/firmware/include/opendla_initial.h (nvdla.md §2).
    v1 = load_register_map("v1")
    expected = {
        "GLB": 0x0,
        "MCIF": 0x2000,
        "CVIF": 0x3000,
        "BDMA": 0x4000,
        "CDMA": 0x5000,
        "CSC": 0x6000,
        "CMAC_A": 0x7000,
        "CMAC_B": 0x8000,
        "CACC": 0x9000,
        "SDP_RDMA": 0xA000,
        "SDP": 0xB000,
        "PDP_RDMA": 0xC000,
        "PDP": 0xD000,
        "CDP_RDMA": 0xE000,
        "CDP": 0xF000,
        "RBK": 0x10000,
    }
    assert v1.bases == expected
    # v1 addresses are 32-byte aligned: the stride field starts at bit 5.
    assert v1.register("CDMA", "D_LINE_STRIDE").field("LINE_STRIDE").lsb == 5


def test_simulator_builds_nv_full_on_the_v1_map_and_refuses_jetson_targets():
    from dlakit.sim import Nvdla

    assert Nvdla("nv_full").atom == 32
    with pytest.raises(DlakitError, match="not an open NVDLA configuration"):
        Nvdla("orin")
