"""The ``shared`` fixture: a missing ../shared skips its tests on a developer's machine and fails
them under CI, so the ground-truth tests cannot vanish from a CI run."""

import pytest

from shared_material import shared_folder


@pytest.fixture
def shared_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DLAKIT_SHARED", str(tmp_path / "absent"))
    return tmp_path / "absent"


def test_skips_with_a_note_outside_ci(shared_missing, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=f"shared material not found at {shared_missing}"
    ):
        shared_folder()


@pytest.mark.parametrize("ci", ["true", "1"])  # what CI sets, what .ci/run sets by hand
def test_fails_under_ci(shared_missing, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        shared_folder()


def test_a_present_folder_is_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("DLAKIT_SHARED", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    assert shared_folder() == tmp_path.resolve()
