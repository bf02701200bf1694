"""Speed of the evaluation layer: 2-D embeddings and the probe matrix.

    python bench/bench_embeddings.py            # prints one line per measurement

Embeddings of 2000 × 8 features (UMAP's default subsample size; t-SNE also at its 1000); UMAP timed on
its first call in this process (import + numba compilation + fit) and again afterwards. The
probe matrix on 5000 samples with 4 feature parts and 3 binary labels, both probes. Features
are synthetic: f_y carries y, f_zi carries z_i (the test suite's Balanced-set model).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mimmx.device import describe_device  # noqa: E402
from mimmx.evaluation import embed, probe_matrix  # noqa: E402


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = {k: rng.integers(0, 2, n) for k in ("y", "z1", "z2")}
    f_z1 = 2.0 * labels["z1"][:, None] + rng.normal(size=(n, 2))
    f_z2 = 2.0 * labels["z2"][:, None] + rng.normal(size=(n, 2))
    parts = {"f_y": 2.0 * labels["y"][:, None] + rng.normal(size=(n, 4)),
             "f_z1": f_z1, "f_z2": f_z2, "f_z": np.c_[f_z1, f_z2]}
    return parts, labels


def timed(fn, *args, **kw) -> float:
    start = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - start


def main() -> None:
    print(f"hardware: {describe_device()}")
    print(f"load average (1, 5, 15 min) at start: {os.getloadavg()}")
    parts, labels = synthetic(2000)
    x = np.c_[parts["f_y"], parts["f_z"]]  # (2000, 8)

    print(f"pca   2000x8: {timed(embed, x, 'pca'):7.3f} s")
    print(f"tsne  2000x8: {timed(embed, x, 'tsne'):7.2f} s  (sklearn defaults, max_iter=1000)")
    print(f"tsne  1000x8: {timed(embed, x[:1000], 'tsne'):7.2f} s  (embeddings_frame's default cap)")
    print(f"tsne  1000x8: {timed(embed, x[:1000], 'tsne', threads=1):7.2f} s  (threads=1)")
    start = time.perf_counter()
    import umap  # noqa: F401  (timed: numba and pynndescent load here)

    t_import = time.perf_counter() - start
    t_first = timed(embed, x, "umap")
    print(f"umap  2000x8: first call {t_import + t_first:6.2f} s "
          f"(import {t_import:.2f} s + compile/fit {t_first:.2f} s), "
          f"second call {timed(embed, x, 'umap'):.2f} s")

    parts, labels = synthetic(5000)
    for probe in ("logreg", "knn"):
        t = timed(probe_matrix, parts, labels, probe=probe)
        print(f"probe_matrix {probe:6s} 5000 samples, 4 parts x 3 labels: {t:.2f} s")
    print(f"load average (1, 5, 15 min) at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
