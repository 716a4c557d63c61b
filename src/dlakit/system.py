"""The machine dlakit runs on: how much memory a run may plan to use.

Batched stages (the simulator, the integer reference, calibration) size their batches and
buffers by this, so a default never asks for more than the machine has.
"""

from __future__ import annotations

import os

# Share of the free memory one run plans to use.
MEMORY_SHARE = 0.5


def available_memory(device=None) -> int:
    """Bytes free on ``device`` (a torch device; None or CPU: host RAM)."""
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(device=None) -> int:
    """Bytes one run may plan to use on ``device``."""
    return int(available_memory(device) * MEMORY_SHARE)


def numba_thread_pool() -> None:
    """Run numba's parallel loops on its own thread pool (workqueue) rather than OpenMP: next to
    torch's OpenMP runtime, numba's OpenMP threads wait on each other, 10-20x slower on a 2-core
    machine (measured). Call before the first parallel loop; NUMBA_THREADING_LAYER wins."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
