"""mimmx teaching app: `streamlit run app.py` (or `make app`).

Three tabs. **MIMM-X**: pick a scenario and methods in the sidebar, set MIMM-X's knobs, press
Train: the runs train in the server's training processes (``mimmx.app.session``,
``mimmx.app.workers``) and the page redraws from their shared state every few seconds
(``mimmx.app.charts``): losses and γ's from the first steps, accuracies and embeddings of f_y
and f_z at every evaluation. Finished configurations come from the results store at once
(``python -m mimmx warm-cache`` fills it for a class).
**CIML** (``mimmx.app.ciml_page``): the other side of mutual information, on phantoms.
**Audit** (``mimmx.app.audit_page``): what a stored run's f_y depends on beyond y (docs/audit.md).
"""

import streamlit as st

from mimmx import __version__, data
from mimmx.app import audit_page, charts, ciml_page, session
from mimmx.config import field_help
from mimmx.errors import UserError
from mimmx.evaluation import warm_up_umap
from mimmx.runs.experiments import EXPERIMENTS, rows
from mimmx.scenarios import get_spec

# seconds between redraws while training. A redraw re-sends every chart of its fragment; the
# browser draws anew each one whose figure changed (Streamlit keys a chart by its figure), on
# the CPU the training needs on a 2-core machine: so figures change only when their data does
# (at evaluations) and the page carries few of them (bench/bench_app.py)
PROGRESS_EVERY, RESULTS_EVERY = 2.0, 5.0
# a session whose runs all wait (in line, or for another session training the same settings)
# redraws only its status, this seldom: every redraw of every session costs the server's event
# loop a thread start and a few messages, and a class of thirty mostly waits
# (bench/bench_class.py)
WAIT_EVERY = 8.0


def only_waiting(runs: dict) -> bool:
    """True when none of this session's runs trains here: each waits in line or for another
    session's training of the same settings."""
    return bool(runs) and all((run.get("queued") or run.get("joined")) and not run.get("history")
                              for run in runs.values())

HELP = {
    "scenario": "Each scenario's story is shown below the sidebar. exp1 is the brain-MRI story on "
                "Morpho-MNIST, exp2/exp3 the chest X-ray stories on Fashion-MNIST; exp1_digits is "
                "the first brain-MRI analogue (digit groups), where the data cap every method; "
                "morpho and fashion are MIMM's original benchmarks.",
    **{k: field_help(key) for k, key in (("r", "scenario.r"), ("lam", "method.lam"),
                                         ("alpha_y", "method.alpha_y"), ("alpha_z", "method.alpha_z"),
                                         ("beta_y", "method.beta_y"), ("n_b", "method.n_b"),
                                         ("epochs", "train.epochs"))},
}
TEST_SETS = ("Three test sets tell a shortcut from the task. **Validation**: the factors go with y "
             "as in training. **Inverted**: they point the other way. **Balanced**: they are "
             "independent of y.")
TABS = ("MIMM-X: remove a shortcut", "CIML: keep complementary information",
        "Audit: what does a model use?")
GOOD_RESULT = (
    "**What a good result looks like.** A model that uses the shortcut is right on Validation "
    "(same shortcut as training) and wrong on Inverted (the shortcut points the other way): its "
    "Inverted curve falls towards or below 50%. A confounder-free model keeps **Inverted close to "
    "Validation**, with Balanced in between; in its embeddings f_y separates by y but not by "
    "the spurious factors, and the probes read the factors off f_y only at chance."
)


def dataset_status() -> list[dict]:
    return [{"dataset": name, "file": s.stem, "state": s.state, "path": str(s.path or "-")}
            for name in data.DATASETS for s in data.file_status(name)]


# ------------------------------------------------------------------------------ the runs
def figure(key: str, version, build, shared=None):
    """``build()``, made again only when ``version`` changes: the page polls every second, and
    remaking every figure each time would take a core from the training. ``shared``: an identity
    of the figure's content that holds in every session (a finished run's key), so that a class
    whose sessions show the same stored runs builds each figure once (``charts.shared``)."""
    cache = st.session_state.setdefault("figures", {})
    if key not in cache or cache[key][0] != version:
        cache[key] = (version, build() if shared is None else charts.shared((key, shared), build))
    return cache[key][1]


