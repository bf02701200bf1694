"""The results store and the job backends: train a (config, seed) once, keep its record.

A *job* is one :class:`~mimmx.config.RunConfig` (the seed is part of it): train it, evaluate
it (:func:`mimmx.evaluation.report.evaluate_result`, with the fixed :data:`EVAL_OPTIONS`) and
return a *record* (JSON-ready) and the checkpoint. :func:`run_job` is that job, the same
function for every backend:

- ``local``: in this process, one after another;
- ``pool``: a ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes (spawned,
  not forked), each with ``max(1, cores // workers)`` torch threads;
- ``ray``: one Ray task per job, on the cluster at ``address`` or on a local Ray instance
  started for the purpose (``pip install 'mimmx[ray]'``; every node needs mimmx and the data).

The backend only decides where :func:`run_job` runs; the driver writes every record into the
store, so the records do not depend on it (up to floating-point differences between thread
counts or hardware: the tests pin the threads).

:class:`ResultStore` keeps one record per configuration under ``cfg.hash()`` (seed included):
``<root>/<key>.json`` (the record) and ``<root>/<key>.pt`` (the checkpoint, the trainer's
format: ``load_run`` reads it). Both are written atomically (temporary file, then rename), the
checkpoint first, so a record on disk is always complete and a killed run leaves no corrupt
one. :func:`run_many` / :meth:`ResultStore.run_or_load` train only what the store lacks.
Default root: ``mimmx.data.cache_dir("results")`` (``$MIMMX_CACHE/results``).
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from mimmx.config import RunConfig
from mimmx.errors import UserError

FORMAT = 1  # record layout version
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
    from mimmx.runinfo import environment
    from mimmx.trainer import train

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(config)
    result = train(cfg)
    t0 = time.perf_counter()
    options = eval_options_of(eval_options)
    report = evaluate_result(result, **options)
    t_eval = time.perf_counter() - t0
    device = next(result.model.parameters()).device
    record = {
        "format": FORMAT,
        "key": cfg.hash(),
        "config": cfg.to_dict(),
        "method": result.method.settings(),
        "best": result.best,  # the eval event chosen on the confounded selection split
        "history": result.history,
        "report": report.to_dict(),
        "eval_options": options,
        "wall_time": {"train": result.wall_time, "evaluate": t_eval,
                      "total": result.wall_time + t_eval},
        "images_per_second": result.images_per_second,
        "environment": environment(device, cfg.seed),
    }
    buf = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "model": result.model.state_dict(),
                "method": result.method.state_dict()}, buf)
    return {"record": json.loads(json.dumps(record, default=_json_default)),
            "checkpoint": buf.getvalue()}


def eval_options_of(options: dict | None = None) -> dict:
    """:data:`EVAL_OPTIONS` updated with ``options``, JSON-shaped (lists, not tuples), so that
    it compares equal to the ``eval_options`` of a stored record."""
    unknown = sorted(set(options or {}) - set(EVAL_OPTIONS))
    if unknown:
        raise UserError(f"unknown evaluation option(s) {unknown}; known: {sorted(EVAL_OPTIONS)}")
    merged = {**EVAL_OPTIONS, **(options or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def _json_default(x):
    if hasattr(x, "item"):  # numpy / torch scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------------- the store


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never
    a part: write a hidden temporary file beside it, flush it to disk, rename it over."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ResultStore:
    """Finished runs by configuration hash. ``store.get(cfg)`` → record or None;
    ``store.run_or_load(cfg)`` trains only when missing. See the module docstring."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            from mimmx.data import cache_dir

            root = cache_dir("results")
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    @staticmethod
    def key(cfg: RunConfig) -> str:
        return cfg.hash()

    def record_path(self, cfg: RunConfig | str) -> Path:
        return self.root / f"{cfg if isinstance(cfg, str) else self.key(cfg)}.json"

    def checkpoint_path(self, cfg: RunConfig | str) -> Path:
        return self.record_path(cfg).with_suffix(".pt")

    def __contains__(self, cfg: RunConfig) -> bool:
        return self.get(cfg) is not None

    def get(self, cfg: RunConfig | str) -> dict | None:
        """The record of ``cfg`` (or of a key), or None when missing or unreadable (an
        unreadable record, e.g. from a different mimmx version, is treated as missing)."""
        path = self.record_path(cfg)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if record.get("format") != FORMAT:
            return None
        return record

    def put(self, record: dict, checkpoint: bytes | None = None) -> Path:
        """Store a record (and its checkpoint); the checkpoint lands first, the record last."""
        key = record["key"]
        if checkpoint is not None:
            atomic_write(self.checkpoint_path(key), checkpoint)
        path = self.record_path(key)
        atomic_write(path, json.dumps(record, indent=1, default=_json_default).encode())
        return path

    def records(self) -> Iterator[dict]:
        """Every complete record in the store (temporary files of unfinished writes skipped)."""
        for path in sorted(self.root.glob("[!.]*.json")):
            record = self.get(path.stem)
            if record is not None:
                yield record

    def load_run(self, cfg: RunConfig | str):
        """The trained run of a stored configuration, rebuilt from its checkpoint
        (:func:`mimmx.evaluation.report.load_run`)."""
        from mimmx.evaluation.report import load_run

        path = self.checkpoint_path(cfg)
        if not path.is_file():
            raise UserError(f"no checkpoint for {cfg if isinstance(cfg, str) else cfg.hash()} "
                            f"in {self.root}; run it first")
        return load_run(path)

    def run_or_load(self, cfg: RunConfig, eval_options: dict | None = None) -> dict:
        """The record of ``cfg``: from the store, or trained here now and stored."""
        return run_many([cfg], self, eval_options=eval_options)[0]


# ------------------------------------------------------------------------------- backends


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
    todo: dict[str, RunConfig] = {}
    for cfg in cfgs:
        key = cfg.hash()
        if key in todo:
            continue
        record = store.get(key)
        if record is None or record.get("eval_options") != options:
            todo[key] = cfg
        elif progress:
            progress(record, True)
    jobs = [c.to_dict() for c in todo.values()]
    if jobs:
        run = {"local": _local, "pool": _pool, "ray": _ray}[backend]
        for out in run(jobs, workers=workers, address=address, threads=threads, options=options):
            store.put(out["record"], out["checkpoint"])
            if progress:
                progress(out["record"], False)
    records = [store.get(cfg) for cfg in cfgs]
    missing = [c.hash() for c, r in zip(cfgs, records) if r is None]
    if missing:  # a record that was written but cannot be read back
        raise RuntimeError(f"the store {store.root} lost the records {missing}")
    return records


def _local(jobs: list[dict], threads: int | None = None, options: dict | None = None,
           **_) -> Iterator[dict]:
    for job in jobs:
        yield run_job(job, threads, options)


def _pool(jobs: list[dict], workers: int | None = None, threads: int | None = None,
          options: dict | None = None, **_) -> Iterator[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(jobs)))
    threads = threads or max(1, cores // workers)
    # spawn: a forked child of a process that already ran torch can hang in its thread pools
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(run_job, job, threads, options) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


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
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
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
