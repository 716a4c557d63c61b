"""Sharding: a job's inputs cut into shards, run in-process, on a local process pool or as Ray
tasks, merged back in input order (byte for byte what one process gives), with bounded retries
and a results file to resume from.

* :mod:`shards`: :class:`Shard` and :func:`plan_shards`;
* :mod:`job`: what a job gives the layer (:class:`Job`) and the accuracy, run and sweep jobs;
* :mod:`backends`: :class:`InProcess`, :class:`LocalPool`, :class:`RayBackend`;
* :mod:`results`: :class:`ResultsFile`, the ``--resume`` file;
* :mod:`execute`: :func:`run_shards`, the driver.
"""

from dlakit.scale.backends import Backend, InProcess, LocalPool, RayBackend, make_backend
from dlakit.scale.execute import ShardRun, merge_arrays, run_shards
from dlakit.scale.results import ResultsFile
from dlakit.scale.shards import Shard, plan_shards

__all__ = [
    "Backend",
    "InProcess",
    "LocalPool",
    "RayBackend",
    "ResultsFile",
    "Shard",
    "ShardRun",
    "make_backend",
    "merge_arrays",
    "plan_shards",
    "run_shards",
]
