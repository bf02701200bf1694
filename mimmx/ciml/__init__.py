"""CIML: complementary-information mutual learning for multimodal segmentation, on phantoms.

Shen et al., Neural Networks 180:106670, 2024 (arXiv 2401.02717). The paper's formulas are not
available and no official code exists: :mod:`mimmx.ciml.models` is a documented
reconstruction. Layout, imports flowing downward:

phantom (the multimodal data) -> models (U-Nets, baselines, CIML) -> train (config, training,
Dice/HD95, run folders) -> explain (gradient and gate maps) -> figures (plotly, DataFrames) -> cli.
"""

from mimmx.ciml.models import (
    CIML,
    METHODS,
    SUBTASKS,
    CrossModalGate,
    EarlyFusion,
    Ensemble,
    SingleModality,
    UNet,
    VariationalMessage,
    gaussian_kl,
    segmentation_loss,
)
from mimmx.ciml.phantom import (
    CONTRAST,
    MODALITIES,
    REGIONS,
    TISSUES,
    PhantomConfig,
    Phantoms,
    make_phantoms,
)
from mimmx.ciml.train import (
    CIMLConfig,
    Results,
    build_model,
    dice_scores,
    evaluate,
    hd95_scores,
    load_config,
    markdown_table,
    run,
    summary,
    train_model,
    write_run,
)

__all__ = [
    "CIML", "METHODS", "SUBTASKS", "CrossModalGate", "EarlyFusion", "Ensemble", "SingleModality",
    "UNet", "VariationalMessage", "gaussian_kl", "segmentation_loss",
    "CONTRAST", "MODALITIES", "REGIONS", "TISSUES", "PhantomConfig", "Phantoms", "make_phantoms",
    "CIMLConfig", "Results", "build_model", "dice_scores", "evaluate", "hd95_scores", "load_config",
    "markdown_table", "run", "summary", "train_model", "write_run",
]
