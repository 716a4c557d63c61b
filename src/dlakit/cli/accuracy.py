"""``dlakit accuracy``: FP32 vs DLA-INT8 (integer reference) on the same real inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.accuracy import render
from dlakit.report.console import progress_bars, write_json


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
    per_layer: bool = typer.Option(False, "--per-layer", help="SQNR of every DLA INT8 layer."),
    per_layer_inputs: int = typer.Option(32, "--per-layer-inputs", help="Inputs for --per-layer."),
    suggest_fp16: int = typer.Option(
        0, "--suggest-fp16", help="Search up to this many layers to keep in FP16."
    ),
    ort_calib: str | None = typer.Option(
        None,
        "--ort-int8",
        help="Also measure onnxruntime's static INT8 (QDQ, per-channel) calibrated on this data.",
    ),
    batch: int | None = o.BATCH,
    json_path: Path | None = o.JSON,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Compare FP32 with DLA-INT8 (the bit-exact integer reference) on the same inputs.

    JSON: the report (docs/accuracy.md). -v adds where the inputs and labels came from.
    """
    from dlakit.accuracy import compare as acc
    from dlakit.data import load_labelled
    from dlakit.lower.lowering import quantize_model
    from dlakit.quant.scales import Scales

    out = o.output(verbose, quiet, json_path)
    if batch is not None and batch < 1:
        raise DlakitError(f"--batch {batch}: must be at least 1")
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
    layers = o.split_names(fp16_layers)
    graph = quantize_model(loaded, table, target, fp16_layers=layers, trt=trt)
    with out.status(f"running FP32 on {len(x)} inputs"):
        fp32 = acc.float_run(loaded, x)
    with progress_bars(out, "inputs") as bars:
        task = bars.add_task("DLA-INT8 (integer reference)", total=len(x)) if bars else None
        report = acc.evaluate(
            loaded,
            graph,
            x,
            y,
            per_layer_inputs if per_layer else 0,
            fp32=fp32,
            batch=batch,
            progress=(lambda done: bars.update(task, completed=done)) if bars else None,
        )
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
    title = f"{Path(model).stem} on {data} ({len(x)} inputs, target {target})"
    render(report, title, out, peer, steps)
    if json_path:
        write_json(doc, json_path, out)


def register(app: typer.Typer) -> None:
    app.command("accuracy")(accuracy_command)
