"""``python -m mimmx warm-cache``: pre-train a classroom set of presets into the app's results
store, so that the app shows them at once.

The presets are, for every scenario of the app, its default request
(:func:`mimmx.app.session.default_request`: Baseline and the full method, the poster's
settings, 10 epochs) and, for scenarios whose factors are given by a correlation strength,
the same request at r = 0.5, 0.7, 0.9 and 0.99. The configurations come from
:func:`mimmx.app.session.configs`, so their hashes are exactly those the app looks up (with
``MIMMX_APP_TINY=1`` the app's tiny ones). A configuration already in the store is never
retrained; the rest are trained by :func:`mimmx.runs.run_many` (``--jobs N``: a process
pool of N workers), evaluated as ``mimmx reproduce`` does (so its tables reuse them too), and
given the app's embeddings.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time

from mimmx.app.session import R_GRID
from mimmx.config import RunConfig
from mimmx.errors import UserError


@dataclasses.dataclass
class Preset:
    scenario: str
    r: float | None
    label: str  # the method row
    config: RunConfig


def presets(scenarios=None, r_values=R_GRID) -> list[Preset]:
    """The classroom set (see the module docstring), one entry per distinct configuration."""
    from mimmx.app import session
    from mimmx.runs.experiments import EXPERIMENTS

    scenarios = list(scenarios or EXPERIMENTS)
    unknown = [s for s in scenarios if s not in EXPERIMENTS]
    if unknown:
        raise UserError(f"unknown scenario(s) {unknown}; choose from {list(EXPERIMENTS)}")
    out, seen = [], set()
    for scenario in scenarios:
        default = session.default_request(scenario)
        requests = [default]
        if session.takes_r(scenario):
            requests += [dataclasses.replace(default, r=r) for r in r_values]
        for req in requests:
            for label, cfg in session.configs(req).items():
                if cfg.hash() not in seen:
                    seen.add(cfg.hash())
                    out.append(Preset(scenario, req.r, label, cfg))
    return out


def warm(scenarios=None, r_values=R_GRID, jobs: int = 1, store=None, progress=None) -> dict:
    """Train every preset missing from ``store`` (default: the app's); returns
    ``{"cached": [Preset], "trained": [Preset]}``. ``progress(preset, seconds)`` after each."""
    from mimmx.app import session
    from mimmx.runs import run_many

    store = store or session.store()
    todo = presets(scenarios, r_values)
    cached = [p for p in todo if store.get(p.config) is not None]
    missing = [p for p in todo if store.get(p.config) is None]
    by_key = {p.config.hash(): p for p in missing}
    t0 = time.perf_counter()

    def done(record: dict, reused: bool) -> None:
        preset = by_key[record["key"]]
        session.add_app_embeddings(store, preset.config)
        if progress:
            progress(preset, time.perf_counter() - t0)

    if missing:
        run_many([p.config for p in missing], store, backend="pool" if jobs > 1 else "local",
                 workers=jobs, progress=done)
    return {"cached": cached, "trained": missing}


def build_scenarios(scenarios=None, progress=None, steps=None) -> dict[str, float]:
    """Build (into the scenario cache) the scenario of every app scenario's default request:
    what the first Train needs; seconds per scenario. ``progress(name, seconds)`` after each;
    ``steps(name, what, done, total)`` as a build goes through its slow steps (exp1's fractures,
    chunk by chunk: :func:`mimmx.scenarios.factors.reporting`)."""
    from mimmx.app import session
    from mimmx.runs.experiments import EXPERIMENTS
    from mimmx.scenarios.factors import reporting
    from mimmx.trainer import build_scenario

    out = {}
    for name in scenarios or EXPERIMENTS:
        t = time.perf_counter()
        with reporting(functools.partial(steps, name) if steps else None):
            build_scenario(next(iter(session.configs(session.default_request(name)).values())))
        out[name] = time.perf_counter() - t
        if progress:
            progress(name, out[name])
    return out


class StepBars:
    """A ``steps`` callback for :func:`build_scenarios` that draws a tqdm bar (on stderr) per
    slow step of a build, from its first report (done = 0) to its last (done = total)."""

    def __init__(self):
        self.bar = None

    def __call__(self, name: str, what: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if done == 0 or self.bar is None:
            self.close()
            self.bar = tqdm(total=total, desc=f"scenario {name}: {what}", unit="image", leave=False)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("warm-cache", help="pre-train the app's classroom presets into its results "
                                          "store, so that the app shows them at once")
    p.add_argument("--scenarios", nargs="+", metavar="NAME",
                   help="scenarios (default: all of the app's: exp1 exp2 exp3 morpho fashion)")
    p.add_argument("--r", nargs="*", type=float, default=list(R_GRID), dest="r_values",
                   help="correlation strengths besides each scenario's own (default 0.5 0.7 0.9 "
                        "0.99; give none to train only the defaults)")
    p.add_argument("--jobs", type=int, default=1, help="training processes (default 1)")
    p.add_argument("--scenarios-only", action="store_true",
                   help="only build the scenarios the app's defaults need (cached on disk, so the "
                        "first Train starts at once); train nothing")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be trained and what is cached; train nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mimmx.app import session

    if args.jobs < 1:
        raise UserError(f"--jobs must be ≥ 1, got {args.jobs}")
    bad = [r for r in args.r_values if not 0.0 <= r <= 1.0]
    if bad:
        raise UserError(f"--r values must be probabilities in [0, 1], got {bad}")
    if args.scenarios_only:
        def built(name: str, seconds: float) -> None:
            print(f"scenario {name}: ready ({seconds:.1f} s)", flush=True)

        print("building the app's default scenarios once (cached under data/cache/scenarios) ...",
              flush=True)
        build_scenarios(args.scenarios, built, StepBars())
        return 0
    store = session.store()
    all_presets = presets(args.scenarios, args.r_values)
    print(f"results store: {store.root}" + ("  (tiny presets: MIMMX_APP_TINY is set)"
                                              if session.tiny() else ""))
    print(f"{'scenario':9s} {'r':>5s}  {'method':22s} {'key':16s}  state")
    for p in all_presets:
        r = "-" if p.r is None else f"{p.r:g}"
        state = "cached" if store.get(p.config) is not None else "to train"
        print(f"{p.scenario:9s} {r:>5s}  {p.label:22s} {p.config.hash():16s}  {state}")
    n_cached = sum(store.get(p.config) is not None for p in all_presets)
    print(f"{len(all_presets)} presets: {n_cached} cached, {len(all_presets) - n_cached} to train")
    if args.dry_run or n_cached == len(all_presets):
        return 0

    def progress(p: Preset, seconds: float) -> None:
        print(f"trained {p.scenario} r={p.r} {p.label} ({seconds:.0f} s so far)", flush=True)

    out = warm(args.scenarios, args.r_values, args.jobs, store, progress)
    print(f"done: {len(out['trained'])} trained, {len(out['cached'])} were cached")
    return 0
