"""Runs: everything about a trained run once the trainer has made it.

- :mod:`~mimmx.runs.folder`: the checkpoint, the record and the run folder (one writer, one
  reader each; atomic writes);
- :mod:`~mimmx.runs.store`: the results store, one checksummed record per (config, seed);
- :mod:`~mimmx.runs.jobs`: train what the store lacks, here, in a process pool or on Ray;
- :mod:`~mimmx.runs.experiments`: the poster's experiments and their rows (one config each);
- :mod:`~mimmx.runs.reproduce`: the poster's tables over seeds, and sweeps of r;
- :mod:`~mimmx.runs.info`: what a run records about where it ran;
- :mod:`~mimmx.runs.cli`: the commands that make runs (``train``, ``configs``, ``reproduce``,
  ``sweep``).
"""

from mimmx.runs.folder import checkpoint, load_run, make_record, write_run
from mimmx.runs.jobs import EVAL_OPTIONS, JobsFailed, run_many, seeds_list
from mimmx.runs.store import ResultStore

__all__ = ["EVAL_OPTIONS", "JobsFailed", "ResultStore", "checkpoint", "load_run", "make_record",
           "run_many", "seeds_list", "write_run"]
