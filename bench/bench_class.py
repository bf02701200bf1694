"""Load test of issue 25, "a room full of students on one server": one real app server
(``streamlit run app.py`` with tiny runs, ``MIMMX_APP_TINY=1``, and a fresh results store), N
browser sessions (tabs of one headless chromium) that each press Train, spread over three λ
(the sidebar slider at its default, its minimum and its maximum: three distinct configurations
× the default request's methods). While they run, a process of its own asks the server's
health endpoint (``/_stcore/health``) every 0.5 s and keeps every answer's latency (as a
student's browser would: not from the bench's process, where the tab driver's turns at the GIL
would count as the server's).

Criteria (PASS/FAIL each; the exit code is 1 if any fails):

- responsive: every health check answered in under 1 s;
- results: every tab shows its finished result (the final table, no "Running:", no error);
- nothing trained twice: the trainings the server started (its log has one line per start,
  ``mimmx app: training LABEL KEY``) are exactly the distinct configurations, once each, and
  the store holds one record per configuration.

The tabs are opened (and their λ set) first; then every tab is told to press Train at one
moment, by its own timer, as a class told "now press Train". In a class the browsers run on the
students' machines; here they share the server's cores, so chromium runs in a session of its
own whose scheduling group (Linux autogroup) is at nice 19, and once the tabs are open every
thread of chromium is kept at nice 19 too (``--browser-nice``; chromium sets its own threads'
priorities, :class:`Renicer` sets them back): it yields the cores to the server. Each tab notes
by its own clock when it shows its result (the bench reads the tabs in rounds, slow when the
browser is starved); the store's record times say when the last training ended. Also printed:
the CPU (cores, on average) of server, its training processes and browser after the first
Train, and their memory (``--keep DIR`` keeps the server's log and every health check).

    MIMMX_DATA=... python bench/bench_class.py [--sessions 30] [--browser-nice 19] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import browser  # noqa: E402 - tests/browser.py, the headless-chromium harness

from mimmx.app import session  # noqa: E402
from mimmx.device import describe_device  # noqa: E402

HEALTH_EVERY = 0.5  # seconds between health checks
HEALTH_LIMIT = 1.0  # a health check slower than this fails "responsive"
LAM_LABEL = "λ (MI penalty weight)"
# every tab's timers run at full pace: a class's tabs are each in the front of their own screen
EXTRA_FLAGS = ("--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
               "--disable-renderer-backgrounding")
# the server's log line at the start of every training (mimmx.app.session.Job._train_one)
TRAINING_LINE = re.compile(r"mimmx app: training (.+?) ([0-9a-f]{16})(?![0-9a-f])")
# run in a tab when Train is pressed: every 0.5 s the tab notes, by its own clock, when it
# first shows its final table with no run going on (window.mimmx.done, Date.now() ms), the
# highest place in line it showed and whether it was told that another session trains its
# settings; so none of these waits for the bench's next read of the tab. Only the page's few
# alerts, captions and headings are read.
TAB_CLOCK = """
window.mimmx = {pressed: Date.now(), done: null, place: 0, joined: false};
const timer = setInterval(() => {
  const notes = Array.from(document.querySelectorAll(
    "[data-testid='stAlert'], [data-testid='stCaptionContainer']"), e => e.textContent);
  const place = notes.map(t => t.match(/your run is number (\\d+) in line/)).find(m => m);
  if (place) window.mimmx.place = Math.max(window.mimmx.place, Number(place[1]));
  if (notes.some(t => t.includes('Another session is training the same settings')))
    window.mimmx.joined = true;
  const final = Array.from(document.querySelectorAll('h3'))
    .some(h => h.textContent.startsWith('Final results'));
  if (final && !notes.some(t => t.includes('Running:'))) {
    window.mimmx.done = Date.now();
    clearInterval(timer);
  }
}, 500);
"""
PRESS_TRAIN = """
Array.from(document.querySelectorAll("section[data-testid='stSidebar'] button"))
  .find(b => b.textContent.trim() === 'Train').click();
