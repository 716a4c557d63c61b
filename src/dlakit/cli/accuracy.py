"""``dlakit accuracy``: FP32 vs DLA-INT8 (integer reference) on the same real inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from dlakit.cli._common import INPUT_SHAPE_OPT, MODEL_ARG, TARGET_OPT, TRT_OPT, load_cli_model
from dlakit.errors import DlakitError

console = Console()


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


def _preset(model: str) -> str | None:
    if Path(model).exists():
        return None
    from dlakit.zoo import get_entry

    return get_entry(model).preprocess


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def accuracy_command(
    model: str = MODEL_ARG,
    scales: Path = typer.Option(..., "--scales", "-s", help="Scales file from dlakit calibrate."),
    data: str = typer.Option(
        ..., "--data", "-d", help="Evaluation inputs: data set name[:split], image folder or .npz."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Labels file (.npy or one integer per line); default: the data's."
    ),
    preprocess: str | None = typer.Option(
        None, "--preprocess", "-p", help="Preset or spec; default: the zoo model's preset."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Use at most this many inputs."),
    target: str = TARGET_OPT,
    trt: str | None = TRT_OPT,
    fp16_layers: list[str] | None = typer.Option(
        None, "--fp16-layers", help="ONNX node names to keep in FP16 (comma separated)."
    ),
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
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
    input_shape: list[str] | None = INPUT_SHAPE_OPT,
) -> None:
    """Compare FP32 with DLA-INT8 (the bit-exact integer reference) on the same inputs."""
    from dlakit.accuracy import compare as acc
    from dlakit.data import load_labelled
    from dlakit.lower.lowering import quantize_model
    from dlakit.quant.scales import Scales

    loaded = load_cli_model(model, input_shape)
    table = Scales.load(scales).for_model(loaded)
    prep = preprocess or _preset(model)
    shape = loaded.input_shapes[loaded.input_names[0]]
    ds = load_labelled(data, prep, shape, limit)
    x = np.asarray(ds.images, dtype=np.float32)
    y = _labels(labels, len(x)) if labels else None
    if y is None and ds.labels is not None and all(v is not None for v in ds.labels):
        y = np.asarray(ds.labels, dtype=np.int64)
    graph = quantize_model(loaded, table, target, fp16_layers=_split(fp16_layers), trt=trt)
    with console.status(f"running FP32 and INT8 on {len(x)} inputs"):
        report = acc.evaluate(loaded, graph, x, y, per_layer_inputs if per_layer else 0)
    doc = report.to_json()
    summary = Table(title=f"{Path(model).stem} on {data} ({len(x)} inputs, target {target})")
    summary.add_column("")
    summary.add_column("FP32")
    summary.add_column("DLA-INT8")
    summary.add_row("top-1", _pct(report.fp32_top1), _pct(report.int8_top1))
    if report.fp32_top5 is not None:
        summary.add_row("top-5", _pct(report.fp32_top5), _pct(report.int8_top5))
    summary.add_row("top-1 agreement with FP32", "", _pct(report.agreement))
    for out in report.outputs:
        summary.add_row(
            f"{out.name}: cosine / SQNR", "", f"{out.cosine:.4f} / {out.sqnr_db:.1f} dB"
        )
    summary.add_row(
        "layers (engine-precision)",
        "",
        ", ".join(f"{k} {v}" for k, v in sorted(report.engines.items())),
    )
    if ort_calib:
        from dlakit.accuracy.ort_int8 import quantize_ort, run_ort_int8

        calib = np.asarray(load_labelled(ort_calib, prep, shape, 500).images, dtype=np.float32)
        with console.status("onnxruntime static INT8 (peer)"):
            peer = run_ort_int8(quantize_ort(loaded, calib), loaded, x)[loaded.output_names[0]]
            fp32 = acc.float_run(loaded, x)[loaded.output_names[0]]
        doc["ort_int8"] = {
            "agreement": acc.agreement(fp32, peer),
            "top1": acc.topk_accuracy(peer, y) if y is not None else None,
            "sqnr_db": acc.sqnr_db(fp32, peer),
        }
        summary.add_row(
            "ORT INT8 top-1 / agreement",
            "",
            f"{_pct(doc['ort_int8']['top1'])} / {_pct(doc['ort_int8']['agreement'])}",
        )
    console.print(summary)
    if report.layers:
        layers = Table(title="per-layer SQNR (DLA INT8 tensors vs FP32)")
        for col in ("tensor", "layer", "kind", "SQNR dB"):
            layers.add_column(col)
        for s in report.layers:
            layers.add_row(s.tensor, s.layer, s.kind, f"{s.sqnr_db:.1f}")
        console.print(layers)
    if suggest_fp16:
        steps = acc.suggest_fp16(
            loaded,
            table,
            target,
            x[: max(per_layer_inputs, 16)],
            max_layers=suggest_fp16,
            fp16_layers=_split(fp16_layers),
        )
        doc["fp16_suggestions"] = [vars(s) for s in steps]
        for s in steps:
            console.print(
                f"keep in FP16: {','.join(s.layers)} -> agreement {_pct(s.agreement)}, "
                f"SQNR {s.sqnr_db:.1f} dB  (use --fp16-layers {','.join(s.layers)})"
            )
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=1) + "\n")


def register(app: typer.Typer) -> None:
    app.command("accuracy")(accuracy_command)
