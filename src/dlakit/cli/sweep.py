"""``dlakit sweep``: a design-space sweep through the performance model and the planner."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import typer

from dlakit import __version__
from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.files import atomic_write
from dlakit.report.console import write_json

SWEEP_SCHEMA = "dlakit.sweep"
SWEEP_SCHEMA_VERSION = 1


def _names(flag: str, text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise DlakitError(f"{flag} {text!r}: no value")
    return list(dict.fromkeys(names))


def _modes(target, asked: list[str] | None) -> list[str | None]:
    """The power modes of the grid on ``target``: the asked ones (each checked), every one
    with ``all``, else the target's default."""
    if asked is None:
        return [None]
    if asked == ["all"]:
        return list(target.power_modes) or [None]
    for mode in asked:
        target.power_mode(mode)  # an unknown mode ends here, in one line naming the target's
    return list(asked)


def sweep_command(
    models: list[str] = typer.Argument(
        ..., help="ONNX files or zoo names, one axis of the grid.", show_default=False
    ),
    target: str = o.target_option(),
    power_mode: str | None = o.POWER_MODE,
    precision: str = o.PRECISION,
    batch: str | None = o.BATCH_LIST,
    plan: bool = typer.Option(
        False, "--plan", help="Also the GPU+DLA planner's chosen plan at each point (Jetson)."
    ),
    objective: str = o.OBJECTIVE,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    json_path: Path | None = o.JSON,
    csv_path: Path | None = typer.Option(
        None, "--csv", metavar="PATH", help="Also write one row per point as CSV to PATH."
    ),
    plot_dir: Path | None = o.PLOT,
    wide: bool = o.WIDE,
    workers: int = o.WORKERS,
    ray: str | None = o.RAY,
    resume: Path | None = o.RESUME,
    retries: int = o.RETRIES,
    shard_size: int | None = o.SHARD_SIZE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Every point of models x targets x power modes x batches through the performance model
    (profile), and with --plan the planner: one table, JSON, CSV and plots.

    -t, --power-mode and -b take comma lists (--power-mode all: each target's modes). The points
    run in shards (--workers, --ray, --resume: docs/cli.md). Every number is modeled. JSON:
    schema dlakit.sweep v1 (docs/cli.md). --plot DIR writes throughput_vs_batch.png.
    """
    from dlakit.cli.plan import parse_batches
    from dlakit.cli.sharding import Sharding, run_pass
    from dlakit.perf.hw import model_version
    from dlakit.perf.model import check_batch, model_batch
    from dlakit.plan import OBJECTIVES
    from dlakit.report.scale import render_sweep, sweep_csv, write_sweep_plots
    from dlakit.scale import merge_arrays
    from dlakit.scale.job import config_of, digest
    from dlakit.scale.jobs import SweepJob, SweepPoint, sweep_rows
    from dlakit.targets import load_target

    out = o.output(verbose, quiet, json_path)
    plot = {"--plot": plot_dir / "throughput_vs_batch.png"} if plot_dir else {}
    o.guard_outputs({"--json": json_path, "--csv": csv_path, "--resume": resume, **plot},
                    *(o.model_file(m) for m in models))  # fmt: skip
    sharding = Sharding(workers, ray, resume, retries, shard_size)
    sharding.check()
    if objective not in OBJECTIVES:
        raise DlakitError(f"--objective {objective}: must be one of {', '.join(OBJECTIVES)}")
    targets = [load_target(name) for name in _names("--target", target)]
    hosts = [t.name for t in targets if t.kind == "host"]
    if hosts:
        raise DlakitError("--target host is measured, not modeled: sweep runs the model")
    modes = _names("--power-mode", power_mode) if power_mode else None
    batches = parse_batches(batch)
    loaded = {name: o.load_cli_model(name, input_shape) for name in dict.fromkeys(models)}
    points, too_large = [], {}
    for name, tgt in product(loaded, targets):
        for mode, b in product(_modes(tgt, modes), batches or [model_batch(loaded[name])]):
            if tgt.dla.max_batch and b > tgt.dla.max_batch:
                too_large.setdefault(tgt.name, set()).add(b)
                continue
            check_batch(tgt, b)
            points.append(SweepPoint(name, tgt.name, mode, precision, b))
    for name, sizes in too_large.items():
        out.warn(f"target '{name}' allows at most batch {load_target(name).dla.max_batch}: "
                 f"left out batch {', '.join(map(str, sorted(sizes)))}")  # fmt: skip
    if not points:
        raise DlakitError("sweep: no point of the grid fits its target's batch limit")
    config = config_of(
        "sweep",
        models={name: digest(m.proto.SerializeToString(deterministic=True))
                for name, m in loaded.items()},
        points=[[p.model, p.target, p.power_mode, p.precision, p.batch] for p in points],
        plan=plan,
        objective=objective,
    )  # fmt: skip
    job = SweepJob(loaded, plan=plan, objective=objective)
    run = run_pass(out, job, len(points), lambda s: points[s.start : s.stop], config, sharding,
                   "sweep", "points")  # fmt: skip
    rows = sweep_rows(merge_arrays(run.results))
    render_sweep(rows, out, wide)
    if json_path:
        doc = {
            "schema": SWEEP_SCHEMA,
            "schema_version": SWEEP_SCHEMA_VERSION,
            "modeled": True,
            "model_version": model_version(),
            "dlakit_version": __version__,
            "objective": objective if plan else None,
            "points": rows,
        }
        write_json(doc, json_path, out)
    if csv_path:
        out.line(f"CSV written to {atomic_write(csv_path, sweep_csv(rows))}")
    if plot_dir:
        paths = write_sweep_plots(rows, plot_dir)
        out.line(f"plots written: {', '.join(str(p) for p in paths)}")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
