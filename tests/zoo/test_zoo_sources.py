"""Pinned downloads: the hash check and the failure messages."""

import zipfile
from pathlib import Path

import pytest

from dlakit.errors import DlakitError
from dlakit.zoo import sources


@pytest.fixture
def fake_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sources.Pin:
    """A pin named 'demo' for a tiny wheel, with an empty cache."""
    monkeypatch.setenv("DLAKIT_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo/data/a.txt", "a")
        zf.writestr("demo/other.txt", "b")
    pin = sources.Pin("demo", "wheel", "1.0", wheel.name, sources.sha256_of(wheel))
    real = dict(sources.pins())
    monkeypatch.setattr(sources, "pins", lambda: {**real, "demo": pin})
    pin.path.parent.mkdir(parents=True)
    wheel.rename(pin.path)
    return pin


def test_verified_file_is_used_and_extracted_once(fake_pin: sources.Pin) -> None:
    assert sources.fetch("demo") == fake_pin.path
    root = sources.extract("demo", "demo/data/")
    assert (root / "demo/data/a.txt").read_text() == "a"
    assert not (root / "demo/other.txt").exists()
    assert sources.is_extracted("demo", "demo/data/")


def test_bad_hash_is_refused_and_deleted(fake_pin: sources.Pin) -> None:
    fake_pin.path.write_bytes(b"tampered")
    with pytest.raises(DlakitError, match=r"sha256 .* does not match the pinned .* demo==1\.0"):
        sources.fetch("demo")
    assert not fake_pin.path.exists()


def test_download_failure_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLAKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as good as no network, and instant
    with pytest.raises(
        DlakitError, match=r"could not download ccexam==1\.0\.0 from PyPI .* by hand"
    ):
        sources.fetch("ccexam")


def test_no_apt_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLAKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(sources.shutil, "which", lambda _: None)
    with pytest.raises(DlakitError, match=r"apt-get not found: .*opencv-doc=4.6.0"):
        sources.fetch("opencv-doc")


def test_unknown_pin() -> None:
    with pytest.raises(DlakitError, match="no pinned package named 'nope'"):
        sources.pin("nope")
