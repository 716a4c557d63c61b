"""The loadable reader: the schema's lists, typed; every corrupt, truncated or adversarial file
ends in one DlakitError naming the table, field or descriptor (never another exception)."""

import dataclasses
import random
import struct
from pathlib import Path

import pytest

from dlakit.errors import DlakitError
from dlakit.loadable.descriptors import decode, layout
from dlakit.loadable.execute import run_loadable
from dlakit.loadable.network import dla_networks
from dlakit.loadable.reader import Interface, MemoryFlags, read_loadable
from dlakit.loadable.serialize import to_bytes

KMD = Path("nvdla-loadables") / "regression" / "flatbufs" / "kmd"


@pytest.fixture
def kmd(shared) -> Path:
    return shared / KMD


def _write(tmp_path: Path, ld, name: str = "x_fbuf") -> Path:
    path = tmp_path / name
    path.write_bytes(to_bytes(ld))
    return path


def test_conv_small_lists(kmd):
    ld = read_loadable(kmd / "CONV" / "CONV_D_L0_0_small_fbuf")
    assert ld.version == (0, 7, 0)
    assert [t.interface for t in ld.tasks] == [Interface.DLA1]
    assert len(ld.memory) == 7 and len(ld.blobs) == 6 and len(ld.addresses) == 7
    sizes = {b.name: b.size for b in ld.blobs}
    assert sizes["m0_NetworkDesc_i0"] == 40 and sizes["m3_DEPGraph_i3"] == 72
    assert sizes["m1_OpList_i1"] == 2 * layout("dla_operation_container").size
    assert sizes["m2_SurfList_i2"] == 2 * layout("dla_surface_container").size
    (out,) = ld.bound(MemoryFlags.OUTPUT)
    tensor = ld.tensor_of(out)
    assert (tensor.name, tensor.c, tensor.h, tensor.w, tensor.data_type) == (
        "m6_SDPDst_i6",
        32,
        8,
        8,
        4,
    )
    (net,) = dla_networks(ld)
    assert [op.op_type for op in net.operations] == ["CONV", "SDP"]
    assert net.version == (0, 10, 0)


def test_descriptor_sizes_match_the_c_structs():
    # nvdla.md §9.5 (gcc, packed, aligned(4)); the 0.10 data cube has no offset field.
    sizes = {
        "dla_network_desc": 40,
        "dla_common_op_desc": 36,
        "dla_conv_op_desc": 92,
        "dla_sdp_op_desc": 116,
        "dla_pdp_op_desc": 52,
        "dla_cdp_op_desc": 24,
        "dla_rubik_op_desc": 4,
        "dla_bdma_op_desc": 4,
        "dla_lut_param": 700,
        "dla_data_cube": 32,
        "dla_operation_container": 116,
        "dla_surface_container": 644,
    }
    assert {n: layout(n).size for n in sizes} == sizes
    assert layout("dla_data_cube", (0, 10, 0)).size == 28
    raw = struct.pack("<HhIHHHHIII", 0, 5, 64, 8, 8, 32, 0, 256, 2048, 0)
    cube = decode("dla_data_cube", raw, 0, (0, 10, 0))
    assert (cube.address, cube.size, cube.width, cube.line_stride) == (5, 64, 8, 256)


