"""Reproduce the poster's tables on the analogues, and sweep the correlation strength.

:func:`reproduce` trains every poster row of an experiment (:mod:`mimmx.runs.experiments`) for
every seed, through the results store (a finished (config, seed) is never retrained), and
writes ``<out>/<exp>.md`` (the poster's table layout, mean ± std over seeds, the command, the
commit, the hardware, the wall time) and its JSON twin ``<out>/<exp>.json``.

:func:`sweep` trains methods over a range of correlation strengths r = P(z = y) and writes the
inverted-set accuracy against r as a table and a plotly figure (``<out>/sweep_<scenario>.*``).

Model selection is the trainer's: the epoch of best ``train.select`` score on the confounded
``selection`` split (by default its cell-balanced y accuracy). The Inverted and Balanced sets are
only measured, never selected or tuned on.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mimmx.config import RunConfig
from mimmx.errors import UserError
from mimmx.evaluation.report import SHORT, to_records
from mimmx.evaluation.tables import DASH, accuracy_table, probe_table, summarise, to_markdown
from mimmx.runs.experiments import (
    EXPERIMENTS,
    FULL_ROWS,
    ORACLE,
    PEER_ROWS,
    POSTER_Y,
    Row,
    row_config,
    rows,
)
from mimmx.runs.folder import atomic_write
from mimmx.runs.jobs import Progress, run_many, seeds_list
from mimmx.runs.store import ResultStore

POSTER_SETS = ("validation", "inverted", "balanced")  # the poster's columns
PROBE_NAMES = {"logreg": "logistic-regression probes", "knn": "kNN probes (k = 30)"}


@dataclass
class Collected:
    """Per-seed tidy tables gathered from records, one ``method`` (row label) and ``seed``
    column in each: ``heads`` (head, test_set, accuracy), ``probes`` (probe, part, label,
    accuracy), ``leakage`` (probe, leakage), ``mi`` (pair, mi), ``runs`` (one line per record:
    key, best epoch, wall time)."""

    heads: pd.DataFrame
    probes: pd.DataFrame
    leakage: pd.DataFrame
    mi: pd.DataFrame
    runs: pd.DataFrame


def collect(labelled: Iterable[tuple[str, dict]]) -> Collected:
    """Tidy tables from ``(method label, record)`` pairs."""
    tables: dict[str, list[pd.DataFrame]] = {"heads": [], "probes": [], "leakage": [], "mi": []}
    runs = []
    for label, rec in labelled:
        seed = rec["config"]["seed"]
        for name in tables:
            frame = pd.DataFrame.from_records(rec["report"].get(name, []))
            if not frame.empty:
                frame.insert(0, "seed", seed)
                frame.insert(0, "method", label)
                tables[name].append(frame)
        runs.append({"method": label, "seed": seed, "key": rec["key"],
                     "best_epoch": (rec.get("best") or {}).get("epoch"),
                     "wall_time": rec["wall_time"]["total"],
                     "hardware": rec["environment"].get("hardware"),
                     "commit": rec["environment"].get("commit")})
    frames = {n: pd.concat(t, ignore_index=True) if t else pd.DataFrame() for n, t in tables.items()}
    return Collected(**frames, runs=pd.DataFrame(runs))


# ------------------------------------------------------------------------------- reproduce


@dataclass
class Reproduction:
    experiment: str
    tables: Collected
    markdown: str
    meta: dict
    records: list[dict] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


def select_rows(experiment: str, wanted: Sequence[str] | None = None) -> tuple[Row, ...]:
    """The experiment's rows, or those named in ``wanted`` (a row's slug, e.g. ``mimmx_dls``,
    or its label, e.g. ``"MIMM-X + DLS"``, case-insensitive), in the experiment's order."""
    all_rows = rows(experiment)
    if not wanted:
        return all_rows
    keys = {w.lower() for w in wanted}
    known = {r.slug.lower() for r in all_rows} | {r.label.lower() for r in all_rows}
    unknown = sorted(keys - known)
    if unknown:
        raise UserError(f"unknown row(s) {unknown} for {experiment}; choose from "
                        f"{', '.join(r.slug for r in all_rows)}")
    return tuple(r for r in all_rows if r.slug.lower() in keys or r.label.lower() in keys)