def show_progress(job: session.Job, req: session.Request, live: bool, first: bool = False,
                  waiting: bool = False) -> None:
    """Status, accuracy curves and losses / γ's: polled while training (every half second until the
    ``first`` accuracy point, then every PROGRESS_EVERY seconds)."""
    with session.page_turn():  # a fragment's redraw waits its turn too
        s = job.snapshot(keys=("key", "cached", "history", "steps", "queued", "joined"))
        if not job.matches(req):
            st.warning("These results are for earlier settings: press Train to train the sidebar's.")
        runs = s["runs"]
        evals = (s["started"], *(len(run["history"]) for run in runs.values()))
        final = s["status"] == "done"  # every run stored: its figures are the same in every session
        if s["status"] == "error":
            st.error(s["error"])
        elif s["status"] == "running":
            st.info(f"Running: {s['phase']} …  (press Stop to end early)")
        elif s["status"] == "stopped":
            st.warning("Stopped: the curves show the epochs trained so far; stopped runs are not stored.")
        queued = [run["queued"] for run in runs.values() if run.get("queued")]
        if queued:
            st.info(f"Every core of this server is training: your run is number {min(queued)} in "
                    "line and starts as soon as one is free.")
        joined = [label for label, run in runs.items() if run.get("joined")]
        if joined:
            st.caption(f"Another session is training the same settings ({', '.join(joined)}): "
                       "its result is shown here when it is done.")
        cached = [label for label, run in runs.items() if run["cached"]]
        if cached:
            st.caption(f"From the results store (trained before with these settings): {', '.join(cached)}")

        st.subheader("Accuracy of y over the epochs")
        st.caption("Validation: same shortcut as training. Inverted: the shortcut points the wrong "
                   "way; a model that uses it falls below 50%. Balanced: no shortcut. Good: Inverted "
                   "close to Validation.")
        if any(run["history"] for run in runs.values()):
            shared = tuple((label, run["key"]) for label, run in runs.items()) if final else None
            st.plotly_chart(figure("acc", evals, lambda: charts.accuracy_figure(runs), shared),
                            width="stretch", key="acc")
            with st.expander("The same as a table"):
                st.dataframe(charts.accuracy_frame(runs), hide_index=True, key="acc-table")
        # one figure per method, redrawn when its first steps arrive and then at its evaluations:
        # redrawing it at every poll cost the browser more CPU than everything else together
        dyn = {label: figure(f"dyn-{label}", (s["started"], len(run["history"]), bool(run["steps"])),
                             lambda label=label, run=run: charts.dynamics_figure({label: run}),
                             run["key"] if final else None)
               for label, run in runs.items()}
        if any(fig is not None for fig in dyn.values()):
            st.subheader("Losses, loss weights γ and the MI estimate")
            st.caption("Means over runs of encoder steps, updated at every evaluation. MINE's "
                       "estimate is a lower bound from a critic trained alongside the encoder: it can "
                       "dip below 0 when the critic lags behind; read small negative values as ≈ 0.")
            for col, (label, fig) in zip(st.columns(len(dyn)), dyn.items()):
                if fig is not None:
                    col.plotly_chart(fig, width="stretch", key=f"dyn-{label}")
        if live and (s["status"] != "running" or (first and any(run["history"] for run in runs.values()))
                     or waiting != only_waiting(runs)):
            st.rerun()  # the whole page once more: it stops polling, or polls at another pace


def show_results(job: session.Job) -> None:
    """Embeddings (live, then final), the final table and the probes: polled every 2 s."""
    with session.page_turn():  # a fragment's redraw waits its turn too
        s = job.snapshot()
        runs, info = s["runs"], s["scenario"]
        embedded = {label: charts.run_embeddings(run) for label, run in runs.items()}
        if any(records for records, _ in embedded.values()):
            st.subheader("Embeddings of f_y and f_z (Balanced set)")
            st.caption("Refreshed at every evaluation while training (PCA; UMAP once it has warmed "
                       "up). The buttons colour the points by y or by a spurious factor: a "
                       "confounder-free f_y separates by y only.")
            for label, (records, note) in embedded.items():
                how = records[0]["method"] if records else None
                stored = runs[label].get("record") is not None  # the stored embedding: one per run
                fig = figure(f"emb-{label}", (s["started"], note, how, bool(info)),
                             lambda records=records, note=note: charts.run_embedding_figure(records, info, note),
                             (runs[label]["key"], how, bool(info)) if stored else None)
                if fig is not None:
                    st.markdown(f"**{label}**")
                    st.plotly_chart(fig, width="stretch", key=f"emb-{label}")

        table = charts.final_table(runs, info)
        if not table.empty:
            st.subheader("Final results (epoch chosen on the confounded selection split)")
            st.dataframe(table, hide_index=True,
                         column_config={"method": st.column_config.TextColumn("method", width="large")})
            for label, run in runs.items():  # e.g. a model kept at chance: it learnt nothing of y
                for said in (run.get("record") or {}).get("warnings") or ():
                    st.warning(f"{label}: {said}")
            for label, run in runs.items():
                probes = charts.probe_table(run["record"], info) if run.get("record") else None
                if probes is not None:
                    with st.expander(f"{label}: what each feature part knows (probes)"):
                        st.caption("Probe accuracy [%] of each label from each feature part (Balanced "
                                   "set): off the own label it should be near chance if disentangled.")
                        st.dataframe(probes)


