"""mimmx teaching app: `streamlit run app.py` (or `make app`).

Pick a scenario and methods, set MIMM-X's knobs, press Train: the runs train in a background
thread (``mimmx.app.session``) and the page redraws from their shared state every second
(``mimmx.app.charts``). Finished configurations come from the results store at once.
"""

import streamlit as st

from mimmx import __version__, data
from mimmx.app import charts, session
from mimmx.errors import UserError
from mimmx.evaluation import warm_up_umap
from mimmx.experiments import EXPERIMENTS, rows
from mimmx.scenarios import get_spec

st.set_page_config(page_title="mimmx", layout="wide")
st.title("mimmx: confounder-free learning by mutual-information minimisation")
st.markdown(
    "An image encoder splits its features into a primary-task part **f_y** and one part per "
    "spurious factor **f_z**; MIMM-X trains it to keep the mutual information between them "
    "small, so that y is predicted without the shortcut. *Status of the science:* on these "
    "analogues MIMM-X does not yet beat the shortcut reliably (see `docs/why-mimmx-works.md`); "
    "this page shows what actually happens, so compare the Inverted curve of both methods."
)

HELP = {
    "scenario": "exp1 is the brain-MRI story: y = age young/old (digit < 5 / ≥ 5), z1 = sex "
                "(thin/thick strokes), z2 = dataset NAKO/UKB (acquisition site: contrast, blur, "
                "noise). exp2/exp3 are the chest X-ray stories on Fashion-MNIST; morpho and "
                "fashion are MIMM's original benchmarks.",
    "r": "How strongly each spurious factor goes with y in training: P(z = y). 0.5 = no "
         "shortcut, 0.9 = 90% of old patients are male and from UKB, 1.0 = a perfect shortcut.",
    "lam": "λ, the weight of the mutual-information penalty between f_y and f_z. 0 = baseline.",
    "alpha_y": "α_Y: the initial share of attention given to the age (y) loss by Dynamic Loss "
               "Scaling; the rest goes to the sex/site heads.",
    "alpha_z": "α_Z: how much the Confounder Attention Weighter favours the spurious factors "
               "that are most entangled with f_y.",
    "beta_y": "β_Y: how fast α_Y grows over the epochs, moving attention to age over time.",
    "n_b": "N_B: one encoder step, then N_B − 1 steps that train the MI estimator (MINE).",
    "epochs": "Passes over the training images; each epoch ends with an evaluation.",
}


def dataset_status() -> list[dict]:
    return [{"dataset": name, "file": s.stem, "state": s.state, "path": str(s.path or "-")}
            for name in data.DATASETS for s in data.file_status(name)]


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
    methods = st.multiselect("Methods (trained one after the other, same settings)", labels,
                             default=list(d.methods), key=f"methods-{scenario}")
    r = None
    if session.takes_r(scenario):
        r = st.slider("Correlation strength r", 0.5, 1.0, get_spec(scenario).factors[0].r, 0.01,
                      help=HELP["r"], key=f"r-{scenario}")
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
        use_umap = st.checkbox("UMAP embeddings (PCA until UMAP has warmed up)")
    if use_umap and "umap_warm_up" not in st.session_state:
        st.session_state["umap_warm_up"] = warm_up_umap(background=True)  # numba compiles once
    umap_ready = use_umap and not st.session_state["umap_warm_up"].is_alive()
    left, right = st.columns(2)
    train_clicked = left.button("Train", type="primary", width="stretch")
    stop_clicked = right.button("Stop", width="stretch")

job = st.session_state.get("job")
if stop_clicked and job is not None:
    job.stop()
if train_clicked:
    if job is not None and job.running:
        st.warning("A training is still running: press Stop first.")
    elif get_spec(scenario).dataset in missing:
        st.error(f"The {get_spec(scenario).dataset} files are not available, so {scenario} cannot "
                 "be built; see the Datasets panel in the sidebar.")
    else:
        req = session.Request(scenario, tuple(methods), r, lam, alpha_y, alpha_z, beta_y, n_b,
                              epochs, n_train or None, int(seed))
        try:
            job = session.Job(session.configs(req), embedding="umap" if umap_ready else "pca")
            st.session_state["job"] = job.start()
        except UserError as err:
            st.error(str(err))


# ------------------------------------------------------------------------------ the runs
def show(job: session.Job, live: bool) -> None:
    s = job.snapshot()
    runs, info = s["runs"], s["scenario"]
    if s["status"] == "error":
        st.error(s["error"])
    elif s["status"] == "running":
        st.info(f"Running: {s['phase']} …  (press Stop to end early)")
    elif s["status"] == "stopped":
        st.warning("Stopped: the curves show the epochs trained so far; stopped runs are not stored.")
    cached = [label for label, run in runs.items() if run["cached"]]
    if cached:
        st.caption(f"From the results store (trained before with these settings): {', '.join(cached)}")

    st.subheader("Accuracy of y over the epochs")
    st.caption("Validation: same shortcut as training. Inverted: the shortcut points the wrong "
               "way; a model that uses it falls below 50%. Balanced: no shortcut.")
    if any(run["history"] for run in runs.values()):
        st.plotly_chart(charts.accuracy_figure(runs), width="stretch", key="acc")
        st.dataframe(charts.accuracy_frame(runs), hide_index=True, height=150, key="acc-table")
    dyn = charts.dynamics_figure(runs)
    if dyn is not None:
        st.subheader("Loss weights γ and the MI estimate")
        st.plotly_chart(dyn, width="stretch", key="dyn")

    table = charts.final_table(runs)
    if not table.empty:
        st.subheader("Final results (epoch chosen on the confounded selection split)")
        st.dataframe(table, hide_index=True)
        for label, run in runs.items():
            record = run.get("record")
            if not record:
                continue
            with st.expander(f"{label}: embeddings and probes", expanded=False):
                probes = charts.probe_table(record)
                if probes is not None:
                    st.caption("Probe accuracy [%] of each label from each feature part (Balanced "
                               "set): off the own label it should be near chance if disentangled.")
                    st.dataframe(probes)
                figs = charts.embedding_figures(record, info)
                cols = st.columns(max(len(figs), 1))
                for col, (part, fig) in zip(cols, figs.items()):
                    col.plotly_chart(fig, width="stretch", key=f"emb-{label}-{part}")

    if info:
        with st.expander("The scenario: contingency table and sample images", expanded=False):
            st.text(info["story"])
            split = st.radio("Split", ["train", "validation", "inverted", "balanced"],
                             horizontal=True, key="ct-split")
            st.dataframe(charts.contingency_table(info, split))
            for (factor, y, z), strip in info["cells"].items():
                if strip is not None:
                    st.image(strip, caption=f"{factor}: y = {y}, z = {z}", clamp=True)
    if live and s["status"] != "running":
        st.rerun()  # the whole page once more, so that it stops polling


if job is not None:
    live = job.running
    st.fragment(show, run_every=1.0 if live else None)(job, live)
else:
    st.info("Choose the settings in the sidebar and press **Train** (the defaults train exp1's "
            "Baseline and MIMM-X for 10 short epochs).")
st.caption(f"mimmx {__version__}")
