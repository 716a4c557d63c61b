"""The official KMD regression tests, run as their test plans do (``data/regression.toml``).

Under ROOT (laid out as nvdla/sw ``regression``): ``flatbufs/kmd/<UNIT>/<name>_fbuf`` and
``golden/<name>_<guid>/dla/lead.md5`` (or ``gold.md5``). Each test runs its loadable on its
plan's hardware configuration with no input (as ``dla_client.py`` sends none), writes
``OUT/<golden folder>/o_000000.dimg`` and compares its md5 with the golden list. A test whose
loadable or golden is absent is skipped with the reason; it is not a pass.
"""

from __future__ import annotations

import hashlib
import time
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from dlakit.errors import DlakitError
from dlakit.loadable.dimg import from_buffer
from dlakit.loadable.execute import run_loadable
from dlakit.loadable.reader import read_loadable


@dataclass(frozen=True)
class Case:
    name: str
    target: str
    what: str
    loadable: Path | None
    golden: Path | None  # the golden folder (``<name>_<guid>``)
    in_plan: bool = True


@dataclass
class CaseResult:
    case: Case
    status: str  # passed, failed, skipped
    outputs: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.case.name


@cache
def test_plan() -> dict[str, Any]:
    path = resources.files("dlakit.loadable") / "data" / "regression.toml"
    return tomllib.loads(path.read_text())


def _target_of(name: str) -> str:
    plan = test_plan()
    entry = plan["tests"].get(name)
    if entry is not None:
        return str(plan["plans"][entry["plan"]])
    # A loadable the plans do not list: its suffix names the configuration as theirs do.
    return "nv_small" if name.endswith("_small") else "nv_large" if "_large" in name else "nv_full"


def find_cases(root: Path) -> list[Case]:
    flat = root / "flatbufs" / "kmd"
    golden = root / "golden"
    if not root.is_dir():
        raise DlakitError(f"regression folder {root} does not exist")
    if not flat.is_dir() or not golden.is_dir():
        raise DlakitError(
            f"{root}: not a regression folder (needs flatbufs/kmd/ and golden/, as nvdla/sw "
            "regression/ has)"
        )
    loadables = {p.name.removesuffix("_fbuf"): p for p in sorted(flat.glob("*/*_fbuf"))}
    goldens: dict[str, Path] = {}
    for d in sorted(p for p in golden.iterdir() if p.is_dir()):
        name = d.name.rsplit("_", 1)[0]
        if name in goldens:
            raise DlakitError(
                f"{golden}: two golden folders for {name}: {goldens[name].name}, {d.name}"
            )
        goldens[name] = d
    plan = test_plan()["tests"]
    names = sorted(set(plan) | set(loadables) | set(goldens))
    return [
        Case(
            name=n,
            target=_target_of(n),
            what=str(plan.get(n, {}).get("what", "")),
            loadable=loadables.get(n),
            golden=goldens.get(n),
            in_plan=n in plan,
        )
        for n in names
    ]


def golden_md5(folder: Path) -> list[tuple[str, str]]:
    """(md5, file name) lines of ``dla/lead.md5`` (or ``gold.md5``)."""
    for name in ("lead.md5", "gold.md5"):
        path = folder / "dla" / name
        if path.is_file():
            rows = []
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or len(parts[0]) != 32:
                    raise DlakitError(f"{path}:{number}: not an 'md5  file' line: {line!r}")
                rows.append((parts[0].lower(), parts[1]))
            return rows
    raise DlakitError(f"{folder}: no dla/lead.md5 or dla/gold.md5")


def run_case(case: Case, out_dir: Path, device: str | None = "cpu") -> CaseResult:
    if case.loadable is None:
        return CaseResult(case, "skipped", reason="no loadable in flatbufs/kmd")
    if case.golden is None:
        return CaseResult(case, "skipped", reason="no golden folder")
    start = time.perf_counter()
    try:
        expected = golden_md5(case.golden)
        run = run_loadable(read_loadable(case.loadable), case.target, None, device)
        data = from_buffer(run.output_tensor, run.output).to_bytes()
    except DlakitError as exc:
        return CaseResult(case, "failed", reason=str(exc), seconds=time.perf_counter() - start)
    folder = out_dir / case.golden.name
    folder.mkdir(parents=True, exist_ok=True)
    produced = {"o_000000.dimg": data}
    outputs = []
    for md5, fname in expected:
        got = hashlib.md5(produced[fname]).hexdigest() if fname in produced else None
        if fname in produced:
            (folder / fname).write_bytes(produced[fname])
        outputs.append(
            {
                "file": fname,
                "expected": md5,
                "computed": got,
                "ok": got == md5,
                "path": str(folder / fname) if got else None,
            }
        )
    ok = bool(outputs) and all(o["ok"] for o in outputs)
    reason = "" if ok else "md5 mismatch" if outputs else "the golden list is empty"
    return CaseResult(
        case, "passed" if ok else "failed", outputs, reason, time.perf_counter() - start
    )
