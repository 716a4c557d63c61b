"""``dlakit calibrate``: INT8 post-training calibration of an ONNX model on real inputs."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.quant.calibrators import METHODS
from dlakit.report import calibrate as report
from dlakit.report.console import write_json


def _companion(scales_path: Path, suffix: str) -> Path:
    name = scales_path.name
    for ending in (".scales.json", ".json"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    return scales_path.with_name(name + suffix)


def _equalized(loaded, inputs, path: Path, out):
    """The equalized model (verified on up to 8 calibration inputs), saved to ``path``."""
    from itertools import islice

    import numpy as np

    from dlakit.graph import save_model
    from dlakit.rewrite.equalize import equalize_model

    name = loaded.input_names[0]
    x = np.concatenate([feeds[name] for _, feeds in islice(iter(inputs), 8)])
    model, result = equalize_model(loaded, x)
    save_model(model.proto, path)
    out.line(
        f"equalized {len(result.pairs)} convolution pairs (verified on {result.verification.source}"
        f", max relative change {result.verification.max_rel_error:.1e}); "
        f"{len(result.skipped)} left as they are (a Clip between: not positively homogeneous)"
    )
    from dataclasses import replace

    return replace(model, path=path)


def _known_nodes(loaded, names: list[str]) -> list[str]:
    """``names``, each an ONNX node of ``loaded`` (DlakitError naming the first that is not)."""
    nodes = {n.name for n in loaded.nodes}
    unknown = [n for n in names if n not in nodes]
    if unknown:
        raise DlakitError(f"--fp16-layers: {unknown[0]!r} is no node of {loaded.path.name}")
    return names


def calibrate_command(
    model: str = o.MODEL,
    data: str | None = o.data_option(),
    preprocess: str | None = o.PREPROCESS,
    method: str = typer.Option("entropy", "--method", "-m", help="entropy | percentile | max."),
    percentile: float | None = typer.Option(
        None,
        "--percentile",
        min=0.0,
        max=100.0,
        help="Percentile of |x| for --method percentile (default 99.99).",
    ),
    output: Path | None = o.output_option(),
    trt_cache: Path | None = typer.Option(
        None, "--trt-cache", help="TensorRT calibration cache (default: beside -o, .trtcache)."
    ),
    nvdla_table: Path | None = typer.Option(
        None,
        "--nvdla-table",
        help="NVDLA JSON calibration table (default: beside -o, .nvdla.json).",
    ),
    limit: int | None = o.limit_option(500),
    fp16_layers: list[str] | None = o.FP16_LAYERS,
    equalize: bool = typer.Option(
        False,
        "--equalize",
        help="Cross-layer equalization first (a function-preserving rewrite checked with "
        "onnxruntime); writes the equalized model beside the scales, which hold only for it.",
    ),
    bias_correction: bool = typer.Option(
        False,
        "--bias-correction",
        help="Record each convolution's input means so the lowering corrects its bias for the "
        "mean error of its INT8 weights (empirical bias correction, Nagel et al. 2019).",
    ),
    input_shape: list[str] | None = o.INPUT_SHAPE,
    trt_version: int = typer.Option(
        8600,
        "--trt-version",
        min=1000,
        max=999_999,
        help="TensorRT version in the cache header (TRT-<ver>-...).",
    ),
    from_cache: Path | None = typer.Option(
        None,
        "--from-cache",
        help="Instead of calibrating, import a TensorRT cache or NVDLA table into a scales file.",
    ),
    json_path: Path | None = o.JSON,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Calibrate activation scales (entropy, percentile or max) on real inputs and write them.

    --fp16-layers are recorded in the scales file; accuracy and compile then run them in FP16.
    --equalize writes <stem>.equalized.onnx beside the scales: use that model afterwards.
    --bias-correction records the convolutions' input means; accuracy, run and compile then
    correct those biases.

    JSON: schema dlakit.calibrate v1, the summary (docs/calibrate.md). -v adds every
    activation's range, scale and clipped share.
    """
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.formats import (
        read_scale_table,
        scales_from_table,
        write_nvdla_table,
        write_trt_cache,
    )
    from dlakit.quant.inputs import calibration_inputs

    out = o.output(verbose, quiet, json_path)
    if (data is None) == (from_cache is None):
        raise DlakitError(
            "give calibration inputs with --data, or scales to import with --from-cache"
        )
    if method not in METHODS:
        raise DlakitError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if bias_correction and from_cache is not None:
        raise DlakitError(
            "--bias-correction needs calibration inputs (--data): a cache or table has no means"
        )
    if percentile is not None and percentile <= 0:
        raise DlakitError(f"--percentile {percentile}: must be in (0, 100]")
    count = o.limit_value(limit)
    output = output or Path(f"{Path(model).stem}.scales.json")
    if from_cache is None:
        trt_cache = trt_cache or _companion(output, ".trtcache")
        nvdla_table = nvdla_table or _companion(output, ".nvdla.json")
    equalized = _companion(output, ".equalized.onnx") if equalize else None
    o.guard_outputs(
        {"--output": output, "--trt-cache": trt_cache, "--nvdla-table": nvdla_table,
         "--json": json_path, "--equalize model": equalized},
        o.model_file(model), data, from_cache,
    )  # fmt: skip
    preset = o.zoo_preset(model)
    loaded = o.load_cli_model(model, input_shape)
    path = loaded.path
    run = None
    if from_cache is not None:
        scales = scales_from_table(loaded, read_scale_table(from_cache), str(from_cache))
        scales.fp16_layers = _known_nodes(loaded, o.split_names(fp16_layers))
        written = [scales.save(output)]
        if trt_cache:
            written.append(write_trt_cache(scales, trt_cache, trt_version))
        if nvdla_table:
            written.append(write_nvdla_table(scales, nvdla_table))
    else:
        inputs = calibration_inputs(data, preprocess or preset, loaded, count)
        if equalize:
            loaded = _equalized(loaded, inputs, equalized, out)
        with report.progress(out) as bars:
            run = calibrate(
                loaded,
                inputs,
                method,
                percentile,
                model_name=Path(model).stem,
                progress=report.progress_hook(bars),
                bias_correction=bias_correction,
            )
        if bias_correction:
            out.line(
                f"bias correction: input means of {len(run.scales.bias_correction)} "
                "convolutions recorded; the lowering corrects their biases"
            )
        scales = run.scales
        scales.fp16_layers = _known_nodes(loaded, o.split_names(fp16_layers))
        if equalize:
            from dlakit.quant.scales import weights_sha256

            scales.weights_sha256 = weights_sha256(loaded)
        written = [scales.save(output)]
        if equalize:
            written.append(loaded.path)
        assert trt_cache is not None and nvdla_table is not None  # set beside -o above
        written.append(write_trt_cache(scales, trt_cache, trt_version))
        written.append(write_nvdla_table(scales, nvdla_table))
    report.render(path.name, scales, written, run, out)
    if json_path:
        write_json(report.to_json(str(path), scales, written, run), json_path, out)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
