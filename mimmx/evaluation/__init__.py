"""Evaluation on frozen features (brief §4): the poster's table (a) (each head on the
Validation / Inverted / Balanced sets), table (b) (fresh probes predicting every label from
every feature part), 2-D embeddings coloured by y and z, and mean ± std tables over seeds.

Works on plain arrays/tensors of features and labels; knows nothing of the trainer, except
:mod:`~mimmx.evaluation.report`, which evaluates a trained run (``evaluate_result``).
"""

from mimmx.evaluation.embeddings import (
    embed,
    embedding_figure,
    embedding_panels,
    embeddings_frame,
    subsample,
    warm_up_umap,
)
from mimmx.evaluation.probes import (
    accuracy,
    chance_level,
    head_accuracy_table,
    leakage_score,
    probe_matrix,
    split_halves,
)
from mimmx.evaluation.report import Report, evaluate_result, posthoc_mi
from mimmx.evaluation.tables import (
    accuracy_table,
    heads_to_tidy,
    matrix_to_tidy,
    mean_std,
    probe_table,
    summarise,
    to_markdown,
)

__all__ = [
    "Report", "accuracy", "accuracy_table", "chance_level", "embed", "embedding_figure", "embedding_panels",
    "embeddings_frame", "evaluate_result", "head_accuracy_table", "heads_to_tidy",
    "leakage_score", "matrix_to_tidy", "mean_std", "posthoc_mi", "probe_matrix",
    "probe_table", "split_halves", "subsample", "summarise", "to_markdown", "warm_up_umap",
]