def reproduce(experiment: str, seeds: int | Iterable[int] = 3, *, overrides: Sequence[str] = (),
              rows_wanted: Sequence[str] | None = None, out: str | Path | None = "results",
              store: ResultStore | None = None, backend: str = "local",
              workers: int | None = None, address: str | None = None,
              threads: int | None = None, eval_options: dict | None = None,
              command: str | None = None, progress: Progress | None = None) -> Reproduction:
    """Train (or load from ``store``) every row × seed of ``experiment``; write
    ``<out>/<experiment>.md`` and ``.json`` unless ``out`` is None. ``overrides``
    (``key=value``) apply to every config, after the row's own settings."""
    t0 = time.perf_counter()
    _check_out(out)
    chosen = select_rows(experiment, rows_wanted)
    seed_list = seeds_list(seeds)
    store = store if store is not None else ResultStore()
    jobs = [(row, row_config(experiment, row, s).override(list(overrides)))
            for row in chosen for s in seed_list]
    reused = []
    labels = {cfg.hash(): row.label for row, cfg in jobs}
    records = run_many([cfg for _, cfg in jobs], store, backend=backend, workers=workers,
                       address=address, threads=threads, eval_options=eval_options,
                       progress=_counting(progress, reused, labels))
    labelled = [(row.label, rec) for (row, _), rec in zip(jobs, records)]
    tables = collect(labelled)
    command = command or _command("reproduce", experiment, "--seeds", str(len(seed_list)),
                                  *[a for o in overrides for a in ("--set", o)],
                                  *(["--rows", *rows_wanted] if rows_wanted else []),
                                  *(["--backend", backend] if backend != "local" else []))
    meta = _meta(records, command, seed_list, store, time.perf_counter() - t0, sum(reused))
    meta.update(experiment=experiment, rows=[r.label for r in chosen], overrides=list(overrides),
                select=sorted({cfg.train.select for _, cfg in jobs}))
    md = reproduction_markdown(experiment, tables, meta)
    result = Reproduction(experiment, tables, md, meta, records)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.paths["markdown"] = out / f"{experiment}.md"
        result.paths["json"] = out / f"{experiment}.json"
        atomic_write(result.paths["markdown"], md)
        atomic_write(result.paths["json"], _twin(meta, tables))
    return result


def _check_out(out: str | Path | None) -> None:
    """Refuse an output folder that is a file, before anything trains."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file, not a folder; give a folder for the tables")


def _counting(progress: Progress | None, reused: list,
              labels: dict[str, str] | None = None) -> Progress:
    """Count the reused records; hand ``progress`` each record with its row label (``"row"``)."""
    def cb(record: dict, was_reused: bool) -> None:
        reused.append(was_reused)
        if progress:
            row = (labels or {}).get(record["key"])
            progress({**record, "row": row} if row else record, was_reused)
    return cb


def _command(*args: str) -> str:
    return "python -m mimmx " + shlex.join(args)


def _meta(records: list[dict], command: str, seeds: list[int], store: ResultStore,
          elapsed: float, n_reused: int) -> dict:
    from mimmx.device import describe_device
    from mimmx.runs.info import git_commit

    distinct = {r["key"]: r for r in records}.values()
    hardware: dict[str, int] = {}
    for r in distinct:
        hw = r["environment"].get("hardware") or "unknown"
        hardware[hw] = hardware.get(hw, 0) + 1
    return {
        "command": command, "commit": git_commit(), "seeds": seeds,
        "hardware_now": describe_device(), "hardware_of_runs": hardware,
        "runs": len(distinct), "reused": n_reused, "trained": len(distinct) - n_reused,
        "wall_time_runs": sum(r["wall_time"]["total"] for r in distinct),
        "wall_time_now": elapsed, "store": str(store.root),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _twin(meta: dict, tables: Collected) -> str:
    return json.dumps({**meta, "tables": {n: to_records(getattr(tables, n))
                                          for n in ("heads", "probes", "leakage", "mi", "runs")}},
                      indent=1, ensure_ascii=False)


SELECTION_RULES = {
    "y": "the epoch of best y accuracy on the confounded selection split",
    "y_cell_balanced": "the epoch of best cell-balanced y accuracy on the confounded selection "
                       "split (every cell (y, z_1..z_N) weighs the same; `train.select`)",
}


def _selection_rule(select: Sequence[str]) -> str:
    return " / ".join(SELECTION_RULES[s] for s in select)


def heads_for_poster(heads: pd.DataFrame) -> pd.DataFrame:
    """Table (a) in the poster's layout: rows = methods, columns = (head, Val./Inv./Bal.)."""
    d = heads.assign(test_set=heads["test_set"].map(SHORT))
    return accuracy_table(d)


