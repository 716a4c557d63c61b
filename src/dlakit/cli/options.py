"""Every option more than one verb takes, declared once, so a flag means one thing everywhere.

A verb uses these as the defaults of its parameters (Polygraphy's shared argument groups, in
typer's terms). Groups that differ only in their default or in being required are factories
(``target_option("nv_small")``); their help text is the same whatever the default, and
``tests/cli/test_options.py`` checks that each flag has one help text and at most one short flag
across all verbs, and that every verb takes ``-v``/``-q`` (and ``--json PATH`` where it has a
result to write).

The groups:

* model: the ``MODEL`` argument, ``--input-shape``;
* target: ``--target/-t``, ``--trt``, ``--power-mode``, ``--batch``;
* inputs: ``--data/-d``, ``--preprocess/-p``, ``--limit/-n``;
* precision and placement: ``--scales/-s``, ``--fp16-layers``, ``--fallback-layers``;
* devices: ``--device``;
* output: ``--output/-o``, ``--json PATH``, ``--wide``;
* logging: ``--verbose/-v``, ``--quiet/-q`` (on every verb).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel, load_model, parse_input_shapes
from dlakit.report.console import STDOUT, Output
from dlakit.targets import list_targets

# --- model --------------------------------------------------------------------------------------

_MODEL_HELP = "ONNX file, or a zoo model name (see `dlakit zoo list`)."
MODEL = typer.Argument(..., help=_MODEL_HELP, show_default=False)
OPTIONAL_MODEL = typer.Argument(None, help=_MODEL_HELP, show_default=False)
INPUT_SHAPE = typer.Option(
    None, "--input-shape", help="Pin an input: name:1x3x224x224 (or 1x3x224x224). Repeatable."
)

# --- target -------------------------------------------------------------------------------------

_TARGET_HELP = f"Hardware target (targets/data): {', '.join(list_targets())}."


def target_option(default: str | None = "orin") -> Any:
    """``--target/-t``; ``default=None`` makes it required."""
    return typer.Option(... if default is None else default, "--target", "-t", help=_TARGET_HELP)


TRT = typer.Option(
    None,
    "--trt",
    help="TensorRT rule set version for Jetson targets "
    "(8.5, 8.6, 8.6.12, 10.7, 11.4); default: the target's.",
)
POWER_MODE = typer.Option(
    None,
    "--power-mode",
    help="Power mode of the target's data file (Orin: MAXN, 50W, 30W, 15W); default MAXN.",
)
BATCH = typer.Option(
    None,
    "--batch",
    "-b",
    help="Images the DLA takes together: profile models that batch (default: the model's); run, "
    "accuracy and calibrate pass that many at once (default: what fits the device's memory).",
)

# --- inputs -------------------------------------------------------------------------------------

_DATA_HELP = (
    "Real inputs: a data set name[:split] (see `dlakit zoo data list`), a folder of images or an "
    ".npz (run also reads an .npy of model inputs)."
)


def data_option(required: bool = False) -> Any:
    return typer.Option(... if required else None, "--data", "-d", help=_DATA_HELP)


PREPROCESS = typer.Option(
    None,
    "--preprocess",
    "-p",
    help="Preprocess for image inputs: a preset name or a spec "
    "(resize=256,crop=224,mean=...,std=...); default: the zoo model's preset "
    "(run: the artifact's).",
)


def limit_option(default: int | None = None) -> Any:
    return typer.Option(default, "--limit", "-n", help="Use at most this many inputs (0: all).")


def limit_value(limit: int | None) -> int | None:
    """``--limit`` as a count (None: all inputs)."""
    if limit is not None and limit < 0:
        raise DlakitError(f"--limit {limit}: must be >= 0")
    return limit or None


# --- precision and placement --------------------------------------------------------------------

SCALES = typer.Option(..., "--scales", "-s", help="Scales file from dlakit calibrate.")
FP16_LAYERS = typer.Option(
    None,
    "--fp16-layers",
    help="ONNX node names the DLA runs in FP16 instead of INT8 (comma separated, repeatable).",
)
FALLBACK_LAYERS = typer.Option(
    None,
    "--fallback-layers",
    help="ONNX node names to run on the fallback device instead of the DLA "
    "(comma separated, repeatable).",
)


def split_names(values: list[str] | None) -> list[str]:
    """``--fp16-layers a,b --fp16-layers c`` -> ``[a, b, c]``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


# --- devices ------------------------------------------------------------------------------------

DEVICE = typer.Option(
    "cpu", "--device", help="Where the simulator and PyTorch run: cpu, cuda or auto."
)

# --- output -------------------------------------------------------------------------------------


def output_option(required: bool = False) -> Any:
    return typer.Option(
        ... if required else None,
        "--output",
        "-o",
        help="The file this verb writes: fix the rewritten ONNX, calibrate the scales "
        "(default <model>.scales.json), compile the .dla artifact, run the outputs (.npz).",
    )


JSON = typer.Option(
    None,
    "--json",
    metavar="PATH",
    help="Also write the result as JSON to PATH (- for stdout, which then holds only the JSON); "
    "the schema is in the verb's docs page.",
)
WIDE = typer.Option(
    False,
    "--wide",
    help="Per-layer tables with every column and whole names, however wide the terminal.",
)

# --- logging ------------------------------------------------------------------------------------

VERBOSE = typer.Option(
    False, "--verbose", "-v", help="More detail (what each verb adds is in its docs page)."
)
QUIET = typer.Option(
    False, "--quiet", "-q", help="No tables, notes or progress; warnings go to stderr."
)


def output(verbose: bool, quiet: bool, json_path: Path | None = None) -> Output:
    """The verb's console: quiet with -q, and when the JSON goes to stdout."""
    if verbose and quiet:
        raise DlakitError("--verbose and --quiet exclude each other")
    return Output.make(verbose=verbose, quiet=quiet or str(json_path) == STDOUT)


# --- models -------------------------------------------------------------------------------------


def resolve_model_path(model: str) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A file path as is, or a zoo name fetched into the cache (with its default input shape)."""
    path = Path(model)
    if path.exists():
        return path, {}
    if path.suffix or "/" in model:  # meant as a file, not a zoo name
        raise DlakitError(f"model file not found: {model}")
    from dlakit import zoo

    resolved = Path(zoo.resolve_model(model))
    return resolved, {"": tuple(zoo.get_entry(model).input_shape)}


def load_cli_model(model: str, input_shape: list[str] | None) -> LoadedModel:
    """Resolve, then load to canonical form; --input-shape overrides a zoo entry's default."""
    path, defaults = resolve_model_path(model)
    shapes = parse_input_shapes(input_shape) or defaults
    if "" in shapes and not input_shape:
        try:
            return load_model(path, shapes)
        except DlakitError:
            return load_model(path, {})  # the zoo default did not fit a static model: keep its own
    return load_model(path, shapes)


def zoo_preset(model: str) -> str | None:
    """The preprocess preset of a zoo model name; None for a file."""
    if Path(model).exists():
        return None
    from dlakit.zoo import get_entry

    return get_entry(model).preprocess
