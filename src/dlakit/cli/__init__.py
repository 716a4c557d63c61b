"""The ``dlakit`` command: one verb per pipeline stage.

Each verb lives in its own module ``dlakit.cli.<verb>`` exposing ``register(app)``. Modules are
imported only when their verb runs (the simulator pulls in torch, which alone takes seconds), so
``dlakit check`` stays quick. A verb whose module fails to import still runs, and prints the import
error, so one broken stage never takes the whole CLI down.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

from dlakit import __version__
from dlakit.errors import DlakitError

# Verb -> one-line help shown by `dlakit --help` without importing the verb's module.
VERBS = {
    "check": "Which nodes run on the DLA, why not the rest, and the DLA/GPU segments.",
    "fix": "Rewrite the graph (function-preserving) so more of it runs on the DLA.",
    "zoo": "List and fetch the real models and data sets dlakit tests on.",
    "calibrate": "INT8 calibration on real inputs: scales, TensorRT cache, NVDLA table.",
    "accuracy": "FP32 vs DLA-INT8 accuracy on real data, per output and per layer.",
    "compile": "Compile DLA segments to NVDLA hardware layers (.dla artifact).",
    "inspect": "List the hardware operations, tiling and memory of a .dla artifact.",
    "run": "Run a .dla artifact on the simulator (DLA) and PyTorch (GPU segments).",
    "trace": "Run official NVDLA register-level trace tests on the simulator.",
    "loadable": "Read and run NVDLA loadables; run the official regression loadables.",
    "profile": "Per-layer DLA/GPU performance model: latency, throughput, utilization.",
    "plan": "How the GPU and the DLA cores should share one or several models (modeled).",
    "sweep": "A design sweep: models x targets x power modes x batches, modeled, in shards.",
}

err_console = Console(stderr=True)


def _load_verb(verb: str) -> typer.Typer:
    """A Typer app holding just this verb (a broken one says why when it is run)."""
    module_name = f"dlakit.cli.{verb}"
    holder = typer.Typer(add_completion=False)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken stage must not hide the others
        _register_broken(holder, verb, exc)
        return holder
    module.register(holder)
    return holder


def _register_broken(holder: typer.Typer, verb: str, exc: BaseException) -> None:
    @holder.command(verb, help=f"(unavailable: {exc})")
    def _broken() -> None:
        raise DlakitError(f"'{verb}' is unavailable: {type(exc).__name__}: {exc}")


class LazyVerbs(TyperGroup):
    """Imports a verb's module the first time the verb is looked up."""

    def list_commands(self, ctx):  # type: ignore[no-untyped-def]
        return list(VERBS)

    def get_command(self, ctx, cmd_name):  # type: ignore[no-untyped-def]
        if cmd_name not in VERBS:
            return None
        holder = _load_verb(cmd_name)
        group = typer.main.get_group(holder)
        return group.commands.get(cmd_name)

    def format_commands(self, ctx, formatter):  # type: ignore[no-untyped-def]
        rows = [(verb, text) for verb, text in VERBS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="dlakit",
    cls=LazyVerbs,
    help="Check, fix, calibrate, compile, simulate, profile and plan ONNX models for DLAs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"dlakit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """dlakit: which layers run on the DLA, why not the rest, and how fast."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one clear line and exit code 2."""
    try:
        # Outside standalone mode click returns a command's typer.Exit code instead of raising it.
        rc = app(args=argv, prog_name="dlakit", standalone_mode=False)
    except DlakitError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except NoArgsIsHelpError as exc:  # `dlakit zoo` alone: the help is what was asked for
        exc.show()
        return exc.exit_code
    except ClickException as exc:
        # Usage errors (from the click that typer vendors) in the one-line form of every error.
        err_console.print(
            f"[bold red]error:[/] {escape(_usage_line(exc))}", highlight=False, soft_wrap=True
        )
        return 2
    return rc if isinstance(rc, int) else 0


def _usage_line(exc: ClickException) -> str:
    """``Invalid value for '--batch' / '-b': 0 is not in the range x>=1.`` on one line, with
    the command whose --help explains it."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


if __name__ == "__main__":
    sys.exit(main())
