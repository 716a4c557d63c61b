"""Written loadables against the ``.dla`` path on the zoo models: byte-equal per DLA segment.

For every model and target: max calibration on one input (a real image where the zoo names a
data set, else normal noise), ``compile_model(via_firmware=True)`` (what ``dlakit compile
--format loadable`` compiles), then ``tests/loadable/loadable_cases.compare_with_dla``: the
``.dla`` written, read back and run on the simulator, each DLA segment's loadable serialized,
read back and run by dlakit's loadable runner (runtime + KMD firmware model) on the ``.dla``
path's values of that segment's inputs; every output byte compared. Prints a Markdown table.

Usage: PYTHONPATH=src .venv/bin/python bench/loadable_zoo.py [--models a,b] [--targets nv_full]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "loadable"))

from loadable_cases import compare_with_dla, zoo_compiled

from dlakit.errors import DlakitError

MODELS = ["mnist-cnn", "fmnist-cnn", "mobilenetv2", "efficientnet-lite0", "resnet18", "resnet50"]


def row(name: str, target: str) -> str:
    try:
        comp, x = zoo_compiled(name, target)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            results = compare_with_dla(comp, x, Path(tmp))
        seconds = time.perf_counter() - t0
    except DlakitError as exc:
        return f"| {name} | {target} | - | - | - | - | - | not written: {exc} |"
    equal = sum(r.bytes_differing == 0 for r in results)
    ops = sum(r.operations for r in results)
    size = sum(r.loadable_bytes for r in results) / 2**20
    compared = sum(r.bytes_compared for r in results)
    differing = sum(r.bytes_differing for r in results)
    loadable_s = sum(r.seconds for r in results)
    return (
        f"| {name} | {target} | {equal}/{len(results)} | {ops} | {size:.2f} | {compared:,} | "
        f"{differing} | {loadable_s:.1f} s loadable runs, {seconds:.1f} s in all |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default="nv_full,nv_small")
    args = ap.parse_args()
    print("| model | target | segments byte-equal | firmware ops | loadables MiB | output "
          "bytes compared | differing | time |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        for name in args.models.split(","):
            print(row(name, target), flush=True)


if __name__ == "__main__":
    main()
