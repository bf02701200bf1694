"""The app's CIML tab: phantom parameters, one phantom's four modalities and nested regions, and
a Train button that trains CIML and its baselines briefly in a background thread
(:class:`CimlJob`, :func:`mimmx.ciml.train.run`), then shows the Dice table and the
"which modality contributes where" maps of :mod:`mimmx.ciml.figures`.

The default is :meth:`CIMLConfig.fast` (32 × 32 phantoms, 256 training images, 4 epochs, one
torch thread: about 30 s on 2 cores); ``MIMMX_APP_TINY=1`` trains 32 images for one epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import threading

import pandas as pd
import plotly.express as px
import streamlit as st

from mimmx.app.session import page_turn, tiny
from mimmx.ciml.figures import (
    contribution_figure,
    contribution_frame,
    dice_figure,
    dice_table,
    gate_figure,
    phantom_figure,
    prediction_figure,
)
from mimmx.ciml.phantom import MODALITIES, make_phantoms
from mimmx.ciml.train import LABELS, CIMLConfig, run
from mimmx.errors import UserError

INTRO = """\
**The other side of mutual information.** MIMM-X (the first tab) *removes* information: the
features that predict age must share nothing with the features of sex and site, because those
are a shortcut. CIML (Shen et al., Neural Networks 2024) *keeps* information, but only the
right part of it. A brain tumour is seen in four MRI modalities; each shows some regions
(FLAIR the whole tumour, T1ce the enhancing rim, …) and they repeat each other a lot. CIML
gives every modality its own small segmentor and lets it take from the other modalities only
what its own image lacks — the **complementary** information — through gated messages; a
penalty on every message (an information bottleneck, weight β) makes carrying **redundant**
information, which its own image already shows, cost without helping, so it is dropped.

The data are phantoms built to the BraTS radiological prior (BraTS itself is not available
here), and CIML's equations are our reconstruction from the paper's abstract
(`docs/ciml.md`). Baselines: **ensemble** (four single-modality U-Nets, probabilities averaged)
and **early fusion** (one wider U-Net on all four modalities stacked). A good result: CIML's
Dice at least as high as early fusion's and clearly above the ensemble's on the enhancing
tumour, which only T1ce shows; its gates light up where another modality shows what the
primary one cannot."""

HELP = {
    "seed": "Seed of the training phantoms (the test phantoms are fixed, seed 10000).",
    "noise": "Multiplies the Rician noise σ of every modality (FLAIR 0.15, T1 0.25, T1ce 0.20, "
             "T2 0.18): higher noise makes each single modality less reliable, so combining "
             "them matters more.",
    "methods": "ensemble: one U-Net per modality, averaged. early fusion: one U-Net on all four "
               "stacked. CIML: one segmentor per modality plus gated, bottlenecked messages.",
    "epochs": "Passes over the training phantoms (each method is trained this long).",
    "beta": "β, the weight of the information bottleneck on CIML's messages: higher β lets "
            "fewer nats through, so only clearly complementary information passes.",
}


def make_config(seed: int = 0, noise: float = 1.0, methods=("ensemble", "early_fusion", "ciml"),
                epochs: int | None = None, beta: float | None = None) -> CIMLConfig:
    """The app's quick CIML configuration (:meth:`CIMLConfig.fast`, or smaller still in tiny
    mode) with the page's settings; ``noise`` scales every modality's Rician σ."""
    base = CIMLConfig.fast(n_train=32, n_test=16, epochs=1) if tiny() else CIMLConfig.fast()
    if noise < 0:
        raise UserError(f"noise must be ≥ 0, got {noise}")
    phantom = dataclasses.replace(base.phantom, noise=tuple(noise * s for s in base.phantom.noise))
    return dataclasses.replace(base, seeds=(int(seed),), methods=tuple(methods), phantom=phantom,
                               epochs=epochs or base.epochs, beta=base.beta if beta is None else beta)


class CimlJob:
    """One CIML run in a daemon thread. ``snapshot()`` → ``{"status": "running"|"done"|"error",
    "error", "history": [per-epoch losses]}``; when done, ``results`` holds the
    :class:`~mimmx.ciml.train.Results` and ``figures`` the page's figures and tables (made
    here, once, so that the page only shows them)."""

    def __init__(self, config: CIMLConfig):
        self.config = config
        self.results = None
        self.figures: dict = {}
        self._lock = threading.Lock()
        self._state = {"status": "running", "error": None, "history": []}
        self.thread = threading.Thread(target=self._run, name="mimmx-app-ciml", daemon=True)

    def start(self) -> CimlJob:
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._state)

    def _epoch(self, record: dict) -> None:
        with self._lock:
            self._state["history"].append(dict(record))

    def _run(self) -> None:
        try:
            results = run(self.config, callback=self._epoch)
            self.figures = explain(results)
            self.results = results
            status, error = "done", None
        except Exception as err:  # noqa: BLE001 - shown in the page, not as a traceback
            status = "error"
            error = str(err) if isinstance(err, (UserError, ValueError)) else f"{type(err).__name__}: {err}"
        with self._lock:
            self._state.update(status=status, error=error)


def explain(results) -> dict:
    """The tab's result figures and tables of a finished run."""
    methods = results.config.methods
    shown = "ciml" if "ciml" in methods else methods[-1]
    out = {"dice": dice_table(results), "dice_figure": dice_figure(results),
           "prediction": prediction_figure(results, 0), "method": LABELS[shown],
           "shares": contribution_frame(results, shown, n=min(32, len(results.test))),
           "contributions": contribution_figure(results, shown, 0)}
    if "ciml" in methods:
        out["gates"] = gate_figure(results, 0)
    return out