def test_truncated_files_end_in_one_error(kmd, tmp_path):
    data = (kmd / "PDP" / "PDP_L0_0_fbuf").read_bytes()
    for cut in (0, 3, 7, 64, len(data) // 2, len(data) - 700, len(data) - 1):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        with pytest.raises(DlakitError, match=str(path)):
            read_loadable(path)


def test_random_corruption_never_escapes_as_another_exception(kmd, tmp_path):
    data = bytearray((kmd / "SDP" / "SDP_X1_L0_0_small_fbuf").read_bytes())
    rng = random.Random(12)
    outcomes = {"error": 0, "ran": 0}
    for i in range(60):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        path = tmp_path / f"m{i}"
        path.write_bytes(bytes(bad))
        try:
            run_loadable(read_loadable(path), "nv_small")
            outcomes["ran"] += 1
        except DlakitError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 0


def test_not_a_loadable(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"\x08\x07\x12\x04test" * 10)
    with pytest.raises(DlakitError):
        read_loadable(path)
    with pytest.raises(DlakitError, match="not found"):
        read_loadable(tmp_path / "missing")


def _bad(tmp_path, ld, match):
    with pytest.raises(DlakitError, match=match):
        run_loadable(read_loadable(_write(tmp_path, ld)), "nv_full")


def test_cross_references_are_checked(kmd, tmp_path):
    ld = read_loadable(kmd / "PDP" / "PDP_L0_0_fbuf")
    a0 = ld.addresses[4]
    r = dataclasses.replace
    cases = [
        (
            r(ld, addresses=(*ld.addresses[:4], r(a0, mem_id=40), *ld.addresses[5:])),
            r"address_list\[4\] \(id 4\): mem_id 40 is not in the memory list",
        ),
        (
            r(ld, addresses=(*ld.addresses[:4], r(a0, offset=16, size=a0.size), *ld.addresses[5:])),
            r"address_list\[4\].*lies outside memory 4",
        ),
        (
            r(ld, tasks=(r(ld.tasks[0], address_list=(0, 1, 2, 3, 4, 9)),)),
            r"task_list\[0\].address_list\[5\]: address 9 is not in the address list",
        ),
        (
            r(ld, submits=(r(ld.submits[0], task_ids=(3,)),)),
            r"submit_list\[0\].task_id\[0\]: no task 3",
        ),
        (
            r(ld, memory=(r(ld.memory[0], contents=("nope",)), *ld.memory[1:])),
            r"memory_list\[0\].*content blob 'nope' is not in the blob list",
        ),
        (r(ld, memory=(r(ld.memory[0], size=8), *ld.memory[1:])), r"does not fit its 8 bytes"),
        (r(ld, submits=()), "at least one submit entry"),
        (r(ld, tasks=(r(ld.tasks[0], interface=7),)), r"task_list\[0\].interface: 7"),
    ]
    for bad, match in cases:
        _bad(tmp_path, bad, match)


def _patch_blob(ld, name: str, offset: int, fmt: str, value):
    blobs = []
    for b in ld.blobs:
        if b.name == name:
            data = bytearray(b.data)
            struct.pack_into(fmt, data, offset, value)
            b = dataclasses.replace(b, data=bytes(data))
        blobs.append(b)
    return dataclasses.replace(ld, blobs=tuple(blobs))


def test_descriptors_pointing_outside_their_memory_are_refused(kmd, tmp_path):
    ld = read_loadable(kmd / "PDP" / "PDP_L0_0_fbuf")
    surf, ops, deps, net = "m2_SurfList_i2", "m1_OpList_i1", "m3_DEPGraph_i3", "m0_NetworkDesc_i0"
    dst = layout("dla_data_cube", (0, 10, 0)).size  # dst_data follows src_data
    cases = [
        # dst_data.size past its 2048-byte memory
        (
            _patch_blob(ld, surf, dst + 4, "<I", 4096),
            r"PDP operation 0 dst_data: 4096 bytes .* past",
        ),
        # dst_data.address: an index the task does not have
        (_patch_blob(ld, surf, dst + 2, "<h", 99), r"address index 99 is not in the task's"),
        # src_data.address -> the network descriptor's 40 bytes
        (_patch_blob(ld, surf, 2, "<h", 0), r"src_data: 2048 bytes at address index 0 .* memory 0"),
        # network: more operations than the lists hold
        (
            _patch_blob(ld, net, 30, "<H", 5),
            r"5 entries of the operation list \(116 bytes each\) do not fit",
        ),
        # op_head beyond num_operations
        (_patch_blob(ld, net, 16 + 2 * 3, "<h", 3), r"op_head\[3\]=3: only 1 operations"),
        # dependency graph entry of the wrong unit
        (_patch_blob(ld, deps, 3, "<B", 1), r"op_type 1, expected 3"),
        # a dependency no event will satisfy
        (_patch_blob(ld, deps, 4, "<B", 1), r"stopped after 0 of 1 operations"),
        # stride the firmware refuses
        (_patch_blob(ld, ops, 16, "<B", 9), r"stride 9x1 is outside 1..8"),
    ]
    for bad, match in cases:
        _bad(tmp_path, bad, match)