"""
# what the bench reads of a tab: its TAB_CLOCK notes and whether it shows an error
TAB_STATE = """
const text = document.body.textContent;
return {...window.mimmx,
        error: !!document.querySelector("[data-testid='stException']") || text.includes('Traceback')
               || text.includes('Stopped:') || text.includes('class mode')};
"""


# the health poller's loop, in a process of its own: in this one it would share the GIL with
# the tab driver and the Renicer, and measure their turns at it as the server's latency
POLL = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
while True:
    t0, start = time.perf_counter(), time.time()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            ok = r.status == 200
    except OSError:
        ok = False
    print(f"{start:.3f} {time.perf_counter() - t0:.4f} {int(ok)}", flush=True)
    time.sleep(max(0.0, every - (time.perf_counter() - t0)))
"""


class HealthPoller:
    """Asks ``url``/_stcore/health every HEALTH_EVERY s, from a process of its own (at this
    process's priority), until :meth:`stop`; then ``checks`` holds every check's (start
    time.time(), latency) and ``failures`` how many got no answer."""

    def __init__(self, url: str, log: Path):
        self.url, self.log, self.checks, self.failures = f"{url}/_stcore/health", log, [], 0

    def start(self) -> None:
        self._out = self.log.open("w")
        # a session of its own: under Linux's autogroup scheduling it is not in chromium's group
        self._proc = subprocess.Popen([sys.executable, "-c", POLL, self.url, str(HEALTH_EVERY)],
                                      stdout=self._out, start_new_session=True)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        self._out.close()
        for line in self.log.read_text().splitlines():
            start, latency, ok = line.split()
            self.checks.append((float(start), float(latency)))
            self.failures += ok != "1"


def open_browser(nice: int, profile: Path):
    """One headless chromium (tests/browser.py's flags, plus no throttling of background tabs)
    with its profile in ``profile``, run at niceness ``nice``: in a class the browsers run on
    the students' machines, here they share the server's cores, so they yield them to it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser.CHROMIUM
    for flag in (*browser.CHROME_FLAGS, *EXTRA_FLAGS, f"--user-data-dir={profile}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    service = Service(browser.CHROMEDRIVER, popen_kw={"preexec_fn": lambda: os.nice(nice),
                                                       "start_new_session": True})
    driver = webdriver.Chrome(service=service, options=options)
    grouped = set_autogroup_nice(service.process.pid, nice)
    print(f"chromium's scheduling group (autogroup) at nice {nice}" if grouped else
          "no autogroup scheduling here: chromium's threads' niceness is what yields the CPU")
    return driver


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Linux schedules each session (``setsid``) as one group (``kernel.sched_autogroup_enabled``)
    and shares the CPU between groups as between processes: a thread's niceness counts only
    inside its group, so chromium at nice 19 in a group of its own still takes a group's share
    from the server. The group's own niceness (``/proc/PID/autogroup``) is what yields it.
    False where there is no autogroup to set."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return True
    except OSError:
        return False


class Renicer(threading.Thread):
    """Keeps every thread of chromium's processes at niceness ``nice`` (checked every 0.5 s):
    chromium sets its own threads' priorities (its browser and display threads to -8, its
    renderers to 0 or 5), so the niceness it was started with does not hold. Linux's niceness
    is per thread. ``reniced`` counts the threads set."""

    def __init__(self, nice: int):
        super().__init__(name="renice", daemon=True)
        self.nice, self.reniced, self.halt = nice, 0, threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for proc in descendants("chrom"):
                try:
                    tids = [t.id for t in proc.threads()]
                except psutil.Error:  # ended meanwhile
                    continue
                for tid in tids:
                    try:
                        if os.getpriority(os.PRIO_PROCESS, tid) != self.nice:
                            os.setpriority(os.PRIO_PROCESS, tid, self.nice)
                            self.reniced += 1
                    except OSError:  # ended meanwhile, or not allowed (below 0 needs root)
                        pass
            self.halt.wait(0.5)


def lam_slider(driver):
    """The range input of the sidebar's λ slider (None while not drawn)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.XPATH, "//div[@data-testid='stSlider']//input[@type='range'"
                                           f" and @aria-label='{LAM_LABEL}']")
    return found[0] if found else None


