"""Every notebook runs top to bottom in FAST mode (MIMMX_FAST=1) and ends by asserting its
lesson's key fact. Committed notebooks carry no outputs."""

import json
import warnings
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_in_fast_mode(path, real_data, request, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "code")
    if "morpho" in code or "exp1_digits" in code:  # its scenarios read the Morpho-MNIST table
        request.getfixturevalue("morpho_table")

    monkeypatch.setenv("MIMMX_FAST", "1")
    monkeypatch.setenv("MIMMX_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    assert nb.cells  # executed without raising: each notebook's last cell asserts its lesson
    slow = sorted(((_seconds(c), i) for i, c in enumerate(nb.cells) if c.cell_type == "code"), reverse=True)
    if sum(t for t, _ in slow) > 120:  # name the cells that made a FAST run slow
        warnings.warn(f"{path.stem} took {sum(t for t, _ in slow):.0f} s in FAST mode; slowest cells: "
                      + ", ".join(f"[{i}] {t:.0f} s" for t, i in slow[:3]), stacklevel=1)


def _seconds(cell) -> float:
    """A cell's execution time from the timestamps nbclient records in its metadata."""
    from datetime import datetime

    t = cell.metadata.get("execution", {})
    start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()
