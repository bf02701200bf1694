"""Drive the app in a real headless browser: Debian's chromium and chromedriver through
selenium (``pip install selenium``, a dev dependency). Used by ``tests/test_app_browser.py``
and ``bench/bench_app.py``; ``bench/app_screenshot.py`` takes the README's screenshot with it.

``server(env)`` starts ``streamlit run app.py`` on a free port and waits until it answers;
``browser()`` opens headless chromium with a fresh profile and no background networking (these
machines have no outside network); ``plot_traces`` reads the trace names of every plotly chart
on the page from the charts' own data (``el.data`` of each ``.js-plotly-plot``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APP = Path(__file__).resolve().parents[1] / "app.py"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage")


def missing() -> list[str]:
    """What a browser test needs and this machine lacks (empty: all there)."""
    out = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("selenium (pip install selenium)")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float, poll: float = 0.1, what: str = ""):
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` s pass."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(poll)


@contextmanager
def server(env: dict[str, str] | None = None, timeout: float = 90, log: Path | None = None) -> Iterator[str]:
    """``streamlit run app.py`` in its own process group, with ``env`` added to this process's
    environment; yields the page's URL once the server answers; kills the group at the end."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal"]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=APP.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with status {proc.returncode}"
                                   + (f"; see {log}" if log else ""))
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout, 0.2, "the streamlit server")
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(3)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
        if log:
            out.close()


@contextmanager
def browser(width: int = 1600, height: int = 1400):
    """A headless chromium (selenium WebDriver) with a fresh profile; quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="mimmx-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def sidebar_button(driver, text: str):
    """The sidebar button labelled ``text`` (None while the page has not drawn it)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.XPATH, "//section[@data-testid='stSidebar']"
                                           f"//button[normalize-space(.)='{text}']")
    return found[0] if found else None


def plot_traces(driver) -> list[list[str]]:
    """For every plotly chart on the page, the names of its traces (from its data)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".map(el => (el.data || []).map(t => String(t.name)));")


def page_text(driver) -> str:
    return driver.execute_script("return document.body.innerText;")
