"""The app's Audit tab: pick any run of the results store (one with a checkpoint), pick a
held-out split, press Audit: :func:`mimmx.evaluation.audit.audit_run` ranks what the run's f_y
depends on beyond y (the candidates' figure and table) and finds its worst "slices nobody
named" (docs/audit.md).

The pure helpers (:func:`stored_runs`, :func:`run_name`, :func:`default_run`,
:func:`permutations_for`, :func:`run_audit`, :func:`candidates_view`, :func:`slices_view`) need no
Streamlit. An audit is kept per (store, run key, split) with ``st.cache_resource``, so a rerun of
the page, or another session auditing the same run, does not compute it again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from mimmx.config import RunConfig
from mimmx.errors import UserError
from mimmx.evaluation.audit import LEVEL, AuditReport, audit_run, image_attributes
from mimmx.methods.base import METHODS
from mimmx.runs.experiments import EXPERIMENTS, ORACLE, PEER_ROWS, Row, row_config, rows
from mimmx.runs.store import ResultStore

SPLITS = ("balanced", "inverted", "validation")  # the held-out test sets
LEAST_PERMUTATIONS = 999  # the command line's default; permutations cost little (one matrix product per batch)
BOOTSTRAP = 100  # resamples for the intervals: the audit's main cost, half the command line's 200
FILL = ("`python -m mimmx reproduce exp2 --rows baseline oracle` (about ten minutes on two "
        "cores: exp2's Baseline and Oracle, 3 seeds), or train in the first tab: every finished "
        "run is stored with its checkpoint")

INTRO = f"""\
**What does this model's f_y depend on beyond y?** For every candidate attribute of a
held-out set (image measures such as intensity, contrast or a corner's brightness,
Morpho-MNIST's measures on MNIST, and the scenario's own factors, listed among them by name),
**dCor(f_y, a | y)** is the distance correlation between f_y and the attribute inside each class
of y: 0 when f_y carries nothing of it beyond y, about 0.1 for an unrelated attribute, so read
the test rather than the raw value. A **permutation test** shuffles the attribute within each
class; the **push** is the within-class rank correlation between the attribute and the model's
decision score (a shortcut moves the decision the same way in every class; an attribute that
only makes the model less sure, such as blur, does not). A candidate is **flagged** (red) when
both tests, Bonferroni-adjusted over the candidates, are below {LEVEL}. Candidates that measure one thing (a marker and the corner it sits
in) share a **family** rank; the **gap** is how many points of y accuracy separate the
attribute's lower and upper half within one class: how much the model's errors follow it. A
flagged attribute can also be part of the task (a shirt's sleeves fill its lower corners), so
compare with the audit of the Oracle, trained without the shortcut; `docs/audit.md` explains
every measure and its pitfalls."""

HELP = {
    "scenario": "The scenario the stored run was trained on.",
    "run": "Method (the poster row), seed, and the settings that differ from the row's, if any.",
    "split": "The held-out set to audit. Balanced: the factors are independent of y (the "
             "audit's default). Inverted: they point the other way. Validation: as in training.",
}


# ---------------------------------------------------------------------------- stored runs


@dataclass(frozen=True)
class StoredRun:
    """A run of the results store that can be audited (its checkpoint is there)."""

    key: str
    scenario: str
    method: str  # the poster row's label, e.g. "Baseline", "Oracle (no confounding)"
    seed: int
    note: str = ""  # settings that differ from the row's, e.g. "r 0.7, epochs 10"
    order: tuple = ()  # sort key: scenario, row, seed
    accuracy: tuple = ()  # (test set, y accuracy [%]) of its kept epoch

    @property
    def name(self) -> str:
        """How the run select box shows it, within its scenario."""
        return f"{self.method} · seed {self.seed}" + (f" · {self.note}" if self.note else "")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _switches(name, dls, caw) -> tuple[str, bool, bool]:
    """A method's name and whether it really uses DLS and CAW (a method that fixes them, such
    as the Baseline, ignores the config's switches)."""
    cls = METHODS.get(name)
    fixed = (cls.dls, cls.caw) if cls is not None else (None, None)
    return (name, bool(dls) if fixed[0] is None else fixed[0], bool(caw) if fixed[1] is None else fixed[1])


def _row_of(config: dict) -> tuple[Row | None, int]:
    """The poster row a stored config is a version of (matched by method, the DLS and CAW it
    really uses, and confounding), and its place in its experiment's rows (for sorting)."""
    s, m = config.get("scenario", {}), config.get("method", {})
    want = (*_switches(m.get("name"), m.get("dls"), m.get("caw")), s.get("confounded", True) is not False)
    scenario = s.get("name")
    candidates = list(rows(scenario)) if scenario in EXPERIMENTS else []
    candidates += [r for r in (ORACLE, *PEER_ROWS, *(r for e in EXPERIMENTS for r in rows(e)))
                   if r not in candidates]
    for i, r in enumerate(candidates):
        if (*_switches(r.method, r.dls, r.caw), r.confounded) == want:
            return r, i
    return None, len(candidates)


def run_name(record: dict, shown: int = 3) -> tuple[str, str, int]:
    """(method label, note, the row's place) of a store record: the label of its poster row,
    and up to ``shown`` of the settings where it differs from that row (the app's own runs
    train shorter, at the slider's r, ...), as "r 0.7, epochs 10"."""
    config = record["config"]
    row, place = _row_of(config)
    scenario = config.get("scenario", {}).get("name")
    if row is None:
        m = config.get("method", {})
        label = str(m.get("name", "?")) + (" + DLS" if m.get("dls") else "") + (" + CAW" if m.get("caw") else "")
        if config.get("scenario", {}).get("confounded") is False:
            label += " (no confounding)"
        return label, "", place
    if scenario not in EXPERIMENTS:
        return row.label, "", place
    try:
        ref = _flat(row_config(scenario, row, config.get("seed", 0)).to_dict())
        cfg = RunConfig.from_dict(config)
        own = _flat(cfg.to_dict())
        live = METHODS[cfg.method.name].live_keys(cfg.method) if cfg.method.name in METHODS else None
    except Exception:  # noqa: BLE001 - a record of another layout: named by its row alone
        return row.label, "", place

    def counts(k: str) -> bool:  # method keys its method does not read change nothing
        return k != "seed" and not (k.startswith("method.") and live is not None
                                    and k.removeprefix("method.") not in live - {"dls", "caw"})

    diffs = [(k, v) for k, v in own.items() if counts(k) and ref.get(k) != v]
    note = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in diffs[:shown])
    return row.label, note + (", …" if len(diffs) > shown else ""), place


