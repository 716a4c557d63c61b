"""``dlakit accuracy``: FP32 vs DLA-INT8 (integer reference) on the same real inputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.accuracy import render
from dlakit.report.console import write_json
from dlakit.scale.job import file_digest


def _labels(path: Path, count: int) -> np.ndarray:
    if not path.is_file():
        raise DlakitError(f"--labels file not found: {path}")
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64)
    except ValueError as exc:
        raise DlakitError(f"--labels {path}: not one integer label per line ({exc})") from None
    values = np.asarray(values).reshape(-1).astype(np.int64)
    if len(values) < count:
        raise DlakitError(f"--labels {path}: {len(values)} labels for {count} inputs")
    return values[:count]


def accuracy_command(
    model: str = o.MODEL,
    scales: Path = o.SCALES,
    data: str = o.data_option(required=True),
    labels: Path | None = typer.Option(
        None, "--labels", help="Labels file (.npy or one integer per line); default: the data's."
    ),
    preprocess: str | None = o.PREPROCESS,
    limit: int | None = o.limit_option(),
    target: str = o.target_option(),
    trt: str | None = o.TRT,
    fp16_layers: list[str] | None = o.FP16_LAYERS,
    output_precision: str | None = o.OUTPUT_PRECISION,
    per_layer: bool = typer.Option(False, "--per-layer", help="SQNR of every DLA INT8 layer."),
    per_layer_inputs: int = typer.Option(
        32,
        "--per-layer-inputs",
        min=1,
        max=o.MAX_LIMIT,
        help="Inputs for --per-layer and the --auto-fp16 search.",
    ),
    suggest_fp16: int = typer.Option(
        0, "--suggest-fp16", min=0, max=1000, help="Search up to this many layers to keep in FP16."
    ),
    auto_fp16: float | None = typer.Option(
        None,
        "--auto-fp16",
        metavar="BUDGET",
        help="Search tensors to move to FP16 (producer and consumers together) within BUDGET, "
        "the largest share of the MACs in FP16 (0..1); prints the accuracy-vs-latency curve "
        "and writes the chosen layer list.",
    ),
    auto_fp16_out: Path | None = typer.Option(
        None,
        "--auto-fp16-out",
        help="Where --auto-fp16 writes the chosen layers (default <model>.fp16-layers.txt); "
        "calibrate and compile read it as --fp16-layers @FILE.",
    ),
    ort_calib: str | None = typer.Option(
        None,
        "--ort-int8",
        help="Also measure onnxruntime's static INT8 (QDQ, per-channel) calibrated on this data.",
    ),
    batch: int | None = o.BATCH,
    json_path: Path | None = o.JSON,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    workers: int = o.WORKERS,
    ray: str | None = o.RAY,
    resume: Path | None = o.RESUME,
    retries: int = o.RETRIES,
    shard_size: int | None = o.SHARD_SIZE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Compare FP32 with DLA-INT8 (the bit-exact integer reference) on the same inputs.

    The data set runs in shards (--workers, --ray, --resume: docs/cli.md). JSON: the report
    (docs/accuracy.md). -v adds where the inputs and labels came from.
    """
    from dlakit.accuracy import compare as acc
    from dlakit.cli.sharding import Sharding, accuracy_outputs
    from dlakit.data import load_labelled
    from dlakit.lower.lowering import quantize_model
    from dlakit.quant.scales import Scales

    out = o.output(verbose, quiet, json_path)
    o.guard_outputs({"--json": json_path, "--resume": resume}, o.model_file(model), scales, data,
                    labels, ort_calib)  # fmt: skip
    sharding = Sharding(workers, ray, resume, retries, shard_size)
    sharding.check()
    if resume is not None and (auto_fp16 is not None or suggest_fp16):
        raise DlakitError("--resume covers one pass over the data; not with --auto-fp16 or "
                          "--suggest-fp16, which evaluate other precision mixes")  # fmt: skip
    layers, _ = o.placement(fp16_layers)
    loaded = o.load_cli_model(model, input_shape)
    table = Scales.load(scales).for_model(loaded)
    prep = preprocess or o.zoo_preset(model)
    shape = loaded.input_shapes[loaded.input_names[0]]
    ds = load_labelled(data, prep, shape, o.limit_value(limit))
    x = np.asarray(ds.images, dtype=np.float32)
    y = _labels(labels, len(x)) if labels else None
    labelled_by = f"--labels {labels}" if labels else None
    if y is None and ds.labels is not None and all(v is not None for v in ds.labels):
        y = np.asarray(ds.labels, dtype=np.int64)
        labelled_by = data
    out.detail(
        f"inputs: {len(x)} from {data} (preprocess {prep or 'none: float arrays as given'}); "
        f"labels: {labelled_by or 'none (agreement with FP32 only)'}"
    )
    layers = layers or list(table.fp16_layers)
    graph = quantize_model(
        loaded, table, target, fp16_layers=layers, trt=trt, output_precision=output_precision
    )
    fp32, int8 = accuracy_outputs(
        out, loaded, graph, x, sharding, batch, scales=file_digest(scales), target=target,
        trt=trt, fp16_layers=layers, output_precision=output_precision,
    )  # fmt: skip
    report = acc.evaluate(loaded, graph, x, y, per_layer_inputs if per_layer else 0, fp32=fp32,
                          int8=int8, names=ds.names)  # fmt: skip
    doc = report.to_json()
    peer = None
    if ort_calib:
        from dlakit.accuracy.ort_int8 import quantize_ort, run_ort_int8

        calib = np.asarray(load_labelled(ort_calib, prep, shape, 500).images, dtype=np.float32)
        with out.status("onnxruntime static INT8 (peer)"):
            int8 = run_ort_int8(quantize_ort(loaded, calib), loaded, x)[loaded.output_names[0]]
            fp32 = acc.float_run(loaded, x)[loaded.output_names[0]]
        peer = doc["ort_int8"] = {
            "agreement": acc.agreement(fp32, int8),
            "top1": acc.topk_accuracy(int8, y) if y is not None else None,
            "sqnr_db": acc.sqnr_db(fp32, int8),
        }
    steps = None
    if suggest_fp16:
        steps = acc.suggest_fp16(
            loaded,
            table,
            target,
            x[: max(per_layer_inputs, 16)],
            max_layers=suggest_fp16,
            fp16_layers=layers,
        )
        doc["fp16_suggestions"] = [vars(s) for s in steps]
    mix = None
    if auto_fp16 is not None:
        from dlakit.accuracy.mixed import search_fp16

        with out.status(f"searching FP16 tensors within {100 * auto_fp16:g}% of the MACs"):
            mix = search_fp16(
                loaded, table, target, x[:per_layer_inputs], auto_fp16,
                latency=dla_latency(loaded, target, trt), fp16_layers=layers,
                output_precision=output_precision, progress=out.detail,
            )  # fmt: skip
        chosen = mix.chosen.layers
        graph = quantize_model(loaded, table, target, fp16_layers=chosen, trt=trt,
                               output_precision=output_precision)  # fmt: skip
        fp32, int8 = accuracy_outputs(out, loaded, graph, x, replace(sharding, resume=None), batch)
        report = acc.evaluate(loaded, graph, x, y, fp32=fp32, int8=int8, names=ds.names)
        doc = report.to_json() | {k: v for k, v in doc.items() if k not in report.to_json()}
        written = auto_fp16_out or Path(f"{Path(model).stem}.fp16-layers.txt")
        written.write_text(
            f"# dlakit accuracy --auto-fp16 {auto_fp16:g}: {len(chosen)} ONNX nodes in FP16\n"
            + "".join(f"{n}\n" for n in chosen)
        )
        doc["auto_fp16"] = mix.to_json() | {"file": str(written)}
    title = f"{Path(model).stem} on {data} ({len(x)} inputs, target {target})"
    render(report, title, out, peer, steps, mix)
    if mix is not None:
        out.line(f"chosen layers written to {doc['auto_fp16']['file']} "
                 f"(use --fp16-layers @{doc['auto_fp16']['file']})")  # fmt: skip
    if json_path:
        write_json(doc, json_path, out)


