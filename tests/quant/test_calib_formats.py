"""TensorRT calibration cache, NVDLA calibration table and scales file: encoding and round trips."""

import json
import struct

import numpy as np
import pytest

from dlakit.errors import DlakitError
from dlakit.quant.formats import (
    float_to_hex,
    hex_to_float,
    read_nvdla_table,
    read_trt_cache,
    write_nvdla_table,
    write_trt_cache,
)
from dlakit.quant.scales import ActivationRange, Scales, WeightRange

# Lines of a cache TensorRT 5.1 wrote for ResNet-50 and the scales NVIDIA's converter read from it
# (nvdla/sw umd/utils/calibdata/resnet50.txt and resnet50.json).
NVDLA_SW_EXAMPLE = {
    "data": ("3f9839e4", 1.1892666816711426),
    "(Unnamed Layer* 0) [Convolution]_output": ("40d0f64f", 6.530066967010498),
    "(Unnamed Layer* 1) [Scale]_output": ("3dcff4cf", 0.10154115408658981),
}


def _scales(**activations: float) -> Scales:
    return Scales(
        model_name="toy",
        graph_sha256="0" * 64,
        method="entropy",
        percentile=None,
        num_inputs=3,
        data="3 samples",
        activations={
            n: ActivationRange(amax=a, min=-a, max=a * 1.5) for n, a in activations.items()
        },
        weights={"w": WeightRange(axis=0, amax=[0.5, 0.0, 2.0])},
    )


def test_known_hex_values():
    assert float_to_hex(1.0) == "3f800000"
    assert float_to_hex(-2.0) == "c0000000"
    assert float_to_hex(1 / 127) == struct.pack(">f", 1 / 127).hex() == "3c010204"
    for hex_text, value in NVDLA_SW_EXAMPLE.values():
        assert hex_to_float(hex_text) == value
        assert float_to_hex(value) == hex_text


def test_reads_a_tensorrt_written_cache(tmp_path):
    path = tmp_path / "resnet50.txt"
    lines = [f"{name}: {hx}" for name, (hx, _) in NVDLA_SW_EXAMPLE.items()]
    path.write_text("TRT-5101-EntropyCalibration2\n" + "\n".join(lines) + "\n")
    cache = read_trt_cache(path)
    assert (cache.version, cache.algorithm) == (5101, "EntropyCalibration2")
    assert cache.scales == {name: value for name, (_, value) in NVDLA_SW_EXAMPLE.items()}


def test_trt_cache_format_and_round_trip(tmp_path):
    scales = _scales(**{"input": 2.5, "conv:1 out": 127.0, "tiny": 1e-6})
    path = write_trt_cache(scales, tmp_path / "toy.trtcache")
    text = path.read_text().splitlines()
    assert text[0] == "TRT-8600-EntropyCalibration2"
    assert text[2] == "conv:1 out: 3f800000"  # 127/127 = 1.0
    for line in text[1:]:
        assert len(line.rpartition(": ")[2]) == 8 and line == line.rstrip()
    back = read_trt_cache(path)
    assert list(back.scales) == list(scales.activations)
    for name, act in scales.activations.items():
        assert back.scales[name] == float(np.float32(act.scale))


def test_trt_cache_header_version_is_configurable(tmp_path):
    path = write_trt_cache(_scales(x=1.0), tmp_path / "c", trt_version=10700)
    assert path.read_text().startswith("TRT-10700-EntropyCalibration2\n")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("conv1: 3f800000\n", ":1: not a TensorRT calibration cache"),
        ("TRT-8600-EntropyCalibration2\nconv1 3f800000\n", ":2: expected"),
        ("TRT-8600-EntropyCalibration2\nconv1: 3f80000g\n", ":2: expected"),
        ("TRT-8600-EntropyCalibration2\nconv1: 7fc00000\n", "conv1"),  # NaN scale
        ("", "not a TensorRT calibration cache"),
    ],
)
def test_malformed_trt_cache_is_an_error_naming_the_line(tmp_path, text, match):
    path = tmp_path / "bad.trtcache"
    path.write_text(text)
    with pytest.raises(DlakitError, match=match):
        read_trt_cache(path)


def test_nvdla_table_round_trip(tmp_path):
    scales = _scales(**{"data": 1.0, "conv1": 6.5, "(Unnamed Layer* 1) [Scale]_output": 0.3})
    path = write_nvdla_table(scales, tmp_path / "toy.nvdla.json")
    doc = json.loads(path.read_text())
    assert doc["conv1"] == {"scale": 6.5 / 127, "min": -6.5, "max": 6.5, "offset": 0}
    back = read_nvdla_table(path)
    assert back == {n: a.scale for n, a in scales.activations.items()}


def test_reads_nvdla_sw_style_table_with_zero_min_max(tmp_path):
    table = {
        n: {"scale": v, "min": 0, "max": 0, "offset": 0} for n, (_, v) in NVDLA_SW_EXAMPLE.items()
    }
    table["minmax_only"] = {"min": -12.7, "max": 6.0, "offset": 0}
    path = tmp_path / "resnet50.json"
    path.write_text(json.dumps(table))
    back = read_nvdla_table(path)
    assert back["data"] == 1.1892666816711426
    assert back["minmax_only"] == pytest.approx(0.1)


@pytest.mark.parametrize("text", ["[1, 2]", '{"conv1": 3}', '{"conv1": {"offset": 0}}', "not json"])
def test_malformed_nvdla_table_is_an_error(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DlakitError, match=r"bad\.json"):
        read_nvdla_table(path)


def test_scales_file_round_trip(tmp_path):
    scales = _scales(a=1.0, b=3.0)
    path = scales.save(tmp_path / "toy.scales.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "dlakit-scales" and doc["version"] == 1
    assert doc["activations"]["b"] == {"amax": 3.0, "scale": 3.0 / 127, "min": -3.0, "max": 4.5}
    assert doc["weights"]["w"] == {"axis": 0, "amax": [0.5, 0.0, 2.0]}
    back = Scales.load(path)
    assert back == scales
    assert back.activation_scale("b") == 3.0 / 127
    np.testing.assert_array_equal(back.weights["w"].scales, np.array([0.5, 0.0, 2.0]) / 127)


def test_unknown_activation_is_an_error():
    with pytest.raises(DlakitError, match="'nope'"):
        _scales(a=1.0).activation_scale("nope")


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("[]", "not a dlakit scales file"),
        ('{"format": "dlakit-scales", "version": 9}', "version 9"),
        ('{"format": "dlakit-scales", "version": 1}', "malformed"),
        ("{", "not JSON"),
    ],
)
def test_malformed_scales_file_is_an_error(tmp_path, doc, match):
    path = tmp_path / "s.json"
    path.write_text(doc)
    with pytest.raises(DlakitError, match=match):
        Scales.load(path)


def test_non_finite_amax_in_scales_file_is_an_error(tmp_path):
    doc = _scales(a=1.0).to_json()
    doc["activations"]["a"]["amax"] = float("nan")
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DlakitError, match="'a'"):
        Scales.load(path)
