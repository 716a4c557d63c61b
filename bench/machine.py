"""What every benchmark states about the machine it ran on (imported by the bench scripts)."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def loadavg() -> str:
    with open("/proc/loadavg") as avg:
        return " ".join(avg.read().split()[:3])