def set_lam(driver, key: str | None) -> float:
    """Press ``key`` (Home, End; None: none) on the λ slider and wait until the page has rerun
    with it; return the slider's value."""
    from selenium.webdriver.common.action_chains import ActionChains

    thumb = browser.wait_until(lambda: lam_slider(driver), 120, 0.2, "the λ slider")
    if key is not None:
        before = thumb.get_attribute("value")
        driver.execute_script("arguments[0].focus();", thumb)  # a visually hidden input
        ActionChains(driver).send_keys(key).perform()
        browser.wait_until(lambda: lam_slider(driver).get_attribute("value") != before, 30,
                           0.1, "the λ slider to move")
        time.sleep(1.0)  # the slider sends its value after a short debounce; the page reruns
        browser.wait_until(lambda: not page_running(driver), 60, 0.2, "the page's rerun")
    return float(lam_slider(driver).get_attribute("value"))


def page_running(driver) -> bool:
    """Whether streamlit's status widget says the script is running."""
    return bool(driver.execute_script(
        "const w = document.querySelector(\"[data-testid='stStatusWidget']\");"
        "return !!w && /Running|Stop/.test(w.textContent);"))


def descendants(name: str) -> list[psutil.Process]:
    """This process's descendants whose command line contains ``name``."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if name in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:  # ended meanwhile
            pass
    return out


def _total(procs: list[psutil.Process], measure) -> float:
    """Σ measure(p) over the processes still there."""
    total = 0.0
    for p in procs:
        try:
            total += measure(p)
        except psutil.Error:  # ended meanwhile
            pass
    return total


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return _total(procs, lambda p: sum(p.cpu_times()[:2]))


def memory_gb(procs: list[psutil.Process]) -> float:
    """Proportional set size (shared pages split between their processes), GB."""
    return _total(procs, lambda p: p.memory_full_info().pss) / 1e9


def record_spans(results: Path) -> dict[str, tuple[float, float]]:
    """Key -> (start, end) of every stored training: the record file's time is its end, its
    wall time (train + evaluate) leads back to its start (approximately: the store's own
    writes are left out)."""
    out = {}
    for path in results.glob("*.json"):
        end = path.stat().st_mtime
        out[path.stem] = (end - json.loads(path.read_text())["wall_time"]["total"], end)
    return out


def most_at_once(spans) -> int:
    """The most of the (start, end) spans that overlap at one time."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def open_tabs(driver, url: str, n: int) -> tuple[list[str], list[float]]:
    """``n`` tabs of the app, their λ sliders left at the default, at the minimum and at the
    maximum in turn; their window handles and λ values."""
    from selenium.webdriver.common.keys import Keys

    lam_keys = (None, Keys.HOME, Keys.END)  # the default λ, the slider's minimum, its maximum
    tabs, lams = [], []
    for i in range(n):
        if i:
            driver.switch_to.new_window("tab")
        driver.get(url)
        browser.wait_until(lambda: browser.sidebar_button(driver, "Train"), 180, 0.2,
                           f"the Train button of tab {i + 1}")
        lams.append(set_lam(driver, lam_keys[i % len(lam_keys)]))
        tabs.append(driver.current_window_handle)
    return tabs, lams


def press_train(driver, tabs: list[str], at: float) -> None:
    """Tell every tab to press Train and start its TAB_CLOCK at ``at`` (time.time()), by its
    own timer: the presses come at one moment however slowly the bench reaches each tab."""
    for tab in tabs:
        driver.switch_to.window(tab)
        driver.execute_script(f"setTimeout(() => {{ {PRESS_TRAIN} {TAB_CLOCK} }}, "
                              f"{at * 1000:.0f} - Date.now());")


