"""Render loadables (``dlakit loadable``): the lists a loadable holds, a run, a regression run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from dlakit import __version__
from dlakit.report.console import Output

if TYPE_CHECKING:
    from dlakit.loadable.dimg import DlaImage
    from dlakit.loadable.execute import LoadableRun
    from dlakit.loadable.network import DlaNetwork
    from dlakit.loadable.package import WrittenLoadables
    from dlakit.loadable.reader import Loadable
    from dlakit.loadable.regression import CaseResult

SCHEMA = "dlakit.loadable"
SCHEMA_VERSION = 1
_INTERFACES = {0: "NONE", 1: "DLA1", 2: "EMU1"}
_FLAGS = ((1, "ALLOC"), (2, "SET"), (4, "INPUT"), (8, "OUTPUT"))
_TYPES = {0: "?", 1: "FLOAT", 2: "HALF", 3: "INT16", 4: "INT8"}


def _flags(value: int) -> str:
    return "|".join(name for bit, name in _FLAGS if value & bit) or "NONE"


def _version(v: tuple[int, int, int]) -> str:
    return ".".join(map(str, v))


def render_inspect(ld: Loadable, networks: list[DlaNetwork], out: Output) -> None:
    out.line(f"{ld.path}: loadable {_version(ld.version)}")
    tasks = Table(
        "task", "interface", "addresses", "pre", "post", title="tasks", title_justify="left"
    )
    for t in ld.tasks:
        tasks.add_row(
            str(t.id),
            _INTERFACES.get(t.interface, str(t.interface)),
            str(len(t.address_list)),
            ",".join(map(str, t.pre_actions)) or "-",
            ",".join(map(str, t.post_actions)) or "-",
        )
    out.print(tasks)
    out.line("submit list: " + "; ".join(",".join(map(str, s.task_ids)) for s in ld.submits))
    mem = Table("mem", "flags", "bytes", "align", "contents", title="memory", title_justify="left")
    for m in ld.memory:
        what = ",".join(c for c in m.contents if c) or (f"bind {m.bind_id}" if m.bindable else "-")
        mem.add_row(str(m.id), _flags(m.flags), str(m.size), str(m.alignment), what)
    out.print(mem)
    tensors = Table(
        "tensor", "mem", "type", "NCHW", "strides", title="tensors", title_justify="left"
    )
    for t in ld.tensors:
        tensors.add_row(
            t.name,
            str(t.mem_id),
            _TYPES.get(t.data_type, str(t.data_type)),
            f"{t.n}x{t.c}x{t.h}x{t.w}",
            ",".join(map(str, t.strides[:3])),
        )
    out.print(tensors)
    blobs = Table("blob", "bytes", "interface", "version", title="blobs", title_justify="left")
    for b in ld.blobs:
        blobs.add_row(b.name, str(b.size), _INTERFACES.get(b.interface, "?"), _version(b.version))
    out.print(blobs)
    out.line(
        f"{len(ld.addresses)} addresses, {len(ld.events)} events, {len(ld.relocs)} relocations"
    )
    for net in networks:
        out.line(
            f"DLA task {net.task_id}: {len(net.operations)} operations, {net.luts} LUTs "
            f"(firmware interface {_version(net.version)})"
        )
        if out.verbose:
            ops = Table("op", "unit", "deps", "consumers", "precision", title_justify="left")
            for op in net.operations:
                consumers = [
                    f"{c.index}@{c.event}" for c in op.dependency.consumers if int(c.index) != -1
                ]
                ops.add_row(
                    str(op.index),
                    op.op_type,
                    str(op.dependency.dependency_count),
                    " ".join(consumers) or "-",
                    _precision(op.op),
                )
            out.print(ops)


def _precision(op: Any) -> str:
    names = ("INT8", "INT16", "FP16")
    for key in ("in_precision", "src_precision", "precision"):
        if key in op:
            v = int(op[key])
            return names[v] if v < 3 else str(v)
    return "-"


def inspect_json(ld: Loadable, networks: list[DlaNetwork]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "dlakit_version": __version__,
        "loadable": ld.to_json(),
        "dla_networks": [
            {
                "task_id": n.task_id,
                "firmware_interface": _version(n.version),
                "network": n.network.to_json(),
                "operations": [
                    {
                        "index": op.index,
                        "unit": op.op_type,
                        "dependency": op.dependency.to_json(),
                        "op": op.op.to_json(),
                        "surface": op.surface.to_json(),
                    }
                    for op in n.operations
                ],
            }
            for n in networks
        ],
    }


def render_run(run: LoadableRun, image: DlaImage, output: str, out: Output) -> None:
    for task in run.tasks:
        out.line(
            f"task {task.task_id} ({task.interface}): {task.operations} operations, "
            f"{task.seconds:.2f} s"
        )
        if out.verbose and task.programmed:
            out.line("  programmed: " + ", ".join(task.programmed))
    out.line(
        f"{run.output_tensor.name}: {image.channel}x{image.height}x{image.width} "
        f"{image.format_name} -> {output} ({run.seconds:.2f} s)"
    )


def run_json(run: LoadableRun, image: DlaImage, output: str, md5: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA + ".run",
        "schema_version": SCHEMA_VERSION,
        "dlakit_version": __version__,
        "output": output,
        "md5": md5,
        "tensor": run.output_tensor.name,
        "format": image.format_name,
        "shape": [image.channel, image.height, image.width],
        "seconds": run.seconds,
        "tasks": [
            {
                "task": t.task_id,
                "interface": t.interface,
                "operations": t.operations,
                "seconds": t.seconds,
                "programmed": t.programmed,
            }
            for t in run.tasks
        ],
    }


def render_case(result: CaseResult, out: Output) -> None:
    case = result.case
    golden = case.golden.name if case.golden else case.name
    style = {"passed": "green", "failed": "red", "skipped": "yellow"}[result.status]
    line = Text(f"{golden} ({case.target}): ") + Text(result.status.upper(), style=style)
    for o in result.outputs:
        if out.verbose or not o["ok"]:
            line.append(f" {o['file']} expected {o['expected']} computed {o['computed'] or '-'}")
    if result.reason and result.status != "passed":
        line.append(f" {result.reason}")
    if out.verbose:
        line.append(f" ({result.seconds:.2f} s)")
    out.console.print(line, soft_wrap=True)


def summary_line(results: list[CaseResult]) -> str:
    count = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped")}
    text = f"{count['passed']} passed, {count['failed']} failed"
    return text + (f", {count['skipped']} skipped" if count["skipped"] else "")


def test_json(results: list[CaseResult], root: str, out_dir: str | None) -> dict[str, Any]:
    """``out`` and each output's ``path`` are null when the outputs went to a temporary folder."""
    return {
        "schema": SCHEMA + ".test",
        "schema_version": SCHEMA_VERSION,
        "dlakit_version": __version__,
        "root": root,
        "out": out_dir,
        "passed": sum(r.status == "passed" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "tests": [
            {
                "name": r.case.name,
                "golden": r.case.golden.name if r.case.golden else None,
                "loadable": str(r.case.loadable) if r.case.loadable else None,
                "target": r.case.target,
                "in_test_plan": r.case.in_plan,
                "status": r.status,
                "reason": r.reason,
                "seconds": r.seconds,
                "outputs": r.outputs
                if out_dir is not None
                else [{**o, "path": None} for o in r.outputs],
            }
            for r in results
        ],
    }


# --- compile --format loadable ------------------------------------------------------------------


def render_loadables(written: WrittenLoadables, out: Output) -> None:
    """One line per segment file: what runs on nvdla_runtime and what on the host."""
    where = f"{written.path}/" if written.folder else ""
    by_file = dict(zip([f for f in written.files if f.endswith(".nvdla") or not written.folder],
                       written.loadables, strict=False))  # fmt: skip
    for file in written.files:
        sl = by_file.get(file)
        if sl is None:
            out.line(f"{where}{file}: host (fallback) ONNX")
            continue
        binds = ", ".join(f"in{b.bind_id} {b.tensor}" for b in sl.inputs)
        binds += "; " + ", ".join(f"out{b.bind_id} {b.tensor}" for b in sl.outputs)
        out.line(
            f"{where}{file}: loadable of segment {sl.segment}, {len(sl.operations)} firmware "
            f"operations, {len(sl.data):,} bytes ({binds})"
        )
        if out.verbose:
            for op in sl.operations:
                out.line(f"  {op}")


def loadables_json(written: WrittenLoadables) -> dict[str, Any]:
    return {
        "path": str(written.path),
        "folder": written.folder,
        "files": written.files,
        "segments": [
            {
                "segment": sl.segment,
                "bytes": len(sl.data),
                "operations": len(sl.operations),
                "inputs": [b.tensor for b in sl.inputs],
                "outputs": [b.tensor for b in sl.outputs],
            }
            for sl in written.loadables
        ],
    }
