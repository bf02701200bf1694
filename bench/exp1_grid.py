"""The seventh session's exp1 recalibration grid (docs/study/why-mimmx-works-history.md §12):
bench/study.py with two study-only levers that the package does not ship.

- two milder stroke-thickness factors, for ``factors=``: ``plain_thick`` (the digit as written
  vs the Morpho-MNIST thickened one) and ``thin_plain`` (thinned vs as written);
- ``--coupling C``: the factors are coupled given y. With probability C every factor takes one
  shared draw of "agrees with y" (probability r), otherwise each draws its own, so every factor
  keeps P(z_i = y) = r while P(all disagree) = C(1 − r) + (1 − C)(1 − r)^N. Applied to every
  split with an association (train, selection, validation, inverted), not to the balanced one.

    python bench/exp1_grid.py [--coupling C] --seeds 0 --variant NAME "row=baseline ..." ...

Everything after ``--coupling`` goes to bench/study.py unchanged. The patches reach study.py's
worker processes because they are forked from this one (Linux).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from mimmx.scenarios import builder
from mimmx.scenarios import factors as F


def coupled_counts(coupling: float, independent=builder.cell_counts):
    """builder.cell_counts with binary factors coupled given y (all with one P(z = y))."""
    def counts(n: int, p_y: np.ndarray, cond: list[np.ndarray]) -> dict[tuple[int, ...], int]:
        a = cond[0][0, 0]
        symmetric = all(c.shape == (2, 2) and np.allclose(c, [[a, 1 - a], [1 - a, a]]) for c in cond)
        if coupling == 0 or not symmetric or abs(a - 0.5) < 1e-9:
            return independent(n, p_y, cond)
        cells = list(itertools.product(range(2), *[range(2)] * len(cond)))

        def p_pattern(agree: list[bool]) -> float:
            k, m = sum(agree), len(agree)
            shared = a if k == m else 1 - a if k == 0 else 0.0
            return coupling * shared + (1 - coupling) * a ** k * (1 - a) ** (m - k)

        p = np.array([p_y[c[0]] * p_pattern([zi == c[0] for zi in c[1:]]) for c in cells])
        return builder.rounded_counts(n, cells, p)
    return counts


def main() -> None:
    argv = sys.argv[1:]
    coupling = 0.0
    if argv[:1] == ["--coupling"]:
        coupling, argv = float(argv[1]), argv[2:]
    F.INDUCED["plain_thick"] = F.Induced(F.morpho_pair("plain", "thick"), 2, ("plain", "thick"), stage=0,
                                         datasets=("mnist",))
    F.INDUCED["thin_plain"] = F.Induced(F.morpho_pair("thin", "plain"), 2, ("thin", "plain"), stage=0,
                                        datasets=("mnist",))
    builder.cell_counts = coupled_counts(coupling)
    sys.path.insert(0, str(Path(__file__).parent))
    import study

    sys.argv = [sys.argv[0], *argv]
    study.main()


if __name__ == "__main__":
    main()
