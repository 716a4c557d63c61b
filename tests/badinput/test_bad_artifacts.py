"""Damaged .dla artifacts: inspect and run refuse them in one line naming the field
(dlakit.nvdla.validate); the same inputs compile to the same bytes."""

import hashlib

import pytest
from badinput_cases import manifest_of, refused, rezip

from dlakit.cli import main


def _op(doc):
    return next(op for seg in doc["segments"] for op in seg.get("ops", []))


def _surface(doc):
    return next(t["surface"] for t in doc["tensors"].values() if t.get("surface"))


def _int8(doc):
    return next(t for t in doc["tensors"].values() if t["precision"] == "int8")


def _register(doc, value):
    regs = _op(doc)["registers"]
    regs[0] = regs[0].split("=")[0] + "=" + value


def _big_cube(doc):
    regs = _op(doc)["registers"]
    i = next(i for i, w in enumerate(regs) if w.startswith("CDMA.D_DATAIN_SIZE_0="))
    regs[i] = "CDMA.D_DATAIN_SIZE_0=0x1fff1fff"  # an 8192x8192 input, within the fields


EDITS = {
    "a register cube larger than the memory": (_big_cube, "CDMA input of 8192x8192"),
    "no segments": (lambda d: d.update(segments=[]), "segments: empty"),
    "an address past the memory": (
        lambda d: _surface(d).update(address=3 * 2**30), "outside the memory allocation"),
    "a negative shape": (
        lambda d: next(iter(d["tensors"].values())).update(shape=[1, -4, 8]), "shape"),
    "a 64-bit register value": (lambda d: _register(d, "0xffffffffffffffff"), "registers[0]"),
    "bits outside the register's fields": (
        lambda d: _op(d)["registers"].__setitem__(-1, "CDMA.D_OP_ENABLE=0xfffffffe"),
        "outside its fields"),
    "a malformed register string": (
        lambda d: _op(d)["registers"].__setitem__(0, "garbage"), "UNIT.REGISTER"),
    "an unknown register": (
        lambda d: _op(d)["registers"].__setitem__(0, "CDMA.NOPE=0x1"), "no register CDMA.NOPE"),
    "an unknown target": (lambda d: d.update(target="tpu_v9"), "target"),
    "another hw configuration": (lambda d: d["hw"].update(memory_atomic=0), "hw.memory_atomic"),
    "a 2^40-byte memory allocation": (
        lambda d: d["memory"]["activations"].update(size=2**40), "would need 10995116"),
    "a missing key": (lambda d: d.pop("tensors"), "tensors"),
    "a mistyped key": (lambda d: d["memory"]["constants"].update(base="0x10"), "not an integer"),
    "scale 0": (lambda d: _int8(d).update(scale=0), "scale"),
    "a wrong constants checksum": (
        lambda d: d["memory"]["constants"].update(sha256="0" * 64), "checksum"),
    "inputs that are no tensor": (lambda d: d.update(inputs=["ghost"]), "'ghost'"),
}  # fmt: skip


@pytest.mark.parametrize("verb", ["inspect", "run"])
@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_damaged_manifest_is_refused_naming_the_field(work, capsys, verb, name):
    edit, needle = EDITS[name]
    art = (work / "art.dla").read_bytes()
    doc = manifest_of(art)
    edit(doc)
    (work / "bad.dla").write_bytes(rezip(art, doc))
    argv = ["inspect", "bad.dla"] if verb == "inspect" else ["run", "bad.dla", "-d", "data.npz"]
    refused([*argv, "-q"], capsys, needle)


def _crc_damaged(art: bytes) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(art)) as z:
        info = z.getinfo("constants.bin")
    data = bytearray(art)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("verb", ["inspect", "run"])
@pytest.mark.parametrize(
    "damage",
    ["crc", "missing constants", "missing fallback member", "garbage fallback", "truncated"],
)
def test_a_damaged_zip_is_refused(work, capsys, verb, damage):
    art = (work / "art.dla").read_bytes()
    fallback = next(n for n in manifest_of(art)["segments"] if n["kind"] == "fallback")["onnx"]
    data = {
        "crc": lambda: _crc_damaged(art),
        "missing constants": lambda: rezip(art, drop="constants.bin"),
        "missing fallback member": lambda: rezip(art, drop=fallback),
        "garbage fallback": lambda: _replace(art, fallback, b"garbage"),
        "truncated": lambda: art[: len(art) // 2],
    }[damage]()
    (work / "bad.dla").write_bytes(data)
    argv = ["inspect", "bad.dla"] if verb == "inspect" else ["run", "bad.dla", "-d", "data.npz"]
    refused([*argv, "-q"], capsys, "bad.dla")


def _replace(art: bytes, member: str, data: bytes) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(art)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename == member else zin.read(info))
    return out.getvalue()


def test_two_compiles_of_one_input_give_the_same_bytes(work, capsys):
    digests = []
    for name in ("a.dla", "b.dla"):
        argv = ["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json", "-o", name, "-q"]
        assert main(argv) == 0
        digests.append(hashlib.sha256((work / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert "compile_seconds" not in manifest_of((work / "a.dla").read_bytes())["stats"]


def test_every_other_output_is_reproducible_too(work, capsys):
    """Scales, caches, tables, fixed models, run outputs, emitted segments: byte-identical on a
    second run (JSON reports that carry measured times are left out)."""
    runs = []
    for tag in ("1", "2"):
        assert main(["calibrate", "model.onnx", "-d", "data.npz", "-m", "max", "-q",
                     "-o", f"s{tag}.json"]) == 0  # fmt: skip
        assert main(["run", "art.dla", "-d", "data.npz", "-o", f"y{tag}.npz", "-q"]) == 0
        assert main(["fix", "model.onnx", "-o", f"f{tag}.onnx", "--random", "-q"]) == 0
        assert (
            main(["check", "model.onnx", "--emit", f"e{tag}", "-q", "--json", f"c{tag}.json"]) == 0
        )
        emitted = sorted(f"e{tag}/{p.name}" for p in (work / f"e{tag}").iterdir())
        files = [f"s{tag}.json", f"s{tag}.trtcache", f"s{tag}.nvdla.json", f"f{tag}.onnx",
                 f"c{tag}.json", f"y{tag}.npz", *emitted]  # fmt: skip
        runs.append([hashlib.sha256((work / f).read_bytes()).hexdigest() for f in files])
    assert runs[0] == runs[1]
