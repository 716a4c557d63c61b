"""The model against NVIDIA's published Orin DLA measurements (the calibration set).

Oracle: the DLA-SW README's images/s for 6 networks x 2 power modes and the cuDLA sample's
layer-wise times (perf_calibration.md), copied with their source into perf/data/calibration.toml.
The issue's bar: MAPE <= 15% over the 12 points, every sample layer within 25%.
"""

from __future__ import annotations

import json

import pytest

from dlakit.cli import main
from dlakit.perf.calibration import calibration_set, layerwise_points, mape, throughput_points
from dlakit.perf.hw import load_params, model_version

PUBLISHED = {  # perf_calibration.md, "Calibration measurements" (images/s, both DLAs)
    ("RetinaNet ResNeXt-50", "MAXN"): 78,
    ("RetinaNet ResNeXt-50", "30W"): 71,
    ("ResNet-34 backbone", "MAXN"): 285,
    ("ResNet-34 backbone", "30W"): 255,
    ("RetinaNet ResNet-34", "MAXN"): 108,
    ("RetinaNet ResNet-34", "30W"): 96,
    ("SSD-ResNet-34", "MAXN"): 83,
    ("SSD-ResNet-34", "30W"): 74,
    ("ResNet-50", "MAXN"): 2037,
    ("ResNet-50", "30W"): 1928,
    ("SSD-MobileNetV1", "MAXN"): 2664,
    ("SSD-MobileNetV1", "30W"): 2472,
}


def test_calibration_data_matches_the_published_table():
    data = calibration_set()
    got = {(e["network"], m): v for e in data["throughput"] for m, v in e["measured"].items()}
    assert got == PUBLISHED


def test_resnet34_layer_times_within_25_percent_each():
    points = layerwise_points(load_params())
    assert len(points) == 9
    for p in points:
        assert abs(p.error) <= 0.25, (p.label, p.predicted_ms, p.measured_ms)


def test_published_throughput_mape_at_most_15_percent():
    points = [p for p in throughput_points(load_params()) if p.measured is not None]
    assert {(p.network, p.power_mode) for p in points} == set(PUBLISHED)
    assert mape([p.error for p in points]) <= 0.15


def test_validate_json_lists_measured_and_unmeasured_modes(tmp_path):
    out = tmp_path / "validate.json"
    assert main(["profile", "--validate", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model_version"] == model_version()
    keys = {
        "network",
        "input",
        "batch",
        "power_mode",
        "cores",
        "predicted_images_per_second",
        "measured_images_per_second",
    }
    assert all(set(p) == keys for p in doc["points"])
    modes = {p["power_mode"] for p in doc["points"]}
    assert modes == {"MAXN", "30W", "50W", "15W"}
    unmeasured = [p for p in doc["points"] if p["power_mode"] in ("50W", "15W")]
    assert len(unmeasured) == 12 and all(
        p["measured_images_per_second"] is None for p in unmeasured
    )
    by = {(p["network"], p["power_mode"]): p for p in doc["points"]}
    for (network, mode), measured in PUBLISHED.items():
        assert by[(network, mode)]["measured_images_per_second"] == measured
        # Lower clocks cannot be faster: 15W (614 MHz, 136 GB/s) is the slowest mode.
        assert (
            by[(network, "15W")]["predicted_images_per_second"]
            < (by[(network, "30W")]["predicted_images_per_second"])
        )


@pytest.mark.parametrize("name", ["mac_efficiency", "dram_efficiency"])
def test_fitted_efficiencies_are_shares_of_a_peak(name):
    assert 0 < getattr(load_params(), name) <= 1
