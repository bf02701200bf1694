"""How live the app feels with the default preset (exp1's default request, not tiny: Baseline
and MIMM-X + DLS + CAW, 10 epochs, exp1's 10,000 training images): the time from pressing Train to the
first chart update, to the first accuracy point, and to the end of the whole run. The
in-process measurement polls the shared state as the page does once the first point is in
(polling it every few milliseconds deep-copies it under the trainers' lock and slowed the
whole run from ~50 s to ~190 s).

1. In-process (``mimmx.app.session.Job``, what the page polls): the time to the first training
   step in the shared state (the loss/γ chart) and to the first evaluation (the accuracy
   chart), with the scenario built on demand and the training processes started on Train
   ("cold"), and with both ready, as the page's background ``prebuild`` leaves them
   ("prebuilt"); the whole run; and the share of the training spent on live embeddings.
2. In a real headless browser (if chromium is installed): ``streamlit run app.py``, Train
   pressed ``--read`` seconds (default 5) after the page is fully drawn, as a user who reads
   it first (the page builds the scenario in the background meanwhile; ``--read 0`` presses
   at once), then the first live chart (losses / γ's) and the first Inverted point as the
   browser shows them (the page polls every second), and the whole run (read every 2 s:
   reading the page's text through the driver costs most of a core). The browser and the
   page's polling share the two cores with the training, so the whole run is slower there.

    MIMMX_THREADS=1 python bench/bench_app.py [--no-browser] [--read SECONDS]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from mimmx.app import session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import browser  # noqa: E402 - tests/browser.py, the headless-chromium harness

from mimmx.device import describe_device
from mimmx.runs import ResultStore


def job_times(prebuilt: bool, full: bool, store: ResultStore) -> dict:
    cfgs = session.configs(session.default_request("exp1"))
    first = next(iter(cfgs.values()))
    if prebuilt:  # as the page's prebuild leaves it: the scenario built, the training processes up
        session.scenario_for(first)
        session.SCHEDULER.workers.wait_ready()
    else:
        session._scenarios.clear()  # cold: nothing built in this process yet
        session._infos.clear()
    t0 = time.perf_counter()
    job = session.Job(cfgs, store).start()
    out, polls = {}, 0
    while job.running:
        # until the first evaluation: the progress chart's snapshot every 20 ms, for timing;
        # then progress every 1 s and everything every 2 s, at least as often as the page
        # (2 s and 5 s, app.py), since a snapshot deep-copies the shared state under the lock
        s = job.snapshot(keys=("cached", "history", "steps"))
        runs = list(s["runs"].values())
        if "first_step" not in out and any(r["steps"] for r in runs):
            out["first_step"] = time.perf_counter() - t0
        if "first_eval" not in out and any(r["history"] for r in runs):
            out["first_eval"] = time.perf_counter() - t0
            if not full:
                job.stop()
        if "first_eval" in out:
            polls += 1
            if polls % 2 == 0:
                job.snapshot()
        time.sleep(1.0 if "first_eval" in out else 0.02)
    out["total"] = time.perf_counter() - t0
    s = job.snapshot()
    if full:
        train = sum(r["record"]["wall_time"]["train"] for r in s["runs"].values())
        out["live_share"] = s["live_seconds"] / train
    return out


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process's children: the streamlit server (the page
    and the training) and the browser (chromedriver, chromium)."""
    out = {"server": 0.0, "browser": 0.0}
    for p in psutil.Process().children(recursive=True):
        try:
            t = p.cpu_times()
            out["browser" if "chrom" in p.name() else "server"] += t.user + t.system
        except psutil.Error:  # ended meanwhile
            pass
    return out


def browser_times(results: str, read: float) -> dict:
    env = {"MIMMX_APP_RESULTS": results, "MIMMX_APP_TINY": "0"}
    out = {}
    with browser.server(env) as url, browser.browser() as driver:
        t0 = time.perf_counter()
        driver.get(url)
        browser.wait_until(lambda: "What a good result" in browser.page_text(driver), 120)
        out["page_drawn"] = time.perf_counter() - t0
        time.sleep(read)
        browser.sidebar_button(driver, "Train").click()
        t0, cpu0 = time.perf_counter(), cpu_seconds()

        def live_chart() -> bool:
            names = {n for t in browser.plot_traces(driver) for n in t}
            return bool(names & {"loss_y", "Validation"})

        browser.wait_until(live_chart, 60, 0.05)
        out["first_chart"] = time.perf_counter() - t0
        browser.wait_until(lambda: any("Inverted" in t for t in browser.plot_traces(driver)), 60, 0.05)
        out["first_accuracy"] = time.perf_counter() - t0
        browser.wait_until(lambda: "Final results" in (text := browser.page_text(driver))
                           and "Running:" not in text, 300, 2.0)  # reading the page costs CPU
        out["total"] = time.perf_counter() - t0
        out["cpu"] = {k: v - cpu0[k] for k, v in cpu_seconds().items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--read", type=float, default=5.0,
                        help="seconds between the page being drawn and pressing Train (default 5)")
    args = parser.parse_args()
    os.environ.pop(session.TINY_ENV_VAR, None)
    print(f"hardware: {describe_device()}; MIMMX_THREADS={os.environ.get('MIMMX_THREADS', '-')}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        cold = job_times(False, False, ResultStore(f"{tmp}/cold"))
        print(f"in-process, scenario cold:     first step {cold['first_step']:.2f} s, "
              f"first evaluation {cold['first_eval']:.2f} s")
        warm = job_times(True, True, ResultStore(f"{tmp}/warm"))
        print(f"in-process, scenario prebuilt: first step {warm['first_step']:.2f} s, "
              f"first evaluation {warm['first_eval']:.2f} s, whole run {warm['total']:.1f} s, "
              f"live embeddings {100 * warm['live_share']:.1f} % of the training time")
        if args.no_browser or browser.missing():
            print("browser: skipped" + (f" (missing {browser.missing()})" if browser.missing() else ""))
        else:
            b = browser_times(f"{tmp}/browser", args.read)
            print(f"browser: page drawn {b['page_drawn']:.1f} s after opening, Train pressed "
                  f"{args.read:g} s later; after Train: first "
                  f"chart {b['first_chart']:.2f} s, first accuracy point {b['first_accuracy']:.2f} s, "
                  f"whole run {b['total']:.1f} s; CPU seconds meanwhile: streamlit server (page "
                  f"and training) {b['cpu']['server']:.0f}, browser {b['cpu']['browser']:.0f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
