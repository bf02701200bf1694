"""Jobs and their backends: train a (config, seed) once, keep its record in the store.

A *job* is one :class:`~mimmx.config.RunConfig` (the seed is part of it): train it, evaluate
it (:func:`mimmx.evaluation.report.evaluate_result`, with the fixed :data:`EVAL_OPTIONS`) and
return its record (:func:`mimmx.runs.folder.make_record`) and checkpoint. :func:`run_job` is
that job, the same function for every backend:

- ``local``: in this process, one after another;
- ``pool``: a ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes (spawned,
  not forked), each with ``max(1, cores // workers)`` torch threads;
- ``ray``: one Ray task per job, on the cluster at ``address`` or on a local Ray instance
  started for the purpose (``pip install 'mimmx[ray]'``; every node needs mimmx and the data).

The backend only decides where :func:`run_job` runs; the driver writes every record into the
:class:`~mimmx.runs.store.ResultStore` as it finishes, so the records do not depend on it (up
to floating-point differences between thread counts or hardware: the tests pin the threads).
A job that fails is reported by name once the others have finished and been stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from mimmx.config import RunConfig
from mimmx.errors import UserError
from mimmx.runs.store import ResultStore

# how every stored run is evaluated; fixed so that all records of the store compare
EVAL_OPTIONS = {"probes": ("logreg", "knn"), "k": 30, "mi": True, "mi_steps": 300, "embedding": None}
BACKENDS = ("local", "pool", "ray")

Progress = Callable[[dict, bool], None]  # (record, reused) after each configuration


# --------------------------------------------------------------------------------- the job


def run_job(config: dict, threads: int | None = None, eval_options: dict | None = None) -> dict:
    """Train and evaluate one configuration (a ``RunConfig.to_dict()``); return
    ``{"record": ..., "checkpoint": bytes}``. Runs in whichever process the backend chose;
    ``threads`` sets torch's thread count there (None: leave it); ``eval_options`` go to
    ``evaluate_result`` (default :data:`EVAL_OPTIONS`)."""
    import torch

    from mimmx.evaluation.report import evaluate_result
    from mimmx.runs.folder import checkpoint_bytes, make_record, step_means
    from mimmx.trainer import train

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(config)
    steps: list[dict] = []

    def log(ev: dict) -> None:
        if ev["type"] == "step" and ev.get("kind") == "encoder":
            steps.append({k: v for k, v in ev.items() if isinstance(v, (int, float))})

    result = train(cfg, callbacks=[log])
    t0 = time.perf_counter()
    options = eval_options_of(eval_options)
    report = evaluate_result(result, **options)
    record = make_record(result, report.to_dict(), options, time.perf_counter() - t0,
                         steps=step_means(steps))
    return {"record": record, "checkpoint": checkpoint_bytes(result)}


def eval_options_of(options: dict | None = None) -> dict:
    """:data:`EVAL_OPTIONS` updated with ``options``, JSON-shaped (lists, not tuples), so that
    it compares equal to the ``eval_options`` of a stored record."""
    unknown = sorted(set(options or {}) - set(EVAL_OPTIONS))
    if unknown:
        raise UserError(f"unknown evaluation option(s) {unknown}; known: {sorted(EVAL_OPTIONS)}")
    merged = {**EVAL_OPTIONS, **(options or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def run_many(cfgs: Sequence[RunConfig], store: ResultStore | None = None, *,
             backend: str = "local", workers: int | None = None, address: str | None = None,
             threads: int | None = None, eval_options: dict | None = None,
             progress: Progress | None = None) -> list[dict]:
    """Records of every configuration, in order: those in ``store`` are read, the rest are
    run with ``backend`` (``local`` | ``pool`` | ``ray``) and stored as each finishes (so an
    interrupted batch keeps what it finished). ``progress(record, reused)`` is called once per
    distinct configuration. ``threads``: torch threads per job (default: the process's own for
    ``local``, ``max(1, cores // workers)`` for ``pool``, 1 for ``ray``). A stored record
    evaluated with other ``eval_options`` (default :data:`EVAL_OPTIONS`) counts as missing."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    store = store if store is not None else ResultStore()
    options = eval_options_of(eval_options)
    failures: list[tuple[dict, BaseException]] = []
    n_jobs = 0
    todo = _missing(cfgs, store, options, progress)
    while todo:
        # a key whose lock another process holds is being trained there: wait, then reuse it
        locks = {k: store.lock(k) for k in todo}
        mine = {k: c for k, c in todo.items() if locks[k].acquire(wait=False)}
        for key in list(mine):  # finished elsewhere just before the lock was ours
            record = _usable(store, key, options)
            if record is not None:
                del mine[key]
                locks[key].release()
                if progress:
                    progress(record, True)
        jobs = [c.to_dict() for c in mine.values()]
        n_jobs += len(jobs)
        try:
            if jobs:
                run = {"local": _local, "pool": _pool, "ray": _ray}[backend]
                for out in run(jobs, workers=workers, address=address, threads=threads,
                               options=options):
                    if "error" in out:
                        failures.append((out["job"], out["error"]))
                        continue
                    store.put(out["record"], out["checkpoint"])
                    locks[out["record"]["key"]].release()
                    if progress:
                        progress(out["record"], False)
        finally:
            for key in mine:
                locks[key].release()
        busy = {k: c for k, c in todo.items() if k not in mine}
        for key in busy:
            locks[key].acquire(wait=True)  # until the other process lets go
            locks[key].release()
        todo = _missing(list(busy.values()), store, options, progress)  # reused, or its failures
    if failures:
        _raise_failures(failures, n_jobs)
    records = [store.get(cfg) for cfg in cfgs]
    missing = [c.hash() for c, r in zip(cfgs, records) if r is None]
    if missing:  # a record that was written but cannot be read back
        raise RuntimeError(f"the store {store.root} lost the records {missing}")
    return records


def _usable(store: ResultStore, key: str, options: dict) -> dict | None:
    """The stored record of ``key`` when it was evaluated with ``options``, else None."""
    record = store.get(key)
    return record if record is not None and record.get("eval_options") == options else None


def _missing(cfgs: Sequence[RunConfig], store: ResultStore, options: dict,
             progress: Progress | None) -> dict[str, RunConfig]:
    """The distinct configurations the store lacks (by key); the others are reported as reused."""
    todo: dict[str, RunConfig] = {}
    for cfg in cfgs:
        key = cfg.hash()
        if key in todo:
            continue
        record = _usable(store, key, options)
        if record is None:
            todo[key] = cfg
        elif progress:
            progress(record, True)
    return todo


def job_name(job: dict) -> str:
    """A job's name for messages: scenario, method (with its switches), seed and key."""
    cfg = RunConfig.from_dict(job)
    m = cfg.method
    switches = "".join(f" +{k.upper()}" for k in ("dls", "caw") if getattr(m, k))
    return f"{cfg.scenario.name} {m.name}{switches} seed {cfg.seed} ({cfg.hash()})"


def _raise_failures(failures: list[tuple[dict, BaseException]], n_jobs: int) -> None:
    """One failed job alone: its own error. Otherwise one error naming every failed job (the
    finished ones are already stored)."""
    if n_jobs == 1:
        raise failures[0][1]
    lines = [f"- {job_name(job)}: {type(err).__name__}: {err}" for job, err in failures]
    raise JobsFailed(f"{len(failures)} of {n_jobs} runs failed (the other {n_jobs - len(failures)} "
                     "finished and are stored; run the command again to retry only these):\n"
                     + "\n".join(lines))


class JobsFailed(UserError):
    """Some jobs of a batch failed; the message names each, the rest were stored."""


def _local(jobs: list[dict], threads: int | None = None, options: dict | None = None,
           **_) -> Iterator[dict]:
    for job in jobs:
        try:
            out = run_job(job, threads, options)
        except Exception as err:  # noqa: BLE001 - reported by name after the batch
            if len(jobs) == 1:
                raise
            out = {"job": job, "error": err}
        yield out


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: end this worker when the process that started it ends (a killed
    ``reproduce`` leaves no orphans training on)."""
    import threading

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _pool(jobs: list[dict], workers: int | None = None, threads: int | None = None,
          options: dict | None = None, **_) -> Iterator[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(jobs)))
    threads = threads or max(1, cores // workers)
    # spawn: a forked child of a process that already ran torch can hang in its thread pools
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_job, job, threads, options): job for job in jobs}
        for future in as_completed(futures):
            err = future.exception()
            yield {"job": futures[future], "error": err} if err is not None else future.result()


def _ray(jobs: list[dict], address: str | None = None, threads: int | None = None,
         workers: int | None = None, options: dict | None = None) -> Iterator[dict]:
    try:
        import ray
    except ImportError as err:
        raise UserError("the ray backend needs Ray: pip install 'mimmx[ray]'") from err
    threads = threads or 1
    started = not ray.is_initialized()
    if started:
        # the workers of a local instance inherit this environment ($MIMMX_DATA, ...);
        # on a cluster, pass the variables that locate the data explicitly
        env = {k: v for k, v in os.environ.items() if k.startswith("MIMMX_")}
        kw = {} if address is None else {"runtime_env": {"env_vars": env}}
        if address is None and workers:
            kw["num_cpus"] = workers * threads
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kw)
    try:
        task = ray.remote(num_cpus=threads)(run_job)
        pending = [task.remote(job, threads, options) for job in jobs]
        by_ref = dict(zip(pending, jobs))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                out = ray.get(done[0])
            except Exception as err:  # noqa: BLE001 - reported by name after the batch
                out = {"job": by_ref[done[0]], "error": err}
            yield out
    finally:
        if started:
            ray.shutdown()


def seeds_list(seeds: int | Iterable[int]) -> list[int]:
    """``N`` → ``[0, …, N−1]``; a list of seeds stays as it is (deduplicated, in order)."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise UserError(f"--seeds must be ≥ 1, got {seeds}")
        return list(range(seeds))
    out = list(dict.fromkeys(int(s) for s in seeds))
    if not out:
        raise UserError("no seeds given")
    return out
