"""Experiment: the calibration fit with TensorRT's fusion of the ReLU after a residual Add.

dlakit's compiler runs Conv+Add as one layer and the ReLU after it as an SDP pass of its own;
TensorRT's DLA runs Conv+BN+Add+ReLU as one layer (cuDLA layer-wise sample). This refits the
five parameters on the same calibration set (perf/data/calibration.toml only) with that ReLU
folded into its conv layer, and prints the fit next to the shipped one, so the cost of the
missing fusion is measured rather than guessed. It writes nothing.
Usage: python bench/perf_fit_variant.py
"""

from __future__ import annotations

import functools

from dlakit.perf import calibration, fit
from dlakit.perf.hw import Params, load_params
from dlakit.perf.layers import HwLayer


def relu_after_add_fused(layers: list[HwLayer]) -> list[HwLayer]:
    out: list[HwLayer] = []
    for layer in layers:
        prev = out[-1] if out else None
        if (
            prev is not None
            and layer.ops == ["Relu"]
            and prev.kind == "conv"
            and prev.ops[-1] == "Add"
            and layer.inputs == [prev.output]
        ):
            prev.ops = [*prev.ops, "Relu"]
            prev.nodes = [*prev.nodes, *layer.nodes]
            prev.output = layer.output
            continue
        out.append(layer)
    return out


def report(name: str, params: Params, objective: float) -> None:
    thr = [p for p in calibration.throughput_points(params, ["MAXN", "30W"]) if p.measured]
    rows = calibration.layerwise_points(params)
    loo = fit.leave_one_network_out(params)
    print(
        f"| {name} | {objective:.4f} | {calibration.mape([p.error for p in thr]):.1%} | "
        f"{calibration.mape(loo):.1%} | {calibration.mape([r.error for r in rows]):.1%} | "
        f"{max(abs(r.error) for r in rows):.1%} | {params.layer_overhead_us:.2f} | "
        f"{params.pdp_elems_per_clk:.1f} | {params.feed_bytes_per_clk:.1f} |"
    )


def main() -> None:
    print(
        "| layers | objective | MAPE (12) | leave-one-out | layer-wise mean | largest | "
        "overhead µs | PDP el/clk | feed B/clk |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    params, value = fit.fit(load_params())
    report("compiler (shipped)", params, value)
    compiled = calibration.network.__wrapped__

    @functools.cache
    def variant(arch: str, shape: tuple[int, ...], target: str):
        model, layers = compiled(arch, shape, target)
        return model, relu_after_add_fused(layers)

    calibration.network = variant
    params, value = fit.fit(load_params())
    report("ReLU after Add fused (TensorRT)", params, value)


if __name__ == "__main__":
    main()