def stored_runs(store: ResultStore) -> list[StoredRun]:
    """The store's runs that have a checkpoint, by scenario (in the app's order), poster row,
    seed. Records without a checkpoint cannot be rebuilt, so they are left out."""
    order = {name: i for i, name in enumerate(EXPERIMENTS)}
    out = []
    for record in store.records():
        if not store.checkpoint_path(record["key"]).is_file():
            continue
        scenario = str(record["config"].get("scenario", {}).get("name", "?"))
        label, note, place = run_name(record)
        seed = int(record["config"].get("seed", 0))
        acc = record["best"].get("acc", {})
        accuracy = tuple((split, float(acc[split]["y"])) for split in ("validation", "inverted", "balanced")
                         if isinstance(acc.get(split), dict) and "y" in acc[split])
        out.append(StoredRun(record["key"], scenario, label, seed, note,
                             (order.get(scenario, len(order)), scenario, place, note, seed), accuracy))
    return sorted(out, key=lambda r: r.order)


def default_run(runs: list[StoredRun], scenario: str | None = None) -> int:
    """Index of the run the tab starts with: the Baseline of ``scenario`` (poster settings and
    lowest seed first), else that scenario's first run, else the first Baseline, else 0."""
    def first(ok) -> int | None:
        return next((i for i, r in enumerate(runs) if ok(r)), None)

    for ok in (lambda r: r.scenario == scenario and r.method == "Baseline" and not r.note,
               lambda r: r.scenario == scenario and r.method == "Baseline",
               lambda r: r.scenario == scenario,
               lambda r: r.method == "Baseline"):
        i = first(ok)
        if i is not None:
            return i
    return 0


# ------------------------------------------------------------------------------ the audit


def permutations_for(n_candidates: int, level: float = LEVEL, least: int = LEAST_PERMUTATIONS) -> int:
    """Permutations enough for a flag: a permutation p is at least 1 / (N + 1), and Bonferroni
    multiplies it by the number of candidates, so with too few permutations nothing can pass
    ``level`` (199 permutations and 12 candidates: 12 / 200 = 0.06). ``least``, or more where
    there are many candidates: the fewest N whose smallest adjusted p is half the level."""
    return max(least, math.ceil(2 * n_candidates / level) - 1)


