"""Confounded scenarios: a base dataset turned into a training set whose primary label y
co-occurs with spurious factors z_i, plus Validation / Inverted / Balanced test sets."""

from mimmx.scenarios.builder import (
    SPLITS,
    TEST_SETS,
    FactorSpec,
    InfeasibleScenarioError,
    Scenario,
    ScenarioSpec,
    SplitData,
    build,
    cell_counts,
    facet_titles,
    sample_figure,
    sample_grid,
    split_conditionals,
)
from mimmx.scenarios.factors import INDUCED, NATURAL
from mimmx.scenarios.presets import SCENARIOS, get_spec

__all__ = [
    "SPLITS", "TEST_SETS", "FactorSpec", "InfeasibleScenarioError", "Scenario", "ScenarioSpec",
    "SplitData", "build", "cell_counts", "split_conditionals", "INDUCED", "NATURAL", "SCENARIOS",
    "get_spec", "build_named", "facet_titles", "sample_grid", "sample_figure",
]


def build_named(name: str, seed: int = 0, **overrides) -> Scenario:
    """Build a named scenario; ``overrides`` replace fields of its spec (e.g. ``n_train=5000``)."""
    import dataclasses

    return build(dataclasses.replace(get_spec(name), **overrides), seed)