def watch(driver, tabs: list[str], since: float, timeout: float) -> dict:
    """Read every unfinished tab (TAB_STATE), round after round, until each has shown its
    result or an error, or ``timeout`` s after ``since`` (time.time()). Returns ``done`` (tab
    index -> seconds after ``since`` when it showed its result), ``errors``, ``places`` (the
    highest place in line each finished tab showed), ``joined`` (how many were told another
    session trains their settings) and ``rounds`` (seconds per round of reads)."""
    from selenium.common.exceptions import TimeoutException

    out = {"done": {}, "errors": set(), "places": [], "joined": 0, "rounds": [], "pressed": []}
    while len(out["done"]) + len(out["errors"]) < len(tabs) and time.time() - since < timeout:
        t0 = time.perf_counter()
        for i, tab in enumerate(tabs):
            if i in out["done"] or i in out["errors"]:
                continue
            driver.switch_to.window(tab)
            try:
                state = driver.execute_script(TAB_STATE)
            except TimeoutException:  # a renderer starved by the server (nice 19): next round
                continue
            if state["error"]:
                out["errors"].add(i)
            elif state.get("done"):
                out["done"][i] = state["done"] / 1000 - since
                out["pressed"].append(state["pressed"] / 1000 - since)
                out["places"].append(state["place"])
                out["joined"] += state["joined"]
        out["rounds"].append(time.perf_counter() - t0)
        time.sleep(1.0)
    return out


