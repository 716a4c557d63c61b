"""Where dlakit finds shared material and keeps its cache.

Both are settings with defaults, read once per call so tests can point them elsewhere:

* ``DLAKIT_SHARED``: the folder with the official NVDLA traces and loadables (default ``../shared``
  relative to the current directory, as in a checkout beside an ``nvdla/hw`` tree).
* ``DLAKIT_CACHE``: downloaded wheels, exported models and data sets (default: the user cache dir).
"""

import os
from pathlib import Path

import platformdirs


def shared_dir() -> Path:
    return Path(os.environ.get("DLAKIT_SHARED", "../shared")).expanduser().resolve()


def cache_dir() -> Path:
    path = Path(os.environ.get("DLAKIT_CACHE") or platformdirs.user_cache_dir("dlakit"))
    path.mkdir(parents=True, exist_ok=True)
    return path
