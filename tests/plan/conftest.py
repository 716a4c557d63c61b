"""Zoo models for the planner tests, loaded once per session; names the zoo does not know yet
(the issue's new architectures, added by another change) skip with a note."""

from __future__ import annotations

import pytest

from dlakit.graph import LoadedModel, load_model


def zoo_model(name: str) -> LoadedModel:
    from dlakit.zoo.arch import ARCHS, export_onnx

    if name in ARCHS:
        return load_model(export_onnx(name))
    from dlakit import zoo

    try:
        entry = zoo.get_entry(name)
    except Exception:
        pytest.skip(f"zoo model '{name}' does not exist yet (issue 10 item 7, pending)")
    return load_model(zoo.resolve_model(name), {"": tuple(entry.input_shape)})


@pytest.fixture(scope="session")
def load_zoo():
    cache: dict[str, LoadedModel] = {}

    def get(name: str) -> LoadedModel:
        if name not in cache:
            cache[name] = zoo_model(name)
        return cache[name]

    return get
