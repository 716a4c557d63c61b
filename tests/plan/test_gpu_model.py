"""The GPU model: TensorRT-style kernels from the ONNX graph, and its fit to the calibration set."""

import numpy as np
import pytest

from dlakit.perf.gpu_fit import calibration, load_gpu_params, points, table_kernels
from dlakit.perf.gpu_model import gpu_data, gpu_kernels, jetson_gpu, network_time
from dlakit.targets import load_target


def test_fit_reproduces_the_yolov5s_points_within_its_recorded_error():
    pts = points(load_gpu_params())
    fit = gpu_data()["fit"]
    yolo = [abs(p.error) for p in pts if p.network.startswith("YOLOv5s")]
    assert len(yolo) == 6
    assert max(yolo) == pytest.approx(fit["yolov5s_max_abs_error"], abs=1e-3)
    assert max(yolo) < 0.05
    mobilenet = pts[-1]
    assert mobilenet.target == "xavier-nx"
    assert 2048 / (mobilenet.predicted_ms / 1e3) == pytest.approx(430, rel=0.01)


def test_time_per_image_falls_with_the_batch():
    yolo = calibration()["yolov5s"]
    gpu = jetson_gpu(load_target("orin"), "MAXN", "int8", yolo["gpu_mhz"])
    batches = np.array([1, 2, 4, 8, 16, 64])
    per_image = network_time(table_kernels(yolo), gpu, load_gpu_params(), batches) / batches
    assert np.all(np.diff(per_image) < 0)


def test_pointwise_ops_fuse_into_the_conv_before_them(load_zoo):
    kernels = gpu_kernels(load_zoo("resnet18"))
    convs = [k for k in kernels if k.kind == "conv"]
    assert len(convs) == 20  # 17 3x3/7x7 convs + 3 projections, each one kernel
    residual = [k for k in convs if "Add" in k.ops]
    assert len(residual) == 8 and all(k.ops[-1] == "Relu" for k in residual)
    assert all(k.ew_elems > 0 for k in residual)  # the skip tensor is read, not recomputed


@pytest.mark.parametrize("name", ["yolov5s"])
def test_zoo_yolov5s_gives_the_calibration_table_time(name, load_zoo):
    """Once the zoo has YOLOv5s (672), its own kernels must cost what the fit's table costs."""
    model = load_zoo(name)
    yolo = calibration()["yolov5s"]
    if model.input_shapes[model.input_names[0]][-1] != 672:
        pytest.skip("the zoo's yolov5s is not at 672x672")
    gpu = jetson_gpu(load_target("orin"), "MAXN", "int8", yolo["gpu_mhz"])
    b = np.array(yolo["batch"])
    zoo_t = network_time(gpu_kernels(model), gpu, load_gpu_params(), b)
    table_t = network_time(table_kernels(yolo), gpu, load_gpu_params(), b)
    np.testing.assert_allclose(zoo_t, table_t, rtol=0.05)
