"""The machine dlakit runs on: how much memory a run may plan to use.

Batched stages (the simulator, the integer reference, calibration) size their batches and
buffers by this, so a default never asks for more than the machine has.
"""

from __future__ import annotations

import os

# Share of the free memory one run plans to use.
MEMORY_SHARE = 0.5


def _proc_bytes(path: str, key: str) -> int | None:
    """A ``key:  N kB`` line of a Linux /proc file, in bytes; None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory(device=None) -> int:
    """Bytes free on ``device`` (a torch device; None or CPU: host RAM)."""
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    free = _proc_bytes("/proc/meminfo", "MemAvailable")
    if free is not None:
        return free
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(device=None) -> int:
    """Bytes one run may plan to use on ``device``."""
    return int(available_memory(device) * MEMORY_SHARE)


def peak_resident() -> int:
    """This process's peak resident memory in bytes since it started (Linux ``VmHWM``).

    Not ``getrusage``'s ``ru_maxrss``: Linux carries that across ``fork`` and ``exec``, so a
    child started by a large process reports its parent's peak (a bench child measured 3.99 GiB
    where it used 0.55)."""
    peak = _proc_bytes("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def numba_thread_pool() -> None:
    """Run numba's parallel loops on its own thread pool (workqueue) rather than OpenMP: next to
    torch's OpenMP runtime, numba's OpenMP threads wait on each other, 10-20x slower on a 2-core
    machine (measured). Call before the first parallel loop; NUMBA_THREADING_LAYER wins."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


# glibc's malloc raises its mmap threshold to the size of each large block freed (up to 32 MiB),
# after which blocks of a few MiB, a batch's activation maps, come from the heap, which
# fragments and never shrinks: a ResNet-50 nv_small batch of 8 peaked 2.6 GiB instead of 1.3
# (measured). A fixed threshold gives such blocks back on free.
MMAP_THRESHOLD = 4 << 20
_M_MMAP_THRESHOLD = -3  # glibc malloc.h


def bound_host_heap() -> None:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process (not elsewhere, nor
    where MALLOC_MMAP_THRESHOLD_ already sets it)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


_INT8_MATMUL_EXACT: list[bool] = []


def int8_matmul_exact() -> bool:
    """Whether this machine's ``torch._int_mm`` (CPU) gives exact int32 sums, probed once. A
    kernel that shifts one side to UINT8 and sums products in 16-bit saturating pairs
    (``vpmaddubsw``, CPUs without VNNI) clips pairs of 255 * -128; the probe holds such pairs,
    every sign, and random values. The integer reference and the simulator use INT8 matrix
    products only where it holds."""
    if not _INT8_MATMUL_EXACT:
        import torch

        generator = torch.Generator().manual_seed(0)
        a = torch.randint(-128, 128, (64, 96), dtype=torch.int8, generator=generator)
        b = torch.randint(-128, 128, (96, 24), dtype=torch.int8, generator=generator)
        a[:16], b[:, :4] = 127, -128
        a[16:32], b[:, 4:8] = -128, -128
        a[32:40], b[:, 8:12] = 127, 127
        try:
            got = torch._int_mm(a, b)
            _INT8_MATMUL_EXACT.append(torch.equal(got.to(torch.int64), a.long() @ b.long()))
        except (AttributeError, RuntimeError):
            _INT8_MATMUL_EXACT.append(False)
    return _INT8_MATMUL_EXACT[0]
