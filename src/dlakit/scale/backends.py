"""Where shards run: in this process, on a local pool of worker processes, or as Ray tasks.

Every backend takes a job once (:meth:`start`), shards one at a time (:meth:`submit`, at most
``slots`` in flight) and hands back finished ones (:meth:`wait`) as :class:`Outcome` s: a result,
or the error that ended the shard (an exception's one line, or the death of the worker running
it). Retrying is the driver's (:mod:`dlakit.scale.execute`), the same for every backend.

The local pool keeps one pipe per worker and gives each worker one shard at a time, so a worker
that dies (killed, out of memory, a crash in native code) is known to have died on that shard; it
is replaced and the other workers carry on. Workers are spawned, not forked: a fork of a process
holding onnxruntime's or torch's thread pools can hang.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection, get_context
from typing import Any, Protocol

from dlakit.errors import DlakitError
from dlakit.extras import require
from dlakit.scale.job import Job, Result
from dlakit.scale.shards import Shard

# The driver's callback for a running shard: (shard, items of it done so far).
ShardProgress = Callable[[Shard, int], None]


@dataclass
class Outcome:
    shard: Shard
    result: Result | None
    error: str | None = None
    seconds: float = 0.0


class Backend(Protocol):
    name: str
    slots: int

    def start(self, job: Job) -> None: ...

    def submit(self, shard: Shard, payload: Any) -> None: ...

    def wait(self, progress: ShardProgress | None) -> list[Outcome]: ...

    def close(self) -> None: ...


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_one(job: Job, state: Any, shard: Shard, payload: Any, progress) -> tuple[Any, Outcome]:
    """Set up (once) and run one shard, turning an exception into the shard's error."""
    t0 = time.perf_counter()
    try:
        if state is None:
            state = job.setup()
        result = job.run(state, payload, progress)
    except Exception as exc:
        return state, Outcome(shard, None, _error_line(exc), time.perf_counter() - t0)
    return state, Outcome(shard, result, None, time.perf_counter() - t0)


# ---------------------------------------------------------------- in this process


class InProcess:
    """Shards one after another in this process (``--workers 1``): the same shards and merge as
    the pools, so results files and progress work the same."""

    name = "in-process"
    slots = 1

    def __init__(self) -> None:
        self._job: Job | None = None
        self._state: Any = None
        self._queue: deque[tuple[Shard, Any]] = deque()

    def start(self, job: Job) -> None:
        self._job, self._state = job, None

    def submit(self, shard: Shard, payload: Any) -> None:
        self._queue.append((shard, payload))

    def wait(self, progress: ShardProgress | None) -> list[Outcome]:
        assert self._job is not None
        shard, payload = self._queue.popleft()
        report = (lambda n: progress(shard, n)) if progress else None
        self._state, outcome = _run_one(self._job, self._state, shard, payload, report)
        return [outcome]

    def close(self) -> None:
        self._job, self._state = None, None
        self._queue.clear()


# ---------------------------------------------------------------- a local process pool


def _worker_main(conn: connection.Connection, job_bytes: bytes, threads: int) -> None:
    """A pool worker: the job once, then shards until the pipe closes."""
    # The driver handles Ctrl-C and stops the workers; threads are shared out between workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Before any library that reads them loads (torch, numba, BLAS): the job imports them.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    job: Job = pickle.loads(job_bytes)
    state: Any = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        shard, payload = message
        state, outcome = _run_one(job, state, shard, payload, lambda n: conn.send(("progress", n)))
        conn.send(("done", outcome.result, outcome.error, outcome.seconds))


@dataclass
class _Worker:
    process: Any
    conn: connection.Connection
    shard: Shard | None = None


class LocalPool:
    """``workers`` processes on this machine, each running one shard at a time."""

    name = "local pool"

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise DlakitError(f"--workers {workers}: must be at least 1")
        self.slots = workers
        self._context = get_context("spawn")
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._job_bytes = b""
        self._workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child, self._job_bytes, self._threads), daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def start(self, job: Job) -> None:
        self._job_bytes = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        self._workers = [self._spawn() for _ in range(self.slots)]

    def submit(self, shard: Shard, payload: Any) -> None:
        index = next(i for i, w in enumerate(self._workers) if w.shard is None)
        try:
            self._workers[index].conn.send((shard, payload))
        except OSError:  # the idle worker died (killed, out of memory): a new one takes it
            self._workers[index].process.join(timeout=5)
            self._workers[index].conn.close()
            self._workers[index] = self._spawn()
            self._workers[index].conn.send((shard, payload))
        self._workers[index].shard = shard

    def _died(self, index: int) -> Outcome:
        worker = self._workers[index]
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        worker.conn.close()
        assert worker.shard is not None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._workers[index] = self._spawn()
        return Outcome(worker.shard, None, f"the worker running it died ({how})")

    def wait(self, progress: ShardProgress | None) -> list[Outcome]:
        """The shards that ended; empty when only progress came in."""
        busy = {i: w for i, w in enumerate(self._workers) if w.shard is not None}
        waitables = {w.conn: i for i, w in busy.items()}
        waitables.update({w.process.sentinel: i for i, w in busy.items()})
        outcomes: list[Outcome] = []
        for ready in connection.wait(list(waitables)):
            index = waitables[ready]
            worker = self._workers[index]
            if worker.shard is None or worker is not busy.get(index):
                continue  # already handled through its pipe or its sentinel
            if ready is worker.process.sentinel and not worker.conn.poll():
                outcomes.append(self._died(index))
                continue
            try:
                while worker.conn.poll():
                    message = worker.conn.recv()
                    if message[0] == "progress":
                        if progress:
                            progress(worker.shard, message[1])
                        continue
                    _, result, error, seconds = message
                    outcomes.append(Outcome(worker.shard, result, error, seconds))
                    worker.shard = None
                    break
            except (EOFError, OSError):
                outcomes.append(self._died(index))
        return outcomes

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=2 if worker.shard is None else 0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []


