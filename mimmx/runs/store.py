"""The results store: one record per finished (config, seed), found by the config's hash.

``<root>/<key>.json`` is the record (:func:`mimmx.runs.folder.make_record`) and
``<root>/<key>.pt`` its checkpoint (:func:`mimmx.runs.folder.checkpoint`). Both are written
atomically, the checkpoint first, so a record on disk is always complete and a killed run
leaves no corrupt one. Every record carries a SHA-256 ``checksum`` of its content: a record
edited by hand, truncated, from another layout version, or missing a field the tables read is
reported (a warning naming the file and what is wrong) and treated as missing, so the run is
trained again rather than trusted. Default root: ``mimmx.data.cache_dir("results")``
(``$MIMMX_CACHE/results``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from mimmx.config import RunConfig
from mimmx.errors import UserError
from mimmx.runs.folder import FORMAT, atomic_write, json_default, to_json

# what every record must hold, for the tables and the app to read it
REQUIRED = ("key", "config", "method", "best", "history", "report", "eval_options", "wall_time",
            "environment")


class StoreWarning(UserWarning):
    """A stored record that cannot be trusted; the run will be trained again."""


def checksum(record: dict) -> str:
    """SHA-256 of a record's canonical JSON (sorted keys, without its ``checksum`` field)."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def record_problem(record: dict, key: str) -> str | None:
    """What is wrong with a record read under ``key``, or None when it can be trusted."""
    if not isinstance(record, dict):
        return "it is not a JSON object"
    if record.get("format") != FORMAT:
        return f"its format is {record.get('format')!r}, this mimmx reads {FORMAT}"
    missing = [f for f in REQUIRED if record.get(f) is None]
    if missing:
        return f"it lacks {', '.join(missing)}"
    if "checksum" in record and record["checksum"] != checksum(record):
        return "its content does not match its checksum (edited or corrupted)"
    if record["key"] != key:
        return f"it holds the record of {record['key']}"
    if not isinstance(record["wall_time"], dict) or not isinstance(record["wall_time"].get("total"),
                                                                   (int, float)):
        return "its wall_time has no total"
    if not isinstance(record["best"], dict) or "acc" not in record["best"]:
        return "its best evaluation has no accuracies"
    return None


class KeyLock:
    """An exclusive lock on one key of a store (``fcntl.flock`` on ``.<key>.lock``), so that two
    processes sharing a store never train the same configuration at once; held by the process
    that trains the key, released when its record is stored (or the process ends). Where
    ``fcntl`` does not exist (Windows) every acquire succeeds."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` return False at once when another process has it."""
        if self.fd is not None:
            return True
        try:
            import fcntl
        except ImportError:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops its flock
            self.fd = None


class ResultStore:
    """Finished runs by configuration hash. ``store.get(cfg)`` → record or None;
    ``store.run_or_load(cfg)`` trains only when missing. See the module docstring."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            from mimmx.data import cache_dir

            root = cache_dir("results")
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"the results store {self.root} is a file, not a folder; "
                            "give --store a folder")
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

    def lock(self, key: str) -> KeyLock:
        """The lock of ``key`` (see :class:`KeyLock`), not yet taken."""
        return KeyLock(self.root / f".{key}.lock")

    def __contains__(self, cfg: RunConfig) -> bool:
        return self.get(cfg) is not None

    def get(self, cfg: RunConfig | str) -> dict | None:
        """The record of ``cfg`` (or of a key), or None when missing; a record that cannot be
        trusted (see :func:`record_problem`) is reported with a :class:`StoreWarning` and
        counts as missing."""
        path = self.record_path(cfg)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
            problem = record_problem(record, path.stem)
        except json.JSONDecodeError as err:
            problem = f"it is not valid JSON ({err.msg} at line {err.lineno})"
        if problem:
            warnings.warn(f"results store: {path} is not used: {problem}; the run will be "
                          "trained again", StoreWarning, stacklevel=2)
            return None
        return record

    def put(self, record: dict, checkpoint: bytes | None = None) -> Path:
        """Store a record (and its checkpoint), with its checksum; the checkpoint lands first,
        the record last."""
        record = {k: v for k, v in json.loads(to_json(record, None)).items() if k != "checksum"}
        record["checksum"] = checksum(record)
        key = record["key"]
        if checkpoint is not None:
            atomic_write(self.checkpoint_path(key), checkpoint)
        path = self.record_path(key)
        atomic_write(path, to_json(record))
        return path

    def records(self) -> Iterator[dict]:
        """Every trustworthy record in the store (temporary files of unfinished writes skipped)."""
        for path in sorted(self.root.glob("[!.]*.json")):
            record = self.get(path.stem)
            if record is not None:
                yield record

    def load_run(self, cfg: RunConfig | str):
        """The trained run of a stored configuration, rebuilt from its checkpoint
        (:func:`mimmx.runs.folder.load_run`)."""
        from mimmx.runs.folder import load_run

        path = self.checkpoint_path(cfg)
        if not path.is_file():
            raise UserError(f"no checkpoint for {cfg if isinstance(cfg, str) else cfg.hash()} "
                            f"in {self.root}; run it first")
        return load_run(path)

    def run_or_load(self, cfg: RunConfig, eval_options: dict | None = None) -> dict:
        """The record of ``cfg``: from the store, or trained here now and stored."""
        from mimmx.runs.jobs import run_many

        return run_many([cfg], self, eval_options=eval_options)[0]
