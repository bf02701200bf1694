"""End to end in a real headless browser (Debian's chromium + chromedriver, selenium): start
``streamlit run app.py``, press Train on the tiny preset, wait until the accuracy chart has an
Inverted curve, and save a screenshot (``docs/img/app.png`` when ``MIMMX_SCREENSHOT=1``).

Skipped where chromium is missing, but failed in CI (``CI`` set): ``.ci/run`` installs it.
"""

import os
import time
from pathlib import Path

import browser  # tests/browser.py: the headless-chromium harness
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def needs_browser():
    lacking = browser.missing()
    if lacking:
        msg = f"the browser test needs {', '.join(lacking)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_train_in_a_real_browser_draws_the_inverted_curve(needs_browser, real_data, tmp_path):
    env = {"MIMMX_APP_TINY": "1", "MIMMX_APP_RESULTS": str(tmp_path / "results"),
           "MIMMX_THREADS": "1"}
    shot = ROOT / "docs/img/app.png" if os.environ.get("MIMMX_SCREENSHOT") == "1" else tmp_path / "app.png"
    from selenium.webdriver.common.by import By

    log = tmp_path / "streamlit.log"
    with browser.server(env, log=log) as url, browser.browser() as driver:
        driver.get(url)
        train = browser.wait_until(lambda: browser.sidebar_button(driver, "Train"), 90,
                                   what="the Train button")
        train.click()
        # the accuracy chart: one trace per test set (and per method panel)
        browser.wait_until(lambda: any("Inverted" in t for t in browser.plot_traces(driver)), 120,
                           0.5, "the inverted-accuracy curve")
        traces = next(t for t in browser.plot_traces(driver) if "Inverted" in t)
        assert {"Validation", "Inverted", "Balanced"} <= set(traces)
        if shot.parent == tmp_path:  # the test's own screenshot: the first curves will do
            time.sleep(1.5)  # let plotly finish drawing
        else:  # the README's: the finished page
            browser.wait_until(lambda: "Final results" in (text := browser.page_text(driver))
                               and "Running:" not in text, 90, 0.5, "the end of the training")
            time.sleep(3)  # the page's last full run, which clears the polling fragments' leftovers
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert "Traceback" not in browser.page_text(driver)
        driver.execute_script("window.scrollTo(0, 0);")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
