"""Functional truth of --emit: the pieces of every strategy, run with onnxruntime on real
images through the emitted runner, give the unsplit model's outputs (batch split and gather)."""

import numpy as np
import onnxruntime as ort
import pytest
from plan_cases import ISSUE_ZOO

from dlakit.data.inputs import load_inputs
from dlakit.plan import STRATEGIES, costs_for, emit_plan, plan_models, run_emitted
from dlakit.plan.emit import rebatch
from dlakit.targets import load_target

BATCH = 5  # odd: uneven splits over two DLA cores and the GPU


def _images(model, batch):
    shape = model.input_shapes[model.input_names[0]]
    size = shape[-1]
    prep = f"resize={size}x{size},scale=1/255,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"
    return load_inputs("foolbox-imagenet", prep, (batch, *shape[1:]), limit=batch)


def _reference(model, x, tmp_path):
    full = rebatch(model, x.shape[0])
    session = ort.InferenceSession(
        full.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {model.input_names[0]: x})


def _check(name, model, target, tmp_path):
    x = _images(model, BATCH)
    ref = _reference(model, x, tmp_path)
    tgt = load_target(target)
    costs = costs_for([(name, model)], tgt, tgt.power_mode().name, "int8", tgt.dla_cores)
    res = plan_models([(name, model)], tgt, batch=BATCH, costs=costs)
    assert {c.strategy for c in res.candidates} == set(STRATEGIES)
    seen = {}
    for candidate in res.candidates:
        strategy = candidate.strategy
        out = tmp_path / strategy
        plan = emit_plan(res, costs, out, candidate)
        got = run_emitted(plan, [{model.input_names[0]: x}])[0]
        for out_name, expected in zip(model.output_names, ref, strict=True):
            scale = float(np.max(np.abs(expected))) or 1.0
            err = float(np.max(np.abs(got[out_name] - expected))) / scale
            assert err <= 1e-5, f"{strategy}: {out_name} differs by {err:.2e} (relative)"
        seen[strategy] = len(list(out.glob("*.onnx")))
        assert (out / "trtexec.sh").read_text().count("trtexec --onnx=") >= 1
    return seen


@pytest.mark.parametrize(
    ("name", "target"), [("mobilenetv1", "xavier-nx"), ("mobilenetv2", "orin")]
)
def test_every_strategy_reproduces_the_model(name, target, load_zoo, tmp_path):
    """MobileNetV1 (seed 004's model, random weights) and MobileNetV2 (real weights, residual
    adds: cuts that hand over two tensors)."""
    pieces = _check(name, load_zoo(name), target, tmp_path)
    assert pieces["gpu"] == 1
    assert pieces["data-parallel"] >= 2  # front pieces at their sub-batches, and the tail


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "ssd-mobilenetv1", *ISSUE_ZOO[1:]])
def test_more_zoo_models_reproduce(name, load_zoo, tmp_path):
    """ResNet-18 and SSD-MobileNetV1 (12 outputs), and the issue's zoo list once it exists."""
    _check(name, load_zoo(name), "orin", tmp_path)