def candidate_count(result, split: str = "balanced") -> int:
    """How many candidates :func:`audit_run` compares for a run: its image measures (measured on
    a few images only: Morpho-MNIST's take a while) and the scenario's factors."""
    images = result.scenario.splits[split].x[:4].cpu()
    measures = image_attributes(images, morphometrics=result.scenario.spec.dataset == "mnist")
    return measures.shape[1] + len(result.scenario.factor_names)


def run_audit(store: ResultStore, key: str, split: str = "balanced", seed: int = 0) -> dict:
    """Rebuild the stored run ``key`` and audit it on ``split`` (:data:`BOOTSTRAP` resamples,
    :func:`permutations_for` its candidates): ``{"report": AuditReport, "permutations",
    "bootstrap", "candidates", "seconds", "config"}`` (seconds: load and audit together)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    t0 = time.perf_counter()
    result = store.load_run(key)
    n_candidates = candidate_count(result, split)
    n = permutations_for(n_candidates)
    report = audit_run(result, split, n_permutations=n, n_bootstrap=BOOTSTRAP, seed=seed)
    return {"report": report, "permutations": n, "bootstrap": BOOTSTRAP, "candidates": n_candidates,
            "seconds": time.perf_counter() - t0, "config": result.config}


def candidates_view(table: pd.DataFrame) -> pd.DataFrame:
    """The ranked candidates as the tab shows them (strongest first, intervals as text)."""
    return pd.DataFrame({
        "family": table["family"],
        "candidate": table["candidate"],
        "kind": table["kind"],
        "dCor(f_y, a | y)": table["dcor"].round(3),
        "dCor 95 %": [f"{lo:.3f}–{hi:.3f}" for lo, hi in zip(table["dcor_low"], table["dcor_high"])],
        "p (adjusted)": table["p_adjusted"],
        "push": table["push"].round(2),
        "p push": table["p_push"],
        "flagged": table["flagged"].astype(bool),
        "gap [points]": table["gap"].round(1),
        "gap 95 %": [f"{lo:.1f}–{hi:.1f}" for lo, hi in zip(table["gap_low"], table["gap_high"])],
        "same family as": table["same_as"],
    })


def slices_view(slices: pd.DataFrame, y_names=None) -> pd.DataFrame:
    """The slices nobody named, worst first, without their member lists."""
    if slices.empty:
        return pd.DataFrame(columns=["slice", "class", "images", "right [%]", "class right [%]",
                                     "errors [%]", "attribute", "effect [sd]"])
    return pd.DataFrame({
        "slice": slices["slice"],
        "class": [y_names[y] if y_names else y for y in slices["y"]],
        "images": slices["size"],
        "right [%]": slices["accuracy"].round(1),
        "class right [%]": slices["class_accuracy"].round(1),
        "errors [%]": slices["errors"].round(1),
        "attribute": slices["attribute"],
        "effect [sd]": slices["effect"].round(2),
    })


def _flag_rows(view: pd.DataFrame):
    """The candidates' table with flagged rows tinted, as the figure colours them."""
    tint = "background-color: rgba(214, 39, 40, 0.15)"
    return view.style.apply(lambda row: [tint if row["flagged"] else ""] * len(row), axis=1).format(
        {"p (adjusted)": "{:.3g}", "dCor(f_y, a | y)": "{:.3f}", "gap [points]": "{:.1f}"})


# ------------------------------------------------------------------------------- the page


