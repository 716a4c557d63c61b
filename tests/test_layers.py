"""Imports point down the pipeline: a stage imports only itself and the stages below it.

The order is the README's layout. Stages on one line are peers and must not import each other.
Every import of a dlakit module counts, at module level or inside a function.
"""

import ast
from pathlib import Path

import dlakit

PIPELINE = [
    {"errors", "paths", "extras", "files", "system", "__init__"},
    {"graph"},
    {"targets", "hw"},
    {"zoo"},
    {"data"},
    {"rewrite", "support"},
    {"partition"},
    {"quant"},
    {"lower"},
    {"sim", "nvdla"},
    {"run", "loadable"},
    {"accuracy"},
    {"perf"},
    {"plan"},
    {"scale"},
    {"report"},
    {"cli"},
    {"__main__"},
]
ROOT = Path(dlakit.__file__).parent


def _stage(module: str) -> str:
    """``dlakit.lower.lint`` -> ``lower``; ``dlakit`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(stage: str) -> int:
    for level, stages in enumerate(PIPELINE):
        if stage in stages:
            return level
    raise AssertionError(f"stage {stage!r} is not in the pipeline order of tests/test_layers.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlakit"):
            found.append((node.lineno, node.module))
            if node.module == "dlakit":  # `from dlakit import zoo` names a stage
                found += [
                    (node.lineno, f"dlakit.{a.name}")
                    for a in node.names
                    if (ROOT / a.name).is_dir() or (ROOT / f"{a.name}.py").is_file()
                ]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dlakit")]
    return found


def test_every_stage_is_in_the_order():
    for path in ROOT.iterdir():
        if path.name.startswith("_") and path.suffix == ".py":
            continue
        if (path.is_dir() and (path / "__init__.py").is_file()) or path.suffix == ".py":
            _level(path.stem if path.suffix == ".py" else path.name)


def test_imports_point_down_the_pipeline():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        own = _stage(".".join(rel.parts))
        for line, module in _imports(path):
            other = _stage(module)
            if other == own or other in ("errors", "paths", "extras", "system"):
                continue
            if other == "__init__" and module == "dlakit":
                continue  # the package version
            if _level(other) >= _level(own):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {module} ({other})")
    assert not wrong, "imports against the pipeline:\n" + "\n".join(wrong)
