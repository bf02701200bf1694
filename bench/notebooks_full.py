"""Every notebook in full mode (``MIMMX_FAST`` unset), top to bottom: the suite runs them in
FAST mode only (tests/test_notebooks.py), so this is where the full mode's lessons are checked.
Each notebook ends by asserting its lesson with numbers from its own run; a notebook passes when
it runs to the end. Prints one line per notebook (pass or the error's last line, minutes) and
the hardware.

    MIMMX_DATA=... python bench/notebooks_full.py [01 03 ...] [--keep DIR] [--timeout 7200]

Names are matched by prefix (``01`` is ``01_shortcut_learning``); none: every notebook.
``--keep DIR`` writes each executed notebook there, with its outputs, to look at.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(path: Path, timeout: float, keep: Path | None) -> tuple[bool, str, float]:
    """Execute ``path`` in full mode; (passed, the error's last line or "", minutes)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        passed, why = True, ""
    except CellExecutionError as err:
        lines = [line for line in str(err).splitlines() if line.strip()]
        passed, why = False, lines[-1] if lines else type(err).__name__
    minutes = (time.perf_counter() - t0) / 60
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / path.name)
    return passed, why, minutes


def main() -> int:
    from mimmx.device import describe_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="write the executed notebooks there")
    p.add_argument("--timeout", type=float, default=7200, help="seconds per cell (default 7200)")
    args = p.parse_args()
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        paths = [path for path in paths if any(path.stem.startswith(n) for n in args.names)]
        if not paths:
            p.error(f"no notebook starts with {' or '.join(args.names)}; they are "
                    f"{', '.join(x.stem for x in sorted(NOTEBOOKS.glob('*.ipynb')))}")
    os.environ.pop("MIMMX_FAST", None)  # full mode
    print(f"hardware: {describe_device()}; full mode; {len(paths)} notebook(s)", flush=True)
    failed = 0
    for path in paths:
        passed, why, minutes = run(path, args.timeout, args.keep)
        failed += not passed
        print(f"{'PASS' if passed else 'FAIL'} {path.stem}: {minutes:.1f} min"
              + ("" if passed else f"; {why}"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