def _signature(root: Path) -> tuple:
    """What changes when the store does: its records' and checkpoints' names, sizes and times."""
    out = []
    for p in root.glob("[!.]*"):
        if p.suffix in (".json", ".pt"):
            try:
                stat = p.stat()
            except FileNotFoundError:  # removed since the listing
                continue
            out.append((p.name, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(out))


@st.cache_data(max_entries=4, show_spinner=False)
def _runs(root: str, signature: tuple) -> list[StoredRun]:
    return stored_runs(ResultStore(root))


@st.cache_resource(max_entries=16, show_spinner=False)
def _audit(root: str, key: str, split: str) -> dict:
    """The audit of a stored run and its figures, made once per (store, key, split)."""
    out = run_audit(ResultStore(root), key, split)
    out["figures"] = out["report"].figures()
    out["figures"]["slices"].update_annotations(font_size=13)  # the slices' titles, readable
    return out


def render(scenario: str | None = None) -> None:
    """The Audit tab (call inside ``with tab:``); ``scenario``: the sidebar's, whose Baseline
    the run select box starts on."""
    from mimmx.app.session import store

    st.markdown(INTRO)
    results = store()
    runs = _runs(str(results.root), _signature(results.root))
    if not runs:
        st.info(f"The results store ({results.root}) holds no run with a checkpoint yet, so there "
                f"is nothing to audit. Fill it with {FILL}; then reload this page.")
        return
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    start = runs[default_run(runs, scenario)]
    left, right = st.columns([1, 3])
    with left:
        chosen = st.selectbox("Scenario", scenarios, index=scenarios.index(start.scenario),
                              help=HELP["scenario"], key="audit-scenario")
        mine = {r.key: r for r in runs if r.scenario == chosen}
        key = st.selectbox("Stored run", list(mine), index=default_run(list(mine.values()), chosen),
                           format_func=lambda k: mine[k].name, help=HELP["run"], key=f"audit-run-{chosen}")
        run = mine[key]
        split = st.radio("Held-out set", SPLITS, help=HELP["split"], key="audit-split")
        clicked = st.button("Audit", type="primary", key="audit-go")
    with right:
        if run.accuracy:
            st.markdown("This run's y accuracy: " + ", ".join(f"{name} **{v:.1f} %**" for name, v in run.accuracy)
                        + " (a model that uses the shortcut falls on Inverted).")
        st.caption(f"{len(runs)} stored runs with a checkpoint in `{results.root}` (key "
                   f"`{run.key}`). An audit rebuilds the run from its checkpoint and takes 10–60 s "
                   f"on two cores, longer while they are busy; for speed the app draws {BOOTSTRAP} "
                   "bootstrap resamples for the 95 % intervals, half the command line's "
                   f"(`python -m mimmx audit {results.checkpoint_path(run.key)}`). The result is "
                   "kept: auditing the same run and set again is instant.")

    done = st.session_state.setdefault("audits", set())  # what this session has asked for
    wanted = (str(results.root), run.key, split)
    if not clicked and wanted not in done:
        st.info("Press **Audit** to audit this run.")
        return
    # cached: a rerun of the page (or another session's audit of the same run) is not recomputed
    with st.spinner(f"Auditing {chosen} · {run.name} on the {split} set …"):
        try:
            out = _audit(*wanted)
        except Exception as err:  # noqa: BLE001 - shown in the page, not as a traceback
            why = str(err) if isinstance(err, (UserError, ValueError)) else f"{type(err).__name__}: {err}"
            st.error(f"The audit failed: {why}")
            return
    done.add(wanted)
    _show(out, chosen, run, split)


def _show(out: dict, scenario: str, run: StoredRun, split: str) -> None:
    report: AuditReport = out["report"]
    table = report.table
    flagged = table[table["flagged"]]["candidate"].tolist()
    st.subheader(f"{scenario} · {run.name}: what f_y depends on beyond y ({split} set)")
    floor = min(1.0, out["candidates"] / (out["permutations"] + 1))
    st.caption(f"{out['candidates']} candidates, {out['permutations']} permutations within each "
               f"class (so the smallest adjusted p is {out['candidates']} / {out['permutations'] + 1}"
               f" = {floor:.3g}), {out['bootstrap']} bootstrap resamples; {len(flagged)} flagged at {LEVEL} after "
               f"the correction ({out['seconds']:.0f} s).")
    st.plotly_chart(out["figures"]["candidates"], width="stretch", key="audit-candidates")
    st.caption("Ranked by dCor, strongest first. Tinted rows are flagged; a family shares one "
               "rank, headed by its strongest member (\"same family as\").")
    st.dataframe(_flag_rows(candidates_view(table)), hide_index=True, width="stretch",
                 height="content", key="audit-table")
    st.subheader("Slices nobody named")
    st.caption("Within each class, k-means clusters of the held-out images (on f_y and the "
               "images' principal components), worst first: their accuracy against their "
               "class's, their share of the class's errors, and the candidate whose mean in the "
               "slice differs most from the rest of the class (in standard deviations). A slice "
               "much worse than its class, described by a shortcut's attribute, is the shortcut "
               "at work; one described by nothing known is worth a look at its images.")
    st.plotly_chart(out["figures"]["slices"], width="stretch", key="audit-slices")
    st.dataframe(slices_view(report.slices, report.y_names), hide_index=True, width="stretch",
                 height="content" if len(report.slices) <= 20 else 600, key="audit-slices-table")
    with st.expander("The audit as markdown"):
        st.code(report.markdown(f"Shortcut audit of {scenario} · {run.name} on the {split} set"),
                language="markdown")