def beside_poster(experiment: str, heads: pd.DataFrame) -> pd.DataFrame | None:
    """The y head's Val./Inv./Bal. (mean ± std over seeds) beside the poster's numbers, one row
    per method; None when the poster has no table for ``experiment``."""
    poster = POSTER_Y.get(experiment)
    if poster is None or heads.empty:
        return None
    y = heads[(heads["head"] == "f_y→y") & heads["test_set"].isin(list(POSTER_SETS))]
    y = y.assign(test_set=lambda d: d["test_set"].map(SHORT))
    ours = summarise(y, "method", "test_set")
    ours.columns = [f"mimmx {c}" for c in ours.columns]
    theirs = pd.DataFrame([poster.get(m, (None,) * 3) for m in ours.index], index=ours.index,
                          columns=[f"poster {c}" for c in ("Val.", "Inv.", "Bal.")])
    return pd.concat([ours, theirs.map(lambda v: DASH if pd.isna(v) else f"{v:.1f}")], axis=1)


def against_oracle(heads: pd.DataFrame) -> pd.DataFrame | None:
    """Every row's y accuracy on Inverted and its worst group (Balanced set) beside the
    Oracle's, and the gap (row − Oracle, points; means over seeds); None without an Oracle."""
    y = heads[heads["head"] == "f_y→y"]
    means = y.groupby(["method", "test_set"], sort=False)["accuracy"].mean().unstack()
    if ORACLE.label not in means.index or "worst" not in means.columns:
        return None
    ceiling = means.loc[ORACLE.label]
    table = pd.DataFrame({"Inv.": means["inverted"], "Inv. − Oracle": means["inverted"] - ceiling["inverted"],
                          "Worst": means["worst"], "Worst − Oracle": means["worst"] - ceiling["worst"]})
    return table.rename_axis("method").round(1).map(lambda v: f"{v:+.1f}" if v < 0 else f"{v:.1f}")


