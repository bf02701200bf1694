"""Training processes for the app server.

The server is one Python process, and a run trained in one of its threads holds the GIL most
of the time (the app's models are small: Python-bound), so every browser session's redraw waits
behind it; thirty students on one server then see a page that stalls. The trainings run
instead in ``n`` worker processes (``python -m mimmx.app.workers``, started once and kept, at
``os.nice(WORKER_NICE)`` so that the page comes first), one training at a time each, over a
local connection (``multiprocessing.connection``):

    server → worker:  task {"id", "cfg", "env" (the server's MIMMX_*), …}  |  ("stop", id)
    worker → server:  ("step", log) | ("eval", event) | ("live", epoch, pca records, parts, labels, s)
                      then ("done", record, checkpoint bytes, parts, labels) | ("stopped",) | ("error", msg)

The worker builds the store's record (evaluation, PCA embeddings, step means, and the trainer's
warnings, so that a model kept at chance says so on the page); the server stores it,
re-embedding the final parts with UMAP when UMAP is warm in its own process.
Workers are separate programs rather than ``multiprocessing.Process``es: a spawned Process
re-imports the parent's ``__main__``, which under Streamlit is the page script itself.
"""

from __future__ import annotations

import itertools
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing.connection import Client, Listener

from mimmx.errors import UserError

WORKER_NICE = 5  # the workers' niceness: a busy CPU serves the page's requests first
START_TIMEOUT = 120.0  # seconds a new worker may take to import torch and say it is ready
KEY_ENV_VAR = "MIMMX_WORKER_KEY"  # the connection's authentication key, handed to the worker


class TrainingFailed(UserError):
    """A training in a worker process failed: the message, already worded for the page, says
    why (the worker formats its own exception)."""


class WorkerDied(TrainingFailed):
    """The training process ended or never started."""


