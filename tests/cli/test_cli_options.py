"""Every verb's flags, read from the click commands typer builds: one meaning per spelling."""

import json
import subprocess
import sys
from collections import defaultdict

import pytest
import typer

from dlakit.cli import VERBS, LazyVerbs, app, main

# Leaf commands that write a result, and so take --json PATH; the others only fetch or list paths.
WRITES_A_RESULT = {
    "check",
    "fix",
    "zoo list",
    "zoo data list",
    "calibrate",
    "accuracy",
    "compile",
    "inspect",
    "run",
    "trace run",
    "profile",
    "loadable inspect",
    "loadable run",
    "loadable test",
    "plan",
    "sweep",
}
NO_RESULT = {"zoo fetch", "zoo data fetch", "trace list"}


def _leaves(command, path=()):
    if isinstance(command, LazyVerbs):
        for name in command.list_commands(None):
            yield from _leaves(command.get_command(None, name), (name,))
    elif getattr(command, "commands", None):
        for name, sub in command.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield " ".join(path), command


@pytest.fixture(scope="module")
def commands():
    return dict(_leaves(typer.main.get_command(app)))


def _options(command):
    return [p for p in command.params if p.param_type_name == "option"]


def test_every_verb_loads_and_is_classified(commands):
    assert {name.split()[0] for name in commands} == set(VERBS)
    assert set(commands) == WRITES_A_RESULT | NO_RESULT
    for name, command in commands.items():
        assert not (command.help or "").startswith("(unavailable"), f"{name}: {command.help}"


def test_each_long_flag_has_one_help_and_one_short_flag(commands):
    seen = defaultdict(set)
    for name, command in commands.items():
        for opt in _options(command):
            longs = [s for s in opt.opts + opt.secondary_opts if s.startswith("--")]
            shorts = tuple(sorted(s for s in opt.opts if not s.startswith("--")))
            assert len(longs) >= 1, f"{name}: option {opt.name} has no long spelling"
            assert len(shorts) <= 1, f"{name}: {longs[0]} has short flags {shorts}"
            seen[longs[0]].add((opt.help, shorts))
    assert {"--target", "--data", "--limit", "--output", "--json", "--quiet"} <= set(seen)
    several = {flag: sorted(map(str, v)) for flag, v in seen.items() if len(v) > 1}
    assert not several, f"flags with more than one help text or short flag: {several}"


def test_no_short_flag_means_two_things(commands):
    meaning = defaultdict(set)
    for command in commands.values():
        for opt in _options(command):
            long = next(s for s in opt.opts if s.startswith("--"))
            for short in (s for s in opt.opts if not s.startswith("--")):
                meaning[short].add(long)
    assert {s: v for s, v in meaning.items() if len(v) > 1} == {}
    assert meaning["-p"] == {"--preprocess"} and meaning["-v"] == {"--verbose"}


def test_every_verb_has_verbose_quiet_and_json_path_where_it_writes(commands):
    for name, command in commands.items():
        flags = {s: opt for opt in _options(command) for s in opt.opts}
        assert {"-v", "--verbose", "-q", "--quiet"} <= set(flags), name
        if name in WRITES_A_RESULT:
            assert "--json" in flags, f"{name} writes a result but has no --json"
            json_opt = flags["--json"]
            assert not json_opt.is_flag and json_opt.metavar == "PATH", name
        else:
            assert "--json" not in flags, name


def test_json_dash_leaves_stdout_pure_json(capsys):
    assert main(["zoo", "list", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlakit.zoo" and any(m["name"] == "mnist-cnn" for m in doc["models"])


def test_json_path_is_written(tmp_path, capsys):
    path = tmp_path / "sub" / "data.json"
    assert main(["zoo", "data", "list", "--json", str(path)]) == 0
    assert f"JSON written to {path}" in capsys.readouterr().out
    assert json.loads(path.read_text())["schema"] == "dlakit.zoo.data"


def test_quiet_prints_nothing_and_verbose_adds_detail(capsys):
    assert main(["zoo", "list", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["zoo", "list", "-v"]) == 0
    from dlakit.zoo import get_entry

    assert get_entry("mnist-cnn").description in " ".join(capsys.readouterr().out.split())


def test_verbose_and_quiet_together_is_one_clear_error(capsys):
    assert main(["zoo", "list", "-v", "-q"]) == 2
    assert "--verbose and --quiet exclude each other" in capsys.readouterr().err


def test_the_cli_and_check_do_not_import_torch():
    code = (
        "import sys\n"
        "from dlakit.cli import main\n"
        "main(['check', '--help'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
