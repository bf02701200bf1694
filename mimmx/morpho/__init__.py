"""Morpho-MNIST (Castro et al., JMLR 2019): morphometrics and perturbations of digits, batched.

- :func:`measure`: area, length, thickness, slant, width, height of each digit (:data:`METRICS`);
- :func:`thin`, :func:`thick` (global) and :func:`swell`, :func:`fracture` (local, seeded per
  image) perturbations;
- :func:`load_table`: the cached table of all 70,000 MNIST digits, plain, thin and thick.

The pipeline (upsampling, binarisation, distance map, medial axis) is in
:mod:`mimmx.morpho.morphology`.
"""

from mimmx.morpho.metrics import METRICS, measure
from mimmx.morpho.morphology import MorphoInputError, Morphology
from mimmx.morpho.perturb import fracture, swell, thick, thin
from mimmx.morpho.table import (
    ALGORITHM_VERSION,
    MorphoTable,
    TableParams,
    build_table,
    compute_variants,
    load_table,
    table_path,
)

__all__ = [
    "ALGORITHM_VERSION", "METRICS", "Morphology", "MorphoInputError", "MorphoTable", "TableParams",
    "build_table", "compute_variants", "fracture", "load_table", "measure", "swell", "table_path",
    "thick", "thin",
]