def history_figure(history: list[dict]):
    frame = pd.DataFrame(history)
    fig = px.line(frame, x="epoch", y="loss", color="method", markers=True, template="plotly_white",
                  labels={"loss": "training loss"})
    fig.update_layout(height=280, margin={"t": 30})
    return fig


@st.cache_data(max_entries=8, show_spinner=False)
def _phantom(seed: int, noise: float):
    phantom = make_config(seed, noise).phantom
    return phantom_figure(make_phantoms(1, seed, phantom), 0)


def render() -> None:
    """The CIML tab (call inside ``with tab:``)."""
    st.markdown(INTRO)
    left, right = st.columns([1, 3])
    with left:
        seed = int(st.number_input("Phantom seed", 0, 10_000, 0, help=HELP["seed"], key="ciml-seed"))
        noise = st.slider("Noise (× default σ)", 0.0, 3.0, 1.0, 0.25, help=HELP["noise"],
                          key="ciml-noise")
        methods = st.multiselect("Methods", list(LABELS), default=list(LABELS),
                                 format_func=LABELS.get, help=HELP["methods"], key="ciml-methods")
        epochs = st.slider("Epochs", 1, 20, make_config().epochs, help=HELP["epochs"],
                           key="ciml-epochs")
        beta = st.select_slider("β (CIML bottleneck)", [0.0, 1e-4, 1e-3, 1e-2, 1e-1], 1e-3,
                                help=HELP["beta"], key="ciml-beta")
        clicked = st.button("Train CIML and baselines", type="primary", key="ciml-train")
    with right:
        st.caption(f"One phantom (seed {seed}): the four modalities ({', '.join(MODALITIES)}) and "
                   "the nested regions, whole tumour ⊃ tumour core ⊃ enhancing tumour.")
        st.plotly_chart(_phantom(seed, noise), width="stretch", key="ciml-phantom")

    job = st.session_state.get("ciml_job")
    if clicked:
        if job is not None and job.running:
            st.warning("A CIML training is still running; wait for it to finish.")
        else:
            try:
                job = CimlJob(make_config(seed, noise, methods, epochs, beta)).start()
                st.session_state["ciml_job"] = job
            except UserError as err:  # ConfigError: e.g. no method chosen
                st.error(str(err))
    if job is not None:
        st.fragment(_show, run_every=1.0 if job.running else None)(job, job.running)


def _show(job: CimlJob, live: bool) -> None:
    with page_turn():  # its redraws wait their turn, as the page's (app.py)
        s = job.snapshot()
        if s["status"] == "error":
            st.error(s["error"])
        elif s["status"] == "running":
            last = s["history"][-1] if s["history"] else None
            where = f"{last['method']}, epoch {last['epoch']}/{last['epochs']}" if last else "starting"
            st.info(f"Training: {where} …")
        if s["history"]:
            st.plotly_chart(history_figure(s["history"]), width="stretch", key="ciml-history")
        figs = job.figures if s["status"] == "done" else {}
        if figs:
            st.subheader("Dice on the held-out test phantoms [%]")
            st.caption("Dice = 2|P ∩ G| / (|P| + |G|): 100 is a perfect overlap. Single-modality rows "
                       "are the ensemble's members: no single modality shows every region.")
            st.dataframe(figs["dice"], key="ciml-dice")
            st.plotly_chart(figs["dice_figure"], width="stretch", key="ciml-dice-figure")
            st.plotly_chart(figs["prediction"], width="stretch", key="ciml-prediction")
            st.subheader(f"Which modality contributes where ({figs['method']})")
            st.caption("Input × gradient: how much each modality's pixels move the evidence for a "
                       "region. Shares over 32 test phantoms [%]:")
            st.dataframe(figs["shares"], key="ciml-shares")
            st.plotly_chart(figs["contributions"], key="ciml-contributions")
            if "gates" in figs:
                st.caption("CIML's gates: where segmentor m lets modality n's message in (1 = fully).")
                st.plotly_chart(figs["gates"], key="ciml-gates")
        if live and s["status"] != "running":
            st.rerun()
