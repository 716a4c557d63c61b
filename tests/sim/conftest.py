"""Every simulator test runs twice: on the unit models (the definition) and through the replay
layer's decoder and fast path (``dlakit.sim.replay.immediate``), which must agree bit for bit."""

import pytest

from dlakit.sim import replay
from dlakit.sim.nvdla import Nvdla


@pytest.fixture(params=["definition", "replay"], autouse=True)
def sim_engine(request, monkeypatch):
    if request.param == "replay":
        original = Nvdla.__init__

        def init(self, *args, **kwargs):
            if kwargs.get("engine") is None:
                kwargs["engine"] = replay.immediate
            original(self, *args, **kwargs)

        monkeypatch.setattr(Nvdla, "__init__", init)
    return request.param
