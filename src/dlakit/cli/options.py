"""Every option more than one verb takes, declared once, so a flag means one thing everywhere.

A verb uses these as the defaults of its parameters (Polygraphy's shared argument groups, in
typer's terms). Groups that differ only in their default or in being required are factories
(``target_option("nv_small")``); their help text is the same whatever the default, and
``tests/cli/test_options.py`` checks that each flag has one help text and at most one short flag
across all verbs, and that every verb takes ``-v``/``-q`` (and ``--json PATH`` where it has a
result to write).

The groups:

* model: the ``MODEL`` argument, ``--input-shape``;
* target: ``--target/-t``, ``--trt``, ``--power-mode``, ``--batch``, ``--precision``;
* inputs: ``--data/-d``, ``--preprocess/-p``, ``--limit/-n``;
* precision and placement: ``--scales/-s``, ``--fp16-layers``, ``--output-precision``,
  ``--fallback-layers``, ``--apply-policy``;
* devices: ``--device``;
* output: ``--output/-o``, ``--json PATH``, ``--wide``, ``--emit DIR``, ``--plot DIR``;
* logging: ``--verbose/-v``, ``--quiet/-q`` (on every verb);
* scale: ``--workers``, ``--ray``, ``--resume``, ``--retries``, ``--shard-size`` (verbs that
  shard their work, :mod:`dlakit.cli.sharding`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from dlakit.errors import DlakitError
from dlakit.files import check_not_input
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

_TARGET_HELP = (
    f"Hardware target (targets/data): {', '.join(list_targets())}. sweep takes a list "
    "(orin,nv_full)."
)


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
    help="Power mode of the target's data file (Orin: MAXN, 50W, 30W, 15W); default MAXN. sweep "
    "takes a list (MAXN,30W) or all (each target's modes).",
)
# Bounds on what one command may be asked to do. A target's own batch limit (targets/data,
# dla.max_batch) is checked where the batch is used; this one bounds targets without one (host).
MAX_BATCH = 65536
MAX_LIMIT = 1_000_000
_BATCH_HELP = (
    "Images per inference (a DLA runs a batch as a loop: its time is linear in it); default: "
    "the model's. plan and sweep take a list (1,4,16) for a curve. run and accuracy pass that "
    "many at once through the simulator or the integer reference (default: what fits the "
    "device's memory)."
)
BATCH = typer.Option(None, "--batch", "-b", min=1, max=MAX_BATCH, help=_BATCH_HELP)
BATCH_LIST = typer.Option(None, "--batch", "-b", help=_BATCH_HELP, show_default=False)

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
    # The range is checked by limit_value, which every verb calls before any work.
    return typer.Option(default, "--limit", "-n", help="Use at most this many inputs (0: all).")


def limit_value(limit: int | None) -> int | None:
    """``--limit`` as a count (None: all inputs)."""
    if limit is not None and not 0 <= limit <= MAX_LIMIT:
        raise DlakitError(f"--limit {limit}: must be in [0, {MAX_LIMIT}]")
    return limit or None


# --- precision and placement --------------------------------------------------------------------

SCALES = typer.Option(..., "--scales", "-s", help="Scales file from dlakit calibrate.")
# compile: optional, because --precision fp16 reads none (the same flag and help otherwise)
SCALES_INT8 = typer.Option(None, "--scales", "-s", help="Scales file from dlakit calibrate.")
FP16_LAYERS = typer.Option(
    None,
    "--fp16-layers",
    help="ONNX node names the DLA runs in FP16 instead of INT8 (comma separated, repeatable; "
    "@FILE reads a list, as accuracy --auto-fp16 writes it).",
)
OUTPUT_PRECISION = typer.Option(
    None,
    "--output-precision",
    help="How network outputs leave the DLA: fp16 (INT17 through the output converter, where "
    "the target's DLA has FP16) or int8 (at the unclipped calibrated range); default: fp16 "
    "where the target has it.",
)
FALLBACK_LAYERS = typer.Option(
    None,
    "--fallback-layers",
    help="ONNX node names to run on the fallback device instead of the DLA "
    "(comma separated, repeatable).",
)


APPLY_POLICY = typer.Option(
    False,
    "--apply-policy",
    help="Also apply dlakit's placement recommendations (DLA islands not worth their handoffs); "
    "without it the placement is TensorRT's (or, on open NVDLA, dlakit's compiler's) alone.",
)


def split_names(values: list[str] | None) -> list[str]:
    """``--fp16-layers a,b --fp16-layers c`` -> ``[a, b, c]``; ``@FILE`` reads names from a file
    (one per line or comma separated, ``#`` comments), as ``accuracy --auto-fp16`` writes it."""
    names: list[str] = []
    for item in values or []:
        if item.startswith("@"):
            path = Path(item[1:])
            if not path.is_file():
                raise DlakitError(f"layer list file not found: {path}")
            lines = [ln.split("#", 1)[0] for ln in path.read_text().splitlines()]
            names += [v.strip() for ln in lines for v in ln.split(",") if v.strip()]
        else:
            names += [v.strip() for v in item.split(",") if v.strip()]
    return names


def placement(
    fp16_layers: list[str] | None, fallback_layers: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """Both name lists; a node named in both is refused (it cannot run in two places)."""
    fp16, fallback = split_names(fp16_layers), split_names(fallback_layers)
    both = sorted(set(fp16) & set(fallback))
    if both:
        raise DlakitError(f"--fp16-layers and --fallback-layers both name {', '.join(both)}")
    return fp16, fallback


def choice(*allowed: str) -> Any:
    """A callback refusing any value but ``allowed`` (a usage error naming the choices)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r}: choose one of {', '.join(allowed)}")
        return value

    return check


OBJECTIVE = typer.Option(
    "throughput", "--objective", help="throughput (images/s), latency (ms) or energy (img/J)."
)
PRECISION = typer.Option(
    "int8",
    "--precision",
    callback=choice("int8", "fp16"),
    help="int8 or fp16 (profile: the DLA's; plan: every device's; compile: fp16 compiles "
    "nv_full's FP16 data path and reads no --scales).",
)


# --- devices ------------------------------------------------------------------------------------

_DEVICE_RE = re.compile(r"^(cpu|auto|cuda(:\d{1,2})?)$")


def _device(value: str) -> str:
    if not _DEVICE_RE.match(value):
        raise typer.BadParameter(f"{value!r} is not a device: choose cpu, cuda, cuda:N or auto")
    return value


DEVICE = typer.Option(
    "cpu",
    "--device",
    callback=_device,
    help="Where the simulator and PyTorch run: cpu, cuda or auto.",
)

# --- output -------------------------------------------------------------------------------------


def output_option(required: bool = False) -> Any:
    return typer.Option(
        ... if required else None,
        "--output",
        "-o",
        help="The file this verb writes: fix the rewritten ONNX, calibrate the scales "
        "(default <model>.scales.json), compile the .dla artifact, run the outputs (.npz), "
        "loadable run the output image (.dimg).",
    )


OUT_DIR = typer.Option(
    None,
    "--out",
    help="Folder for a run's outputs, one sub-folder per test (loadable test: "
    "DIR/<golden folder>/o_000000.dimg); without it they go to a temporary folder, removed after.",
)
INPUT = typer.Option(
    None,
    "--input",
    help="The input tensor's contents: an 8-bit .pgm image, a .npy array [C, H, W] or a .dimg.",
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

EMIT = typer.Option(
    None,
    "--emit",
    metavar="DIR",
    help="Write the pieces as ONNX files and a manifest into DIR (check: one per segment and "
    "segments.json; plan: one per piece, plan.json, trtexec lines, a runner).",
)
PLOT = typer.Option(
    None, "--plot", metavar="DIR", help="Write the verb's plots (PNG) into DIR (see its docs page)."
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


def guard_outputs(outputs: dict[str, Path | str | None], *inputs: Path | str | None) -> None:
    """Before any work: no output (``{flag: path}``) may be an input or another output."""
    check_not_input(outputs, inputs)


def model_file(model: str) -> Path | None:
    """The MODEL argument as a file, when it is one (a zoo name lives in the cache)."""
    path = Path(model)
    return path if path.exists() else None


# --- models -------------------------------------------------------------------------------------


def resolve_model_path(
    model: str, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A file path as is, or a zoo name fetched into the cache (with its input shape): at the
    one shape of ``input_shapes`` where given (the zoo re-exports or re-pins it), else the
    entry's default."""
    path = Path(model)
    if path.exists():
        return path, {}
    if path.suffix or "/" in model:  # meant as a file, not a zoo name
        raise DlakitError(f"model file not found: {model}")
    from dlakit import zoo

    if input_shapes and len(input_shapes) > 1:
        raise DlakitError(f"--input-shape: zoo model {model} has one input; give one shape")
    shape = next(iter(input_shapes.values())) if input_shapes else None
    resolved = Path(zoo.resolve_model(model, input_shape=shape))
    return resolved, {"": tuple(shape or zoo.get_entry(model).input_shape)}


def load_cli_model(model: str, input_shape: list[str] | None) -> LoadedModel:
    """Resolve, then load to canonical form; --input-shape overrides a zoo entry's default."""
    asked = parse_input_shapes(input_shape)
    path, defaults = resolve_model_path(model, asked)
    shapes = asked or defaults
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


# --- scale --------------------------------------------------------------------------------------

WORKERS = typer.Option(
    1,
    "--workers",
    min=1,
    max=1024,
    help="Shards at once: N local worker processes (1: in this process); with --ray, Ray tasks "
    "in flight (default: the cluster's CPUs).",
)
RAY = typer.Option(
    None,
    "--ray",
    metavar="auto|ADDRESS",
    help="Run the shards as Ray tasks (the 'ray' extra): auto (RAY_ADDRESS, a running local "
    "cluster, else a new local one) or a cluster address (HOST:PORT, ray://HOST:10001).",
)
RESUME = typer.Option(
    None,
    "--resume",
    metavar="FILE",
    help="Results file, written as shards finish (and FILE.parts/): a rerun with it skips the "
    "finished shards; a file of another job is refused.",
)
RETRIES = typer.Option(
    2,
    "--retries",
    min=0,
    max=100,
    help="Run a failed shard (its error, or its worker's death) again up to this often.",
)
SHARD_SIZE = typer.Option(
    None,
    "--shard-size",
    min=1,
    max=MAX_LIMIT,
    help="Inputs (sweep: points) per shard; default: 1/16 of them, 8 to 256.",
)
