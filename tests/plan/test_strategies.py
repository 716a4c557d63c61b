"""Every strategy on real zoo structures: what applies, and auto never loses to GPU only."""

import itertools

import pytest

from dlakit.errors import DlakitError
from dlakit.plan import STRATEGIES, plan_models


@pytest.mark.parametrize(
    ("name", "target", "batch", "objective"),
    [("resnet18", "orin", 1, "throughput"), ("resnet18", "orin", 8, "latency"),
     ("resnet18", "orin", 8, "energy"), ("mobilenetv1", "xavier-nx", 16, "throughput"),
     ("ssd-mobilenetv1", "orin", 2, "throughput"), ("resnet50", "orin", 4, "throughput")],
)  # fmt: skip
def test_auto_is_never_worse_than_gpu_only(name, target, batch, objective, load_zoo):
    res = plan_models([(name, load_zoo(name))], target, batch=batch, objective=objective)
    gpu = res.gpu_only
    assert res.chosen.score(objective) >= gpu.score(objective)
    assert {c.strategy for c in res.candidates} == set(STRATEGIES)  # every one applies here
    for c in res.candidates:
        assert c.images_per_second > 0 and c.latency_ms > 0
        assert min(d["utilization"] for d in c.devices.values()) >= 0
        assert max(d["utilization"] for d in c.devices.values()) <= 1.0


def test_gpu_only_matches_the_gpu_model_alone(load_zoo):
    """No DLA in the plan, no contention: the simulation gives the GPU model's time."""
    res = plan_models([("resnet18", load_zoo("resnet18"))], "orin", batch=8, strategy="gpu")
    from dlakit.plan import costs_for
    from dlakit.targets import load_target

    costs = costs_for([("resnet18", load_zoo("resnet18"))], load_target("orin"), "MAXN", "int8", 2)
    alone = costs[0].gpu_time(0, costs[0].n_groups, 8)
    assert res.chosen.latency_ms == pytest.approx(alone * 1e3, rel=1e-6)
    assert res.chosen.images_per_second == pytest.approx(8 / alone, rel=1e-6)


def test_dla_strategy_throughput_follows_the_dla_model(load_zoo):
    """Both cores on a model wholly on the DLA: twice one core's rate, less DRAM sharing."""
    from dlakit.perf import images_per_second, profile_model

    model = load_zoo("resnet18")
    res = plan_models([("resnet18", model)], "orin", batch=8, strategy="dla")
    prof = profile_model(model, "orin", batch=1)
    two_cores = images_per_second(prof, model, 2)
    assert res.chosen.images_per_second == pytest.approx(two_cores, rel=0.15)


def test_layer_map_plans_two_models_at_once(load_zoo):
    models = [("resnet18", load_zoo("resnet18")), ("mobilenetv1", load_zoo("mobilenetv1"))]
    res = plan_models(models, "orin", batch=2, strategy="layer-map")
    assert res.chosen.strategy == "layer-map"
    assignment = res.chosen.plan.detail["assignment"]
    assert len(assignment) == 2
    for a in assignment:
        switches = sum(1 for x, y in itertools.pairwise(a) if x != y)
        assert switches <= 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "data-parallel", "dla_cores": 0}, "cannot apply: no DLA core"),
        ({"strategy": "pipeline", "dla_cores": 0}, "cannot apply"),
        ({"strategy": "warp"}, "unknown"),
        ({"dla_cores": 3}, "has 2 DLA core"),
        ({"batch": 0}, "at least 1"),
        ({"power_mode": "99W"}, "no power mode '99W'"),
    ],
)
def test_requests_that_cannot_be_planned_say_why(kwargs, message, load_zoo):
    with pytest.raises(DlakitError, match=message):
        plan_models([("resnet18", load_zoo("resnet18"))], "orin", **{"batch": 2, **kwargs})


def test_data_parallel_needs_one_model(load_zoo):
    models = [("resnet18", load_zoo("resnet18"))] * 2
    with pytest.raises(DlakitError, match="give one model"):
        plan_models(models, "orin", batch=2, strategy="data-parallel")


def test_no_gpu_target_is_refused(load_zoo):
    with pytest.raises(DlakitError, match="nv_small' has no modeled GPU"):
        plan_models([("resnet18", load_zoo("resnet18"))], "nv_small")


def test_pre_and_post_stages_take_their_time(load_zoo):
    from dlakit.plan import Stage

    model = [("resnet18", load_zoo("resnet18"))]
    plain = plan_models(model, "orin", batch=4, strategy="gpu")
    with_cpu = plan_models(model, "orin", batch=4, strategy="gpu", pre=Stage("cpu", 2e-3))
    # 8 ms of CPU pre-processing per round: on its own device, it bounds the period.
    assert with_cpu.chosen.latency_ms == pytest.approx(plain.chosen.latency_ms + 8.0, rel=1e-3)
    assert with_cpu.chosen.images_per_second == pytest.approx(4 / 8e-3, rel=1e-3)
    on_gpu = plan_models(model, "orin", batch=4, strategy="gpu", post=Stage("gpu"))
    assert on_gpu.chosen.latency_ms > plain.chosen.latency_ms
