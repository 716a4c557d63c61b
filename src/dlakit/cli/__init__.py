"""The ``dlakit`` command: one verb per pipeline stage.

Each verb lives in its own module ``dlakit.cli.<verb>`` exposing ``register(app)``. A verb whose
module fails to import is still listed, and running it prints the import error, so one broken
stage never takes the whole CLI down.
"""

import importlib
import sys

import typer
from rich.console import Console

from dlakit import __version__
from dlakit.errors import DlakitError

VERBS = (
    "check",
    "fix",
    "zoo",
    "calibrate",
    "accuracy",
    "compile",
    "inspect",
    "run",
    "trace",
    "profile",
    "plan",
)

app = typer.Typer(
    name="dlakit",
    help="Check, fix, calibrate, compile, simulate, profile and plan ONNX models for DLAs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"dlakit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """dlakit: which layers run on the DLA, why not the rest, and how fast."""


def _register_verbs() -> None:
    for verb in VERBS:
        module_name = f"dlakit.cli.{verb.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # stage not built yet
            _register_broken(verb, exc)
            continue
        except Exception as exc:  # a broken stage must not hide the others
            _register_broken(verb, exc)
            continue
        module.register(app)


def _register_broken(verb: str, exc: BaseException) -> None:
    @app.command(verb, help=f"(unavailable: {exc})")
    def _broken() -> None:
        raise DlakitError(f"'{verb}' is unavailable: {type(exc).__name__}: {exc}")


_register_verbs()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one clear line and exit code 2."""
    try:
        app(args=argv, prog_name="dlakit", standalone_mode=False)
    except DlakitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Usage errors come from the click that typer vendors; they know how to print themselves.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