def reproduction_markdown(experiment: str, t: Collected, meta: dict) -> str:
    from mimmx.scenarios import get_spec

    spec = get_spec(EXPERIMENTS[experiment][0]["scenario"]["name"])
    n_seeds = len(meta["seeds"])
    lines = [f"# {experiment}: the poster's tables on the {spec.dataset} analogue", ""]
    if spec.story:
        lines += [spec.story, ""]
    factors = "; ".join(f"z{i + 1} = {f.name}" + (f" (stands for {f.analogue})" if f.analogue else "")
                        for i, f in enumerate(spec.factors))
    lines += [f"Scenario `{spec.name}`: y = primary task; {factors}. Every cell is the mean ± std "
              f"over {n_seeds} seed{'s' if n_seeds != 1 else ''} ({', '.join(map(str, meta['seeds']))}). "
              f"Model selection: {_selection_rule(meta['select'])}; the Inverted "
              "and Balanced sets are never used to select or tune.", ""]
    lines.append(to_markdown(heads_for_poster(t.heads),
                             f"(a) Classification accuracy [%] across the evaluation sets; "
                             f"Worst: the lowest y accuracy over the Balanced set's cells (y, z_1..z_N) "
                             f"({_spread(n_seeds)})"))
    ceiling = against_oracle(t.heads)
    if ceiling is not None:
        lines.append(to_markdown(ceiling, "Every row against the Oracle (the same model and number of "
                                          "images trained without confounding, on the same test sets): "
                                          "f_y → y on Inverted and the worst group of the Balanced set, "
                                          "means over seeds [%], gaps in points"))
    side = beside_poster(experiment, t.heads)
    if side is not None:
        lines.append(to_markdown(side, "f_y → y beside the poster's (its real cohorts; ours: the "
                                       f"analogue, {_spread(n_seeds)})"))
    for probe in pd.unique(t.probes["probe"]) if not t.probes.empty else []:
        d = t.probes[t.probes["probe"] == probe][["method", "seed", "part", "label", "accuracy"]]
        lines.append(to_markdown(probe_table(d),
                                 f"(b) Disentanglement, {PROBE_NAMES.get(probe, probe)} on frozen "
                                 f"features, fitted and scored on disjoint halves of the Balanced "
                                 f"set. Accuracy [%], ideally chance (50% for binary labels) "
                                 f"({_spread(n_seeds)})"))
    if not t.leakage.empty:
        lines.append(to_markdown(
            summarise(t.leakage, "method", "probe", "leakage", decimals=3),
            f"Leakage score of table (b): 0 = disentangled, 1 = full leakage ({_spread(n_seeds)})"))
    if not t.mi.empty:
        lines.append(to_markdown(
            summarise(t.mi, "method", "pair", "mi", decimals=3),
            "Post-hoc MI [nats] between frozen f_y and f_z on the held-out half of the Balanced "
            f"set, from a fresh MINE; ≈ 0 when disentangled ({_spread(n_seeds)})"))
    lines += ["## How these numbers were made", "",
              f"- Command: `{meta['command']}`",
              f"- Commit: `{meta['commit']}`",
              "- Hardware: " + "; ".join(f"{hw} ({n} run{'s' if n != 1 else ''})"
                                         for hw, n in meta["hardware_of_runs"].items()),
              f"- Wall time: {_duration(meta['wall_time_runs'])} of training and evaluation over "
              f"{meta['runs']} runs; this invocation took {_duration(meta['wall_time_now'])} "
              f"({meta['trained']} trained now, {meta['reused']} reused from the results store)",
              f"- Overrides: {', '.join(f'`{o}`' for o in meta['overrides']) or 'none'}",
              f"- Written {meta['time']}", ""]
    return "\n".join(lines)


def _spread(n: int) -> str:
    return f"mean ± std over {n} seeds" if n > 1 else "1 seed, no spread"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------------- sweep


@dataclass
class Sweep:
    scenario: str
    frame: pd.DataFrame  # method, r, seed, validation, inverted, balanced (y accuracy, %)
    figure: object  # plotly Figure
    markdown: str
    meta: dict
    paths: dict[str, Path] = field(default_factory=dict)


def method_row(name: str) -> Row:
    """A method by its poster-row slug (``baseline``, ``dcor``, ``mimm``, ``mimmx`` = MIMM-X
    with DLS and CAW, ``mimmx_dls``, …)."""
    by_slug = {r.slug: r for r in (*FULL_ROWS, ORACLE, *PEER_ROWS)}
    if name not in by_slug:
        raise UserError(f"unknown method {name!r}; choose from {', '.join(by_slug)}")
    return by_slug[name]


def sweep_config(scenario: str, row: Row, r: float, seed: int) -> RunConfig:
    """The row's config with the experiment's poster settings (when ``scenario`` is one of the
    experiments, else the defaults) and every factor's correlation strength set to ``r``."""
    if scenario in EXPERIMENTS:
        cfg = row_config(scenario, row, seed)
    else:
        cfg = RunConfig().replace({"scenario.name": scenario, "method.name": row.method,
                                   "method.dls": row.dls, "method.caw": row.caw, "seed": seed})
    return cfg.replace({"scenario.r": r})


