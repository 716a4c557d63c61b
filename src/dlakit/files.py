"""Writing output files without ever losing data.

Every file a verb writes goes through :func:`atomic_write`: the bytes go to a temporary file in
the destination's folder, which then replaces the destination in one ``os.replace``. A failure
half way (a full disk, an exception in the writer, Ctrl-C) leaves an existing file as it was, and
the replace breaks a hard link instead of writing through it.

:func:`check_not_input` runs before any work: an output that is one of the verb's inputs — by
path, through a symlink or as a hard link (same device and inode) — is refused, as are two
outputs at one path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from dlakit.errors import DlakitError

# A writer gets an open binary file (in the destination's folder) to write the output into.
Writer = Callable[[BinaryIO], None]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_not_input(
    outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None]
) -> None:
    """Refuse an output (``{flag: path}``) that is an input file, lies inside an input folder,
    or is the path of another output. ``-`` (stdout) and None are no files."""
    given = [Path(p) for p in inputs if p is not None and str(p) != "-"]
    seen: dict[Path, str] = {}
    for flag, value in outputs.items():
        if value is None or str(value) == "-":
            continue
        out = Path(value)
        _check_writable_place(out, flag)
        for inp in given:
            if inp.is_dir():
                if out.exists() and not out.is_dir() and _inside(out, inp):
                    raise DlakitError(
                        f"{flag} {out} is inside the input folder {inp}; write it elsewhere"
                    )
            elif out.exists() and _same_file(out, inp):
                how = "is" if out.resolve() == inp.resolve() else "is a link to"
                raise DlakitError(f"{flag} {out} {how} the input {inp}; refusing to overwrite it")
        key = Path(os.path.abspath(out))
        for other, other_flag in seen.items():
            if key == other or (out.exists() and _same_file(out, other)):
                raise DlakitError(f"{flag} {out} and {other_flag} name the same file")
        seen[key] = flag


def _check_writable_place(out: Path, flag: str) -> None:
    """The nearest existing folder above ``out`` must be a folder, not a file."""
    if out.is_dir():
        raise DlakitError(f"{flag} {out} is a folder; name a file")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DlakitError(f"{flag} {out}: {parent} is a file, not a folder")
            return


def _prepare_folder(path: Path) -> Path:
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise DlakitError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DlakitError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    return folder


def _mode_for(path: Path) -> int:
    """An existing file keeps its permissions; a new one gets the umask's default."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# The earliest time a zip entry can hold: zip outputs (.npz) carry it instead of the clock's.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def npz_writer(arrays: Mapping[str, object]) -> Writer:
    """A writer of ``arrays`` as an ``.npz`` (what ``np.savez`` writes) whose bytes depend only
    on the arrays: fixed entry times and modes, entries in the given order."""

    def write(file: BinaryIO) -> None:
        import zipfile

        import numpy as np

        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as z:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
                info.external_attr = 0o644 << 16
                with z.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    return write


def atomic_write(path: str | Path, data: bytes | str | Writer) -> Path:
    """Write ``data`` (bytes, text, or a writer given the open file) to ``path`` atomically."""
    path = Path(path)
    if path.is_symlink():  # write where the link points, as a plain write would
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise DlakitError(f"cannot write {path}: it is a folder")
    folder = _prepare_folder(path)
    try:
        handle, tmp_name = tempfile.mkstemp(
            dir=folder, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
        )
    except OSError as exc:
        raise DlakitError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as file:
            if isinstance(data, str):
                file.write(data.encode())
            elif isinstance(data, bytes | bytearray | memoryview):
                file.write(data)
            else:
                data(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DlakitError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path