def dla_latency(loaded, target: str, trt: str | None = None):
    """Modeled DLA time per image of a precision mix (the performance model's layer costs):
    a callable from the FP16 node set to seconds, or None for a target without DLA FP16.

    Each hardware layer costs its INT8 or FP16 time (a layer with any FP16 node runs FP16);
    each tensor between an FP16 and an INT8 layer costs one SDP pass converting it. Layers run
    on the DLA as the support verdicts place them (open NVDLA's compiler still sends FP16 work
    to the fallback until its simulator has FP16; the hardware runs it).
    """
    from dlakit.partition import check_model
    from dlakit.perf.cost import dla_layer_cost
    from dlakit.perf.hw import dla_config, load_params
    from dlakit.perf.layers import HwLayer, build_layers
    from dlakit.perf.model import sram_resident
    from dlakit.targets import load_target

    tgt = load_target(target)
    if not tgt.dla_cores or "fp16" not in tgt.dla.precisions:
        return None
    on_dla = {v.name for v in check_model(loaded, tgt, trt).nodes if v.engine == "dla"}
    layers = [
        layer for layer in build_layers(loaded, tgt)
        if layer.engine == "dla" or (layer.nodes and all(n in on_dla for n in layer.nodes))
    ]  # fmt: skip
    hw = {p: dla_config(tgt, None, precision=p) for p in ("int8", "fp16")}
    params = load_params()
    sram = {p: sram_resident(layers, loaded, hw[p]) for p in hw}
    made = {layer.output: layer for layer in layers}

    def cost(layer: HwLayer, precision: str) -> float:
        return dla_layer_cost(layer, hw[precision], params, sram[precision]).time_s

    def latency(fp16: frozenset[str]) -> float:
        prec = {lay.name: "fp16" if any(n in fp16 for n in lay.nodes) else "int8" for lay in layers}
        total = sum(cost(lay, prec[lay.name]) for lay in layers)
        converted = set()
        for lay in layers:
            for t in lay.inputs:
                src = made.get(t)
                if src is not None and prec[src.name] != prec[lay.name] and t not in converted:
                    converted.add(t)
                    n = src.written_elems
                    cvt = HwLayer(f"reformat:{t}", "sdp", ["Reformat"], [], inputs=[t],
                                  output=f"{t}::reformat", in_elems=n, out_elems=n)  # fmt: skip
                    total += cost(cvt, "fp16")
        return total

    return latency


def register(app: typer.Typer) -> None:
    app.command("accuracy")(accuracy_command)