def sweep(scenario: str = "exp1", methods: Sequence[str] = ("baseline", "mimmx"),
          r: Sequence[float] = (0.5, 0.7, 0.9, 0.99), seeds: int | Iterable[int] = 3, *,
          overrides: Sequence[str] = (), out: str | Path | None = "results",
          store: ResultStore | None = None, backend: str = "local", workers: int | None = None,
          address: str | None = None, threads: int | None = None,
          eval_options: dict | None = None, command: str | None = None,
          progress: Progress | None = None) -> Sweep:
    """Inverted-set accuracy of f_y→y against the correlation strength r, per method: a tidy
    frame (one row per method × r × seed), a "mean ± std" table and a plotly figure with error
    bars (std over seeds). Writes ``<out>/sweep_<scenario>.md``, ``.json`` and ``.html``."""
    t0 = time.perf_counter()
    _check_out(out)
    bad = [v for v in r if not 0.0 <= v <= 1.0]
    if bad:
        raise UserError(f"--r values must lie in [0, 1] (P(z = y) in training), got {bad}")
    chosen = [method_row(m) for m in methods]
    seed_list = seeds_list(seeds)
    store = store if store is not None else ResultStore()
    jobs = [(row, v, sweep_config(scenario, row, v, s).override(list(overrides)))
            for row in chosen for v in r for s in seed_list]
    reused = []
    records = run_many([cfg for *_, cfg in jobs], store, backend=backend, workers=workers,
                       address=address, threads=threads, eval_options=eval_options,
                       progress=_counting(progress, reused))
    frame = pd.DataFrame([
        {"method": row.label, "r": v, "seed": rec["config"]["seed"],
         **{s: rec["best"]["acc"][s]["y"] for s in ("validation", "inverted", "balanced")},
         "selection": rec["best"]["acc"]["selection"]["y"]}
        for (row, v, _), rec in zip(jobs, records)])
    command = command or _command("sweep", "--scenario", scenario, "--methods", *methods,
                                  "--r", *map(str, r), "--seeds", str(len(seed_list)),
                                  *[a for o in overrides for a in ("--set", o)])
    meta = _meta(records, command, seed_list, store, time.perf_counter() - t0, sum(reused))
    meta.update(scenario=scenario, methods=list(methods), r=list(r), overrides=list(overrides))
    figure = sweep_figure(frame, scenario)
    md = sweep_markdown(frame, meta)
    result = Sweep(scenario, frame, figure, md, meta)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"sweep_{scenario}"
        result.paths = {"markdown": stem.with_suffix(".md"), "json": stem.with_suffix(".json"),
                        "html": stem.with_suffix(".html")}
        atomic_write(result.paths["markdown"], md)
        atomic_write(result.paths["json"], json.dumps({**meta, "table": to_records(frame)}, indent=1,
                                                      ensure_ascii=False))
        figure.write_html(result.paths["html"], include_plotlyjs="cdn")
    return result


def sweep_figure(frame: pd.DataFrame, scenario: str = ""):
    """Inverted (solid) and Validation (dotted) accuracy of f_y→y against r, mean ± std over
    seeds as error bars, one colour per method."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for i, (method, d) in enumerate(frame.groupby("method", sort=False)):
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        for split, dash in (("inverted", "solid"), ("validation", "dot")):
            g = d.groupby("r")[split]
            mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
            fig.add_trace(go.Scatter(
                x=mean.index, y=mean.values, error_y={"type": "data", "array": std.values},
                mode="lines+markers", name=f"{method}, {split}", legendgroup=method,
                line={"color": colour, "dash": dash}))
    fig.add_hline(y=50, line={"color": "grey", "dash": "dash"}, annotation_text="chance (binary y)")
    fig.update_layout(
        title=f"Accuracy of f_y→y against correlation strength r ({scenario}); "
              "mean ± std over seeds",
        xaxis={"title": "r = P(z = y) in training"}, yaxis={"title": "accuracy [%]"},
        template="plotly_white")
    return fig


def sweep_markdown(frame: pd.DataFrame, meta: dict) -> str:
    n = len(meta["seeds"])
    lines = [f"# Sweep of the correlation strength r on `{meta['scenario']}`", "",
             "r = P(z = y) for every spurious factor in training (the Validation set follows it; "
             "the Inverted set flips it). Model selection on the confounded selection split only.",
             ""]
    for split in ("inverted", "validation", "balanced"):
        lines.append(to_markdown(summarise(frame, "method", "r", split),
                                 f"Accuracy of f_y→y on the {split.capitalize()} set [%] "
                                 f"({_spread(n)})"))
    lines += [f"- Command: `{meta['command']}`", f"- Commit: `{meta['commit']}`",
              "- Hardware: " + "; ".join(f"{hw} ({k} runs)" for hw, k in meta["hardware_of_runs"].items()),
              f"- Wall time: {_duration(meta['wall_time_runs'])} over {meta['runs']} runs; this "
              f"invocation took {_duration(meta['wall_time_now'])} ({meta['trained']} trained now, "
              f"{meta['reused']} reused)", ""]
    return "\n".join(lines)
