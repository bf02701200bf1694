"""The README's screenshot: the app's first page, as a lecturer opens it after warming the store.

    python -m mimmx warm-cache --scenarios exp1 --jobs 2   # the stored runs the panel draws
    python bench/app_screenshot.py                          # -> docs/img/app.png

Starts ``streamlit run app.py`` on the default results store, waits until the robustness panel
has drawn its curves, saves the page (headless chromium, ``tests/browser.py``), and prints the
panel's numbers (each stored run's kept Validation / Inverted / Balanced) for the caption.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import browser  # noqa: E402  (tests/browser.py: the headless-chromium harness)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs/img/app.png")
    a = p.parse_args()
    lacking = browser.missing()
    if lacking:
        sys.exit(f"the screenshot needs {', '.join(lacking)} (apt-get install chromium chromium-driver)")
    from mimmx.app import session

    frame = session.robustness(session.default_request("exp1"))
    if frame.empty:
        sys.exit("no stored exp1 run at the app's settings: run `python -m mimmx warm-cache "
                 "--scenarios exp1 --jobs 2` first")
    print(frame.to_string(index=False))
    with browser.server() as url, browser.browser() as driver:
        driver.get(url)
        browser.wait_until(lambda: any(", inverted" in " ".join(t) for t in browser.plot_traces(driver)),
                           120, 0.5, "the robustness panel's curves")
        time.sleep(3)  # let plotly finish drawing
        driver.execute_script("window.scrollTo(0, 0);")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(a.out)):
            sys.exit(f"chromium could not save {a.out}")
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