def show_scenario(job: session.Job, waiting: bool) -> None:
    """The scenario's contingency table and sample images, once the job has built it."""
    with session.page_turn():  # a fragment's redraw waits its turn too
        info = job.snapshot(keys=())["scenario"]
        if info is None:
            return
        if waiting:
            st.rerun()  # it has arrived: draw the page once more, without polling for it
        with st.expander("The scenario: contingency table and sample images", expanded=False):
            st.text(info["story"])
            split = st.radio("Split", ["train", "validation", "inverted", "balanced"],
                             horizontal=True, key="ct-split")
            st.dataframe(charts.contingency_table(info, split))
            for (factor, y, z), strip in info["cells"].items():
                if strip is not None:
                    st.image(strip, caption=f"{factor}: y = {y}, z = {z}", clamp=True)


def show_robustness(req: session.Request) -> None:
    """Inverted and Validation accuracy against r of every stored method, the slider's r marked."""
    frame = session.robustness(req)
    fig = charts.shared(("robustness", req.scenario, req.r, tuple(frame.itertuples(index=False))),
                        lambda: charts.robustness_figure(frame, req.scenario, req.r))
    st.subheader("How each method holds up as the shortcut gets stronger")
    if frame.empty:
        st.caption("No run of this scenario at these settings is stored yet: press Train, or run "
                   "`python -m mimmx warm-cache` before class to store r = 0.5, 0.7, 0.9, 0.99.")
    else:
        st.caption("Each point is a stored run at these settings (solid: Inverted, dotted: "
                   "Validation). A method that uses the shortcut keeps Validation and falls on "
                   "Inverted as r grows; the dashed line is the sidebar's r.")
    st.plotly_chart(fig, width="stretch", key="robustness")


def show_mimmx(scenario: str, req: session.Request, job: session.Job | None) -> None:
    """The first tab: the scenario's story, the robustness panel, and the live or stored runs."""
    st.markdown(f"**{scenario}.** {get_spec(scenario).story}")
    st.caption(TEST_SETS)
    if session.takes_r(scenario):
        show_robustness(req)
    if job is not None:
        live = job.running
        # every half second until the first accuracy point, so that the first curves show at once
        runs = job.snapshot(keys=("history", "queued", "joined"))["runs"]
        first = live and not any(run["history"] for run in runs.values())
        waiting = live and only_waiting(runs)
        every = WAIT_EVERY if waiting else 0.5 if first else PROGRESS_EVERY
        st.fragment(show_progress, run_every=every if live else None)(job, req, live, first, waiting)
        # nothing to show while waiting: the status's redraw reruns the page when that changes
        st.fragment(show_results, run_every=RESULTS_EVERY if live and not waiting else None)(job)
        building = live and job.snapshot(keys=())["scenario"] is None
        st.fragment(show_scenario, run_every=1.0 if building and not waiting else None)(job, building)
    else:
        d = session.default_request(scenario)
        st.info(f"Choose the settings in the sidebar and press **Train** (the defaults train "
                f"{scenario}'s {' and '.join(d.methods)} for {d.epochs} short epochs).")
    st.markdown(GOOD_RESULT)