# ---------------------------------------------------------------- Ray tasks

# Per Ray worker process: each job's state, built by its first shard there (Ray reuses workers).
_RAY_STATES: dict[str, Any] = {}


def _ray_shard(job: Job, token: str, shard: Shard, payload: Any) -> tuple[Result, float]:
    state, outcome = _run_one(job, _RAY_STATES.get(token), shard, payload, None)
    _RAY_STATES.clear()  # one job at a time per worker: drop the state of earlier jobs
    _RAY_STATES[token] = state
    if outcome.error is not None:
        raise _ShardError(outcome.error)
    assert outcome.result is not None
    return outcome.result, outcome.seconds


class _ShardError(Exception):
    """A shard's error, raised in a Ray task so the driver gets its one line back."""


# How long a cluster address may take to accept a connection: Ray itself retries for minutes.
CONNECT_SECONDS = 5.0


def _check_reachable(address: str) -> None:
    """Refuse, in one line, a cluster address (given, or RAY_ADDRESS under ``auto``) where
    nothing accepts a connection, before Ray would wait on it for minutes."""
    given = address if address != "auto" else os.environ.get("RAY_ADDRESS", "")
    if not given or given in ("auto", "local"):
        return
    hostport = given.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    flag = f"--ray {address}" + (f" (RAY_ADDRESS={given})" if address == "auto" else "")
    if not sep or not port.isdigit():
        raise DlakitError(f"{flag}: not HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise DlakitError(
            f"{flag}: no Ray cluster answers at {host}:{port} ({exc.strerror or exc})"
        ) from None


class RayBackend:
    """Shards as Ray tasks on a cluster: ``auto`` is Ray's own choice (the cluster RAY_ADDRESS
    names or a running local one, else a new local instance), anything else an address
    (``HOST:PORT`` of a head node, or ``ray://HOST:10001``). One CPU per task; ``slots`` tasks in
    flight (default: the cluster's CPUs). Ray's own retries are off: the driver retries, the same
    way for every backend."""

    name = "Ray"

    def __init__(self, address: str, slots: int | None = None) -> None:
        self._ray = check_ray(address)
        self._address = address
        self._asked = slots
        self.slots = slots or 1  # the cluster's CPUs, once connected
        self._started = False
        self._pending: dict[Any, Shard] = {}
        self._job_ref: Any = None
        self._token = ""

    def start(self, job: Job) -> None:
        """Connect (or start a local instance: part of the pass's time, as a pool's start-up
        is), then put the job in the object store once."""
        ray = self._ray
        if not ray.is_initialized():
            try:
                ray.init(
                    address=None if self._address == "auto" else self._address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level="ERROR",
                )
            except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError, ...
                raise DlakitError(
                    f"--ray {self._address}: cannot connect ({_error_line(exc)})"
                ) from None
            self._started = True
        self.slots = self._asked or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(num_cpus=1, max_retries=0, retry_exceptions=False)(_ray_shard)
        self._job_ref = ray.put(job)
        self._token = uuid.uuid4().hex

    def submit(self, shard: Shard, payload: Any) -> None:
        ref = self._task.remote(self._job_ref, self._token, shard, payload)
        self._pending[ref] = shard

    def wait(self, progress: ShardProgress | None) -> list[Outcome]:
        ray = self._ray
        done, _ = ray.wait(list(self._pending), num_returns=1)
        outcomes = []
        for ref in done:
            shard = self._pending.pop(ref)
            try:
                result, seconds = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                error = cause.args[0] if isinstance(cause, _ShardError) else _error_line(cause)
                outcomes.append(Outcome(shard, None, error))
            except ray.exceptions.WorkerCrashedError:
                outcomes.append(Outcome(shard, None, "the Ray worker running it died"))
            except ray.exceptions.RayError as exc:  # the node was lost, out of memory, ...
                outcomes.append(Outcome(shard, None, f"the Ray task failed ({type(exc).__name__})"))
            else:
                outcomes.append(Outcome(shard, result, None, seconds))
        return outcomes

    def close(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        self._job_ref = None
        if self._started:
            self._ray.shutdown()
            self._started = False


def check_ray(address: str) -> Any:
    """The ray module, with a cluster address that answers (unless Ray is already connected):
    before any work, each in one line."""
    ray = require("ray", "--ray")
    if not ray.is_initialized():
        _check_reachable(address)
    return ray


def make_backend(workers: int = 1, ray: str | None = None) -> Backend:
    """``--ray ADDRESS`` (``--workers``: tasks in flight), else ``--workers N`` processes, else
    this process."""
    if ray is not None:
        return RayBackend(ray, workers if workers > 1 else None)
    if workers > 1:
        return LocalPool(workers)
    if workers < 1:
        raise DlakitError(f"--workers {workers}: must be at least 1")
    return InProcess()
