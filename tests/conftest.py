"""Shared fixtures. Real data comes from $MIMMX_DATA (the Makefile points it at ../shared/data).

Tests that need the real datasets skip when they are absent on a user's machine, but fail in
CI (``CI`` set), where a skip would hide a broken set-up. No test ever downloads.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def real_data():
    """The folder holding verified MNIST and Fashion-MNIST files, or skip (fail in CI)."""
    from mimmx import data

    for name in data.DATASETS:
        states = {s.state for s in data.file_status(name)}
        if states != {"verified"}:
            msg = (f"{name} not available ({states}); set MIMMX_DATA or run "
                   "`python -m mimmx data download`")
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
    return data.file_status("mnist")[0].path.parent.parent


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run small models: one thread is faster than two that spin against each other,
    and keeps timings sane when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def morpho_table(real_data):
    """The Morpho-MNIST table (thin/thick digits) that exp1_digits and morpho need: built once per
    machine into the cache (about two to four minutes on 2 cores), loaded in under 2 s after."""
    from mimmx.morpho import load_table

    return load_table(progress=False)
