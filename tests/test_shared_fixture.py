"""The ``shared`` fixture: a missing ../shared skips its tests on a developer's machine and fails
them under CI, so the ground-truth tests cannot vanish from a CI run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dlakit

CONFTEST = Path(__file__).with_name("conftest.py")


def _pytest_with_shared_missing(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_needs_shared.py").write_text("def test_trace(shared):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(
        DLAKIT_SHARED=str(tmp_path / "absent"), PYTHONPATH=str(Path(dlakit.__file__).parents[1])
    )
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_skips_with_a_note_outside_ci(tmp_path):
    proc = _pytest_with_shared_missing(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout
    assert f"shared material not found at {tmp_path / 'absent'}" in proc.stdout


def test_fails_under_ci(tmp_path):
    proc = _pytest_with_shared_missing(tmp_path, "true")  # what CI sets
    assert proc.returncode == 1, proc.stdout
    assert "1 error" in proc.stdout  # the fixture fails the test's setup
    assert "CI is set" in proc.stdout