class Worker:
    """One training process and its connection."""

    _ids = itertools.count()

    def __init__(self):
        key = secrets.token_bytes(16)
        self._listener = Listener(authkey=key)
        env = {**os.environ, KEY_ENV_VAR: key.hex(),
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # mimmx, as imported here
        self.process = subprocess.Popen([sys.executable, "-m", "mimmx.app.workers",
                                         str(self._listener.address)],
                                        env=env, stdin=subprocess.DEVNULL)
        self.conn = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        with self._lock:
            if self.conn is not None:
                return
            accepted: list = []
            thread = threading.Thread(target=lambda: accepted.append(self._listener.accept()), daemon=True)
            thread.start()
            deadline = time.monotonic() + START_TIMEOUT
            while thread.is_alive() and time.monotonic() < deadline and self.process.poll() is None:
                thread.join(0.2)
            if not accepted:
                self.process.kill()
                raise WorkerDied(f"the training process did not start (exit code {self.process.poll()})")
            self.conn = accepted[0]
            self._listener.close()
            if self.conn.recv() != ("ready",):
                raise WorkerDied("the training process did not say it was ready")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def train(self, task: dict, on_event: Callable[[tuple], None], stop: threading.Event) -> tuple:
        """Send ``task``, hand every event to ``on_event`` and return the last message
        (``("done", …)`` or ``("stopped",)``); raises on ``("error", msg)`` or a dead worker."""
        self._connect()
        task = {**task, "id": next(self._ids)}
        self.conn.send(task)
        stop_sent = False
        while True:
            if stop.is_set() and not stop_sent:
                self.conn.send(("stop", task["id"]))
                stop_sent = True
            try:
                ready = self.conn.poll(0.2)
                msg = self.conn.recv() if ready else None
            except (EOFError, OSError):
                ready, msg = True, None
            if ready and msg is None or not ready and not self.alive:
                self.process.wait(5)
                raise WorkerDied(f"the training process ended unexpectedly (exit code "
                                 f"{self.process.poll()}); out of memory?")
            if msg is None:
                continue
            if msg[0] in ("done", "stopped"):
                return msg
            if msg[0] == "error":
                raise TrainingFailed(msg[1])
            on_event(msg)

    def close(self) -> None:
        try:
            if self.conn is not None:
                self.conn.send(None)
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


class Workers:
    """``n`` training processes, started together on first use (or ahead, by :meth:`start`);
    :meth:`acquire` lends an idle one, and replaces one that died."""

    def __init__(self, n: int):
        self.n = n
        self.members: list[Worker] = []  # every worker, idle or lent
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            while len(self.members) < self.n:
                self.members.append(Worker())
                self._idle.put(self.members[-1])

    def wait_ready(self) -> None:
        """Start the workers if need be and wait until every one has imported what it needs."""
        self.start()
        for worker in list(self.members):
            worker._connect()

    @contextmanager
    def acquire(self):
        self.start()
        worker = self._replaced_if_dead(self._idle.get())  # an idle one may have died too
        try:
            yield worker
        finally:
            self._idle.put(self._replaced_if_dead(worker))

    def _replaced_if_dead(self, worker: Worker) -> Worker:
        if worker.alive:
            return worker
        with self._lock:
            self.members[self.members.index(worker)] = fresh = Worker()
        return fresh

    def close(self) -> None:
        """End the idle workers (call when none is lent)."""
        with self._lock:
            while not self._idle.empty():
                self._idle.get().close()
            self.members = []


# ------------------------------------------------------------------ the worker's side

def serve(address: str) -> None:  # pragma: no cover - runs in the worker process
    """The worker's loop: import what a task needs, connect, then one task at a time until
    ``None``."""
    try:
        os.nice(WORKER_NICE)
    except (AttributeError, OSError):  # no nice on this platform: same priority as the page
        pass
    import torch

    import mimmx.app.session  # noqa: F401 - what a task needs, imported before saying ready
    import mimmx.evaluation  # noqa: F401
    from mimmx.device import THREADS_ENV_VAR

    try:
        conn = Client(address, authkey=bytes.fromhex(os.environ.pop(KEY_ENV_VAR)))
        conn.send(("ready",))
    except (OSError, EOFError):  # the server ended while this process was starting: nothing to do
        return
    while (task := _receive(conn)) is not None:
        if not isinstance(task, dict):  # a stop for a task that has ended
            continue
        _apply_env(task["env"])
        if not os.environ.get(THREADS_ENV_VAR):  # one thread per run, as many runs as cores
            torch.set_num_threads(1)
        try:
            conn.send(_train(task, conn))
        except Exception as err:  # noqa: BLE001 - reported to the page, which shows it
            msg = str(err) if isinstance(err, (UserError, ValueError)) else f"{type(err).__name__}: {err}"
            traceback.print_exc()
            conn.send(("error", msg))


def _receive(conn):
    """The next message; None when the server has gone (its end of the connection closed)."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _apply_env(env: dict[str, str]) -> None:
    """The server's MIMMX_* variables, as they are now (data, caches, device, threads)."""
    for k in [k for k in os.environ if k.startswith("MIMMX_") and k not in env]:
        del os.environ[k]
    os.environ.update(env)


_scenarios: dict[tuple, object] = {}  # the worker's built scenarios (the last few)


def _scenario(cfg):
    from mimmx.app.session import SCENARIO_CACHE, _scenario_key
    from mimmx.trainer import build_scenario

    key = (_scenario_key(cfg), os.environ.get("MIMMX_DATA"), os.environ.get("MIMMX_CACHE"))
    if key not in _scenarios:
        _scenarios[key] = build_scenario(cfg)  # the server built it first: read from the cache
        while len(_scenarios) > SCENARIO_CACHE:
            _scenarios.pop(next(iter(_scenarios)))
    return _scenarios[key]


def _train(task: dict, conn) -> tuple:
    import torch

    from mimmx.app import session
    from mimmx.config import RunConfig
    from mimmx.errors import RunWarning
    from mimmx.evaluation import embeddings_frame, evaluate_result
    from mimmx.evaluation.embeddings import subsample
    from mimmx.runs.folder import checkpoint_bytes, make_record, step_means
    from mimmx.trainer import train

    cfg = RunConfig.from_dict(task["cfg"])
    scenario = _scenario(cfg)
    balanced = scenario.splits["balanced"]
    idx = torch.from_numpy(subsample(len(balanced), session.LIVE_POINTS, cfg.seed))
    box, steps, stopped = {}, [], []

    def stop_asked() -> bool:
        while not stopped and conn.poll():
            msg = conn.recv()
            if msg == ("stop", task["id"]):
                stopped.append(msg)
        return bool(stopped)

    def callback(event: dict) -> bool:
        kind = event["type"]
        if kind == "start":
            box["model"] = event["model"]
        elif kind == "eval":
            ev = {k: v for k, v in event.items() if k != "type"}
            conn.send(("eval", ev))
            if "model" in box:  # the live embedding: PCA here, UMAP in the server when warm
                t0 = time.perf_counter()
                parts, labels = session.live_features(box["model"], balanced, idx)
                records = session._records(embeddings_frame(parts, labels, "pca"), "pca")
                conn.send(("live", ev["epoch"], records, parts, labels, time.perf_counter() - t0))
        elif kind == "step" and event.get("kind") == "encoder":
            ev = {k: v for k, v in event.items() if isinstance(v, (int, float))}
            steps.append(ev)
            conn.send(("step", ev))
        return stop_asked()

    with warnings.catch_warnings(record=True) as caught:  # one training in this process at a time
        warnings.simplefilter("always", RunWarning)
        result = train(cfg, scenario, [callback], eval_size=task["eval_size"])
    said = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
    if stop_asked():  # a stopped run is incomplete: shown, not stored
        return ("stopped",)
    t0 = time.perf_counter()
    report = evaluate_result(result, probes=("logreg",), mi=False, embedding=None)
    parts, labels = session.final_features(result)
    emb = session.embedding_records_of(parts, labels, "pca")
    record = make_record(result, report.to_dict(), task["eval_options"], time.perf_counter() - t0,
                         app_embeddings=emb, steps=step_means(steps), warnings=said)
    return ("done", record, checkpoint_bytes(result), parts, labels)


if __name__ == "__main__":  # pragma: no cover - started by Worker
    serve(sys.argv[1])
