"""Model components: encoders and heads (:mod:`.encoders`), dependence estimators between f_y
and f_z (:mod:`.estimators`: MINE, dCor, MMD/HSIC, adversary), Dynamic Loss Scaling
(:mod:`.dls`) and the Confounder Attention Weighter (:mod:`.caw`, a reconstruction).

The objective that combines them (which losses, which alternation) lives in ``mimmx.methods``.
"""

from mimmx.models.caw import CAW
from mimmx.models.dls import alpha_y_schedule, dls_gammas, dls_loss
from mimmx.models.encoders import (
    ENCODERS,
    ConvEncoder,
    DenseNetEncoder,
    MIMMEncoder,
    SplitHeads,
    build_encoder,
)
from mimmx.models.estimators import (
    ESTIMATORS,
    MINE,
    MMD,
    AdversarialClassifier,
    DependenceEstimator,
    DistanceCorrelation,
    StatisticsNetwork,
    build_estimator,
    distance_correlation,
    grad_reverse,
    hsic,
)

__all__ = [
    "CAW", "alpha_y_schedule", "dls_gammas", "dls_loss",
    "ENCODERS", "ConvEncoder", "DenseNetEncoder", "MIMMEncoder", "SplitHeads", "build_encoder",
    "ESTIMATORS", "MINE", "MMD", "AdversarialClassifier", "DependenceEstimator",
    "DistanceCorrelation", "StatisticsNetwork", "build_estimator", "distance_correlation",
    "grad_reverse", "hsic",
]
