"""Price dlakit's placement recommendations with the performance model.

A recommendation (:mod:`dlakit.partition.policy`) moves a predicted DLA segment to the fallback
device. What that saves per inference comes from the performance model (:mod:`dlakit.perf`: the
hardware layers of the predicted placement, each costed on the DLA or on the GPU)::

    saving = DLA time of the segment's layers
           + GPU time of the INT8/float conversions at its boundary (they vanish with the move)
           + handoffs x handoff_ms (policy.toml: the measured 0.05-0.07 ms GPU<->DLA switch,
             which the performance model does not hold)
           - GPU time of the segment's layers

The difference is the performance model's latency of the predicted placement minus that of the
placement with the move, plus the switches. It lives here, above perf, because partitioning
(below perf) only proposes the moves. Where the fallback device is not modeled (the host CPU
beside an open NVDLA) or the performance model places the segment elsewhere, ``saving_ms``
stays None and ``saving_note`` says why.
"""

from __future__ import annotations

from dataclasses import replace

from dlakit.partition import CheckResult, Recommendation, summarize
from dlakit.partition.policy import load_policy
from dlakit.perf import HwLayer, Profile, build_layers, profile_model


def price_recommendations(result: CheckResult) -> None:
    """Fill ``saving_ms``/``saving`` of every recommendation of ``result``, and its summary."""
    if not result.recommendations:
        return
    target = result.target
    if target.gpu is None:
        for rec in result.recommendations:
            rec.saving_note = (
                f"not priced: the fallback device ({target.fallback_device}) is not modeled"
            )
        result.summary = summarize(result)
        return
    layers = build_layers(result.model, target)
    base = profile_model(result.model, target, layers=layers)
    for rec in result.recommendations:
        _price(result, rec, layers, base)
    result.summary = summarize(result)


def _boundary(result: CheckResult, nodes: set[str]) -> set[str]:
    """Tensors that enter or leave the segment made of ``nodes``."""
    model = result.model
    inside = [n for n in model.nodes if n.name in nodes]
    made = {o for n in inside for o in n.output if o}
    read = {i for n in inside for i in n.input if i and i not in model.initializers}
    outside_reads = {i for n in model.nodes if n.name not in nodes for i in n.input if i in made}
    return (read - made) | outside_reads | (made & set(model.output_names))


def _price(result: CheckResult, rec: Recommendation, layers: list[HwLayer], base: Profile) -> None:
    names = {result.model.nodes[i].name for i in rec.nodes}
    moved = [layer for layer in layers if layer.nodes and set(layer.nodes) <= names]
    if not moved or any(layer.engine != "dla" for layer in moved):
        rec.saving_note = "not priced: the performance model does not place this segment on the DLA"
        return
    boundary = _boundary(result, names)
    moved_outputs = {layer.output for layer in moved}
    readers: dict[str, list[HwLayer]] = {}
    for layer in layers:
        for name in layer.inputs:
            readers.setdefault(name, []).append(layer)
    conversions = [
        layer
        for layer in layers
        if not layer.nodes
        and layer.engine != "dla"
        and layer.inputs
        and layer.inputs[0] in boundary
        and (
            layer.inputs[0] in moved_outputs
            or all(r in moved for r in readers.get(layer.output, []))
        )
    ]
    gone = {id(layer) for layer in conversions}
    flip = {id(layer) for layer in moved}
    placed = [
        replace(layer, engine="fallback") if id(layer) in flip else layer
        for layer in layers
        if id(layer) not in gone
    ]
    after = profile_model(result.model, result.target, layers=placed)
    per_inference = 1e3 * base.batch
    dla_ms = per_inference * sum(c.time_s for c in base.costs if id(c.layer) in flip)
    conversion_ms = per_inference * sum(c.time_s for c in base.costs if id(c.layer) in gone)
    fallback_ms = per_inference * sum(
        c.time_s
        for c, layer in zip(after.costs, placed, strict=True)
        if layer.nodes and set(layer.nodes) <= names
    )
    handoff_ms = rec.handoffs * load_policy()["handoff_ms"]
    model_ms = 1e3 * (base.latency_s - after.latency_s)
    rec.saving = {
        "dla_ms": round(dla_ms, 4),
        "conversions_ms": round(conversion_ms, 4),
        "handoffs_ms": round(handoff_ms, 4),
        "fallback_ms": round(fallback_ms, 4),
    }
    rec.saving_ms = round(model_ms + handoff_ms, 4)
    rec.saving_note = (
        f"performance model {base.model_version}, {base.power_mode}: latency of the predicted "
        "placement minus the placement with this move, plus the handoffs at "
        f"{load_policy()['handoff_ms']} ms each (policy.toml)"
    )
