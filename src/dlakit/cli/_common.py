"""Option groups and helpers every verb shares, so a flag means the same thing everywhere."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel, load_model, parse_input_shapes

MODEL_ARG = typer.Argument(..., help="ONNX file, or a zoo model name (see `dlakit zoo list`).")
TARGET_OPT = typer.Option(
    "orin",
    "--target",
    "-t",
    help="Target (see targets/data): orin, xavier, xavier-nx, nv_full, nv_small.",
)
TRT_OPT = typer.Option(
    None,
    "--trt",
    help="TensorRT rule set version for Jetson targets "
    "(8.5, 8.6, 8.6.12, 10.7, 11.4); default: the target's.",
)
INPUT_SHAPE_OPT = typer.Option(
    None, "--input-shape", help="Pin an input: name:1x3x224x224 (or 1x3x224x224). Repeatable."
)


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