def charts_drawn(driver, tabs: list[str]) -> int:
    """How many of ``tabs`` show an accuracy chart with its Inverted curve."""
    drawn = 0
    for tab in tabs:
        driver.switch_to.window(tab)
        drawn += any("Inverted" in t for t in browser.plot_traces(driver))
    return drawn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="browser sessions (default 30)")
    parser.add_argument("--browser-nice", type=int, default=19,
                        help="niceness of chromium (default 19: the server comes first; 0: equal)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write the server's log and every health check (health.csv) there")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds to wait for every result after the first Train (default 1800)")
    args = parser.parse_args()
    if browser.missing():
        print(f"needs {', '.join(browser.missing())} (apt-get install chromium chromium-driver)")
        return 2
    os.environ[session.TINY_ENV_VAR] = "1"  # the configurations the server will build, here too
    print(f"hardware: {describe_device()}; load average at start {os.getloadavg()[0]:.1f} "
          f"(other jobs share the machine); sessions: {args.sessions}; server slots: "
          f"{session.SCHEDULER.slots}; chromium at nice {args.browser_nice}")
    with tempfile.TemporaryDirectory(prefix="mimmx-class-") as tmp:
        results, log = Path(tmp) / "results", Path(tmp) / "streamlit.log"
        env = {session.TINY_ENV_VAR: "1", session.STORE_ENV_VAR: str(results), "MIMMX_THREADS": "1"}
        with browser.server(env, log=log) as url:
            server = descendants("streamlit")
            health = HealthPoller(url, Path(tmp) / "health.txt")
            health.start()
            driver = open_browser(args.browser_nice, Path(tmp) / "chromium")
            renicer = Renicer(args.browser_nice)
            try:
                t0 = time.perf_counter()
                tabs, lams = open_tabs(driver, url, args.sessions)
                print(f"{len(tabs)} tabs open, λ set, in {time.perf_counter() - t0:.0f} s; "
                      f"λ values: {sorted(set(lams))}")
                renicer.start()  # from now on the server comes first
                pressed = time.time() + 5 + 0.2 * len(tabs)  # time enough to tell every tab
                press_train(driver, tabs, pressed)
                time.sleep(max(0.0, pressed - time.time()))
                groups = {"server": lambda: server, "workers": lambda: descendants("mimmx.app.workers"),
                          "browser": lambda: descendants("chrom")}
                cpu0 = {k: cpu_seconds(procs()) for k, procs in groups.items()}
                seen = watch(driver, tabs, pressed, args.timeout)
                seconds = time.time() - pressed
                cores = {k: (cpu_seconds(procs()) - cpu0[k]) / seconds for k, procs in groups.items()}
                memory = {k: memory_gb(procs()) for k, procs in groups.items()}
                drawn = charts_drawn(driver, [tabs[i] for i in seen["done"]])
            finally:
                driver.quit()
                health.stop()
                renicer.halt.set()
        started = [key for _, key in TRAINING_LINE.findall(log.read_text())]
        spans = record_spans(results)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, args.keep / "streamlit.log")
            (args.keep / "health.csv").write_text("seconds_from_first_train,latency_s\n" + "".join(
                f"{start - pressed:.2f},{latency:.4f}\n" for start, latency in health.checks))

    base = session.default_request("exp1")
    wanted = {cfg.hash() for lam in set(lams)
              for cfg in session.configs(dataclasses.replace(base, lam=lam)).values()}
    before = [latency for start, latency in health.checks if start < pressed]
    after = sorted(latency for start, latency in health.checks if start >= pressed)
    slowest = max(before + after)
    print(f"health checks: {len(before) + len(after)}, failed {health.failures}; slowest while the "
          f"tabs opened {max(before):.2f} s; after the first Train: slowest {max(after):.2f} s, "
          f"median {after[len(after) // 2] * 1000:.0f} ms, 99th percentile "
          f"{after[int(0.99 * (len(after) - 1))]:.2f} s, {sum(x >= HEALTH_LIMIT for x in after)} "
          f"of {len(after)} over {HEALTH_LIMIT:g} s")
    done = seen["done"]
    if seen["pressed"]:
        print(f"Train was pressed in every finished tab within {max(seen['pressed']):.2f} s of "
              f"the moment set (by the tabs' own clocks)")
    if done:
        rounds = sorted(seen["rounds"])
        print(f"results: {len(done)}/{len(tabs)} tabs finished; every session showed its result "
              f"{max(done.values()):.0f} s after the first Train (the first {min(done.values()):.0f} s, "
              f"by the tabs' own clocks); the last record was stored "
              f"{max(end for _, end in spans.values()) - pressed:.0f} s after it; a round of reads "
              f"over the tabs took up to {rounds[-1]:.0f} s")
    print(f"tabs with an error: {len(seen['errors'])}; with their accuracy chart drawn: {drawn}; "
          f"that showed a place in line: {sum(p > 0 for p in seen['places'])} (the highest place "
          f"{max(seen['places'], default=0)}); told another session trains their settings: "
          f"{seen['joined']}")
    print(f"trainings started: {len(started)} for {len(wanted)} distinct configurations "
          f"({len(set(started))} distinct started); records in the store: {len(spans)}; most "
          f"trainings at once ≈ {most_at_once(spans.values())} (slots {session.SCHEDULER.slots})")
    print(f"CPU after the first Train, cores on average: server {cores['server']:.2f}, its training "
          f"processes {cores['workers']:.2f}, browser {cores['browser']:.2f}; memory at the end: "
          f"browser {memory['browser']:.1f} GB, server {memory['server']:.1f} GB, training processes "
          f"{memory['workers']:.1f} GB; load average at the end {os.getloadavg()[0]:.1f}; chromium "
          f"threads set back to nice {args.browser_nice}: {renicer.reniced}")
    checks = {
        f"responsive (every health check < {HEALTH_LIMIT:g} s)": slowest < HEALTH_LIMIT and not health.failures,
        "every session got its result": len(done) == len(tabs) and drawn == len(tabs),
        "nothing trained twice": sorted(started) == sorted(wanted) and set(spans) == wanted,
    }
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