def main() -> None:
    """The page: title, sidebar, Train / Stop, and the open tab."""
    st.set_page_config(page_title="mimmx", layout="wide")
    st.title("mimmx: confounder-free learning by mutual-information minimisation")
    st.markdown(
        "An image encoder splits its features into a primary-task part **f_y** and one part per "
        "spurious factor **f_z**; MIMM-X trains it to keep the mutual information between them "
        "small, so that y is predicted without the shortcut. Train a method beside the **Oracle** "
        "(the same model trained on data without the shortcut) and watch the Inverted set: there the "
        "shortcut points the wrong way, so only a model that learnt y itself stays near the Oracle. "
        "The measured tables, 3 seeds each, are in `docs/results.md` (`python -m mimmx reproduce exp1`)."
    )

    # --------------------------------------------------------------------------- the sidebar
    with st.sidebar:
        status = dataset_status()
        missing = {r["dataset"] for r in status if r["state"] != "verified"}
        with st.expander("Datasets", expanded=bool(missing)):
            st.dataframe(status, width="stretch")
            if missing:
                st.warning("Some dataset files are missing or corrupted. Run `python -m mimmx data "
                           f"download`, or set `{data.ENV_VAR}` to a folder that has them, then reload.")
        scenario = st.selectbox("Scenario", list(EXPERIMENTS), help=HELP["scenario"])
        d = session.default_request(scenario)
        labels = [r.label for r in rows(scenario)]
        methods = st.multiselect("Methods (trained side by side, same settings)", labels,
                                 default=list(d.methods), key=f"methods-{scenario}")
        r = None
        if session.takes_r(scenario):
            r = st.slider("Correlation strength r", 0.5, 1.0, d.r, 0.01, help=HELP["r"],
                          key=f"r-{scenario}")
        else:
            st.caption("This scenario's factors are given as ratio tables, not by r.")
        lam = st.slider("λ (MI penalty weight)", 0.0, 5.0, d.lam, 0.1, help=HELP["lam"], key=f"lam-{scenario}")
        alpha_y = st.slider("α_Y", 0.0, 1.0, d.alpha_y, 0.05, help=HELP["alpha_y"], key=f"ay-{scenario}")
        alpha_z = st.slider("α_Z", 0.0, 1.0, d.alpha_z, 0.05, help=HELP["alpha_z"], key=f"az-{scenario}")
        beta_y = st.slider("β_Y", 0.0, 0.1, d.beta_y, 0.005, format="%.3f", help=HELP["beta_y"],
                           key=f"by-{scenario}")
        n_b = st.slider("N_B", 1, 10, d.n_b, help=HELP["n_b"], key=f"nb-{scenario}")
        epochs = st.slider("Epochs", 1, 50, d.epochs, help=HELP["epochs"], key=f"ep-{scenario}")
        with st.expander("More"):
            n_train = st.number_input("Training images (0: the scenario's default)", 0, 100000, 0, 100,
                                      key=f"nt-{scenario}")
            seed = st.number_input("Seed", 0, 10_000, 0)
            # UMAP only helps when a feature part has more than two dimensions (else PCA is exact)
            use_umap = session.feature_dims(scenario) > 2 and st.checkbox("UMAP embeddings (PCA until UMAP has warmed up)")
        if use_umap and "umap_warm_up" not in st.session_state:
            st.session_state["umap_warm_up"] = warm_up_umap(background=True)  # numba compiles once
        warm = st.session_state.get("umap_warm_up")
        umap_ready = (lambda: not warm.is_alive()) if use_umap else None
        req = session.Request(scenario, tuple(methods), r, lam, alpha_y, alpha_z, beta_y, n_b,
                              epochs, n_train or None, int(seed))
        left, right = st.columns(2)
        train_clicked = left.button("Train", type="primary", width="stretch")
        stop_clicked = right.button("Stop", width="stretch")

    job = st.session_state.get("job")
    if job is None or not job.running:
        session.prebuild(req)  # build the scenario now, so that Train starts at once
    if stop_clicked and job is not None:
        job.stop()
    if train_clicked:
        if job is not None and job.running:
            st.warning("A training is still running: press Stop first.")
        elif get_spec(scenario).dataset in missing:
            st.error(f"The {get_spec(scenario).dataset} files are not available, so {scenario} cannot "
                     "be built; see the Datasets panel in the sidebar.")
        else:
            try:
                job = session.Job(session.configs(req), umap_ready=umap_ready)
                st.session_state["job"] = job.start()
            except UserError as err:
                st.error(str(err))

    # only the open tab runs (on_change="rerun"): the other two took two thirds of every full rerun,
    # and a class pressing Train at once makes thirty of those at the same moment (bench/bench_class.py)
    mimmx_tab, ciml_tab, audit_tab = st.tabs(TABS, key="tab", on_change="rerun")
    if mimmx_tab.open:
        with mimmx_tab:
            show_mimmx(scenario, req, job)
    if ciml_tab.open:
        with ciml_tab:
            ciml_page.render()
    if audit_tab.open:
        with audit_tab:
            audit_page.render(scenario)
    st.caption(f"mimmx {__version__}")


# pages are drawn a few at a time (session.page_turn): a class redrawing at once would hold the
# GIL from the server's event loop, which then answers nobody (bench/bench_class.py)
with session.page_turn():
    main()
