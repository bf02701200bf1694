"""The app page (``app.py``) through Streamlit's AppTest: it starts, lists the datasets,
trains a tiny request in its background thread, and shows bad input as an error."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMX_APP_TINY", "1")  # 400 training images, 2 epochs
    monkeypatch.setenv("MIMMX_APP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("MIMMX_THREADS", "1")
    at = AppTest.from_file(APP, default_timeout=60).run()
    yield at
    job = at.session_state["job"] if "job" in at.session_state else None
    if job is not None:
        job.stop()
        job.thread.join(60)


def poll(at: AppTest, done, seconds: float = 60.0) -> AppTest:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        at.run()
        if done(at):
            return at
        time.sleep(0.5)
    raise AssertionError("the app did not get there in time")


def test_app_starts_and_lists_the_datasets(app):
    assert not app.exception
    table = app.dataframe[0].value
    assert len(table) == 8 and set(table["state"]) == {"verified"}
    assert app.sidebar.selectbox[0].value == "exp1"
    # an empty store: the robustness panel still draws its axes, chance line and the slider's r,
    # so the browser has plotly's code loaded before the first Train
    panel = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert not [t for t in panel["data"] if t.get("x")]
    assert app.sidebar.slider[0].value in [shape.get("x0") for shape in panel["layout"]["shapes"]]
    assert any("Train adds one" in a["text"] for a in panel["layout"]["annotations"])


def test_train_shows_accuracy_curves_and_final_table(app):
    app.sidebar.button[0].click().run()  # Train
    assert not app.exception
    job = app.session_state["job"]
    poll(app, lambda at: not job.running and at.session_state["job"].snapshot()["status"] != "running")
    at = poll(app, lambda at: len(at.dataframe) >= 3)
    assert not at.exception and not at.error
    s = job.snapshot()
    assert s["status"] == "done", s
    assert set(s["runs"]) == {"Baseline", "MIMM-X + DLS + CAW"}
    for run in s["runs"].values():
        assert [ev["epoch"] for ev in run["history"]] == [1, 2]
        assert run["record"]["app_embeddings"]
    acc = next(d.value for d in at.dataframe if "test_set" in d.value.columns)
    assert len(acc) == 2 * 2 * 3  # methods × epochs × test sets
    assert acc["accuracy"].between(0, 100).all()
    final = next(d.value for d in at.dataframe if "Inverted y" in d.value.columns)
    assert {"Inverted marker", "Inverted site"} <= set(final.columns)  # factors by name, not z1 / z2
    # the same request again comes from the results store at once
    at.sidebar.button[0].click().run()
    again = at.session_state["job"]
    assert again is not job
    poll(at, lambda _: again.snapshot()["runs"]["Baseline"]["record"] is not None, 10)
    assert all(run["cached"] for run in again.snapshot()["runs"].values())


def test_results_of_earlier_settings_are_marked(app):
    app.sidebar.button[0].click().run()  # Train
    job = app.session_state["job"]
    poll(app, lambda at: not job.running)
    assert not any("earlier settings" in w.value for w in app.warning)
    lam = next(s for s in app.sidebar.slider if s.label.startswith("λ"))
    lam.set_value(lam.value + 1.0).run()
    assert any("earlier settings" in w.value for w in app.warning)


def test_infeasible_request_shows_an_error(app):
    app.sidebar.number_input[0].set_value(100000).run()  # more training images than MNIST has
    app.sidebar.button[0].click().run()
    at = poll(app, lambda at: len(at.error) > 0)
    assert not at.exception
    assert "train" in at.error[0].value.lower()


def test_stop_ends_the_training_early_and_stores_nothing(real_data, tmp_path, monkeypatch):
    from mimmx.app import session
    from mimmx.runs import ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    req = session.default_request("exp1")
    req.epochs = 50
    store = ResultStore(tmp_path)
    job = session.Job(session.configs(req), store).start()
    end = time.monotonic() + 60
    while not job.snapshot()["runs"]["Baseline"]["history"] and time.monotonic() < end:
        time.sleep(0.05)
    job.stop()
    job.thread.join(60)
    s = job.snapshot()
    assert s["status"] == "stopped"
    assert 1 <= len(s["runs"]["Baseline"]["history"]) < 50
    assert len(s["runs"]["MIMM-X + DLS + CAW"]["history"]) < 50  # trained alongside, stopped too
    assert list(store.records()) == []


def test_configs_carry_the_sliders_and_reject_bad_values(monkeypatch):
    from mimmx.app import session
    from mimmx.errors import UserError

    monkeypatch.delenv("MIMMX_APP_TINY", raising=False)
    req = session.Request("exp1", ("Baseline", "MIMM-X + DLS + CAW"), r=0.8, lam=0.7, n_b=3, epochs=4)
    cfgs = session.configs(req)
    mimmx_cfg = cfgs["MIMM-X + DLS + CAW"]
    assert (mimmx_cfg.method.name, mimmx_cfg.method.lam, mimmx_cfg.method.n_b) == ("mimmx", 0.7, 3)
    assert cfgs["Baseline"].method.name == "baseline" and cfgs["Baseline"].scenario.r == 0.8
    assert mimmx_cfg.train.epochs == 4 and mimmx_cfg.train.eval_every == 1
    assert cfgs["Baseline"].hash() != mimmx_cfg.hash()
    # a knob a method does not read leaves its key alone: the Baseline at λ 0.7 is the one at λ 5
    again = session.configs(dataclasses.replace(req, lam=5.0))
    assert again["Baseline"].hash() == cfgs["Baseline"].hash() != again["MIMM-X + DLS + CAW"].hash()
    # the app's default MIMM-X is the shipped row (exp1: resampled losses at λ = 3, gradient scaling)
    from mimmx.runs.experiments import row_config, rows

    shipped = row_config("exp1", {r.label: r for r in rows("exp1")}["MIMM-X + DLS + CAW"])
    default = session.configs(session.default_request("exp1"))["MIMM-X + DLS + CAW"]
    knobs = lambda m: (m.lam, m.resample, m.grad_scaling)  # noqa: E731
    assert knobs(default.method) == knobs(shipped.method) == (3.0, True, True)
    assert not session.takes_r("exp3") and session.takes_r("exp1")
    with pytest.raises(UserError, match=r"'scenario.r' must be in \[0, 1\]"):
        session.configs(session.Request(r=1.5))
    with pytest.raises(UserError, match="not rows of"):
        session.configs(session.Request("morpho", ("MIMM-X + DLS + CAW",)))


def test_dynamics_curves_are_means_of_consecutive_steps():
    from mimmx.app import charts

    steps = [{"step": i + 1, "epoch": i / 27, "loss": 9.0, "loss_y": float(i), "gamma_y": 1.0}
             for i in range(270)]
    history = [{"epoch": 1, "estimate": 0.25}]
    df = charts.dynamics_frame({"MIMM-X": {"steps": steps, "history": history}}, points=60)
    loss = df[df["quantity"] == "loss_y"]
    assert len(loss) == 60 and set(df["quantity"]) == {"loss_y", "gamma_y", "MI estimate"}
    # equal-sized bins of 4 or 5 consecutive steps: their means, in order, average to the mean
    assert loss["value"].is_monotonic_increasing and loss["value"].iloc[0] < 3
    assert abs(loss["value"].mean() - 134.5) < 0.5
    assert df.loc[df["quantity"] == "MI estimate", "value"].tolist() == [0.25]
    few = charts.dynamics_frame({"Baseline": {"steps": steps[:7], "history": []}}, points=60)
    assert few[few["quantity"] == "loss_y"]["value"].tolist() == [float(i) for i in range(7)]


def test_help_explains_dls_exponents_and_a_good_result(app):
    helps = {s.label: s.help for s in app.sidebar.slider}
    assert "(L_i / L̄)^α_Z" in helps["α_Z"] and "not a parameter of the Confounder" in helps["α_Z"]
    assert "(L_0 / L̄)^α_Y" in helps["α_Y"]
    assert "α_Y + (epoch / epochs) · β_Y" in helps["β_Y"]
    assert any("Inverted close to Validation" in m.value for m in app.markdown)


def test_slider_floats_hash_like_the_presets(monkeypatch):
    from mimmx.app import session

    monkeypatch.delenv("MIMMX_APP_TINY", raising=False)
    d = session.default_request("exp1")
    assert d.r == 0.9  # the slider's start: the scenario's own r
    noisy = session.Request(r=0.1 * 7, alpha_y=0.1 * 3)  # what float sliders can return
    clean = session.Request(r=0.7, alpha_y=0.3)
    assert (noisy.r, noisy.alpha_y) != (0.7, 0.3)
    assert ({k: c.hash() for k, c in session.configs(noisy).items()}
            == {k: c.hash() for k, c in session.configs(clean).items()})


def test_live_embeddings_at_every_evaluation_leave_training_unchanged(real_data, tmp_path,
                                                                      monkeypatch):
    from mimmx.app import session
    from mimmx.runs import ResultStore
    from mimmx.trainer import train

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    real = session.embeddings_frame
    asked = []

    def fake_umap(parts, labels, method="pca", **kw):  # UMAP's first call compiles for ~20 s
        asked.append(method)
        return real(parts, labels, "pca")

    monkeypatch.setattr(session, "embeddings_frame", fake_umap)
    monkeypatch.setattr(session, "UMAP_DUTY", 1.0)
    cfgs = session.configs(session.Request(methods=("Baseline",), epochs=3))
    seen = []  # the live embedding's epoch whenever a new evaluation shows up
    job = session.Job(cfgs, ResultStore(tmp_path), umap_ready=lambda: True).start()
    while job.running:
        run = job.snapshot()["runs"]["Baseline"]
        if run["live"] and (not seen or seen[-1] != run["live"]["epoch"]):
            seen.append(run["live"]["epoch"])
        time.sleep(0.01)
    s = job.snapshot()
    run = s["runs"]["Baseline"]
    assert s["status"] == "done", s["error"]
    assert run["live"]["epoch"] == 3 and run["live"]["method"] == "PCA"
    assert seen[-1] == 3 and len(seen) >= 2  # refreshed while training, not only at the end
    n = min(session.LIVE_POINTS, 200)  # tiny Balanced set: 200 images
    assert len(run["live"]["records"]) == 3 * n  # f_y, f_z1, f_z2
    assert {r["part"] for r in run["live"]["records"]} == {"f_y", "f_z1", "f_z2"}
    assert "umap" in asked and run["live_umap"]["method"] == "UMAP"
    assert run["record"]["app_embeddings"][0]["method"] == "UMAP"  # UMAP warm: the final one too
    # the features were read in eval mode: training is exactly that of the plain trainer
    plain = train(cfgs["Baseline"], session.scenario_for(cfgs["Baseline"]))
    assert [ev["acc"] for ev in run["history"]] == [ev["acc"] for ev in plain.history]


def test_warm_cache_fills_the_apps_store_and_never_retrains(real_data, tmp_path, monkeypatch,
                                                           capsys):
    from mimmx.app import session, warm
    from mimmx.cli import main
    from mimmx.runs import jobs as results

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    monkeypatch.setenv("MIMMX_APP_RESULTS", str(tmp_path))
    # the store's own evaluation (post-hoc MINE, k-NN probes) is not under test here: skip it
    monkeypatch.setattr(results, "EVAL_OPTIONS", {**results.EVAL_OPTIONS, "mi": False,
                                                  "probes": ("logreg",)})
    assert main(["warm-cache", "--dry-run", "--scenarios", "exp1", "exp3"]) == 0
    out = capsys.readouterr().out
    assert "10 presets: 0 cached, 10 to train" in out  # exp1: 5 r values × 2 methods; exp3: 2
    assert list(tmp_path.glob("*.json")) == []  # a dry run trains nothing

    monkeypatch.setenv("MIMMX_CACHE", str(tmp_path / "cache"))
    assert main(["warm-cache", "--scenarios-only", "--scenarios", "exp1"]) == 0  # `make app` runs it
    said = capsys.readouterr()
    assert "scenario exp1: ready" in said.out
    # a bar per slow step while it works: the fractures of the train split, 200 digits when tiny
    assert "scenario exp1: fracturing train-split digits: 100%" in said.err and "200/200" in said.err
    built = list((tmp_path / "cache" / "scenarios").glob("exp1-*.pt"))
    assert len(built) == 1 and list(tmp_path.glob("*.json")) == []  # built, nothing trained

    done = warm.warm(["exp1"], r_values=())
    assert len(done["trained"]) == 2 and not done["cached"]
    assert list((tmp_path / "cache" / "scenarios").glob("*.pt")) == built  # trained on the built one
    # the robustness panel finds the stored runs at the sidebar's settings, and only those
    from mimmx.app import charts

    req = session.default_request("exp1")
    frame = session.robustness(req)
    assert sorted(frame["method"]) == sorted(req.methods) and set(frame["r"]) == {req.r}
    assert frame["validation"].between(0, 100).all()
    # at another λ only the Baseline's run is the same (it does not read λ); at other epochs none
    assert session.robustness(dataclasses.replace(req, lam=req.lam + 1))["method"].tolist() == ["Baseline"]
    assert session.robustness(dataclasses.replace(req, epochs=req.epochs + 1)).empty
    assert session.robustness(session.default_request("exp3")).empty  # tables, not r
    fig = charts.robustness_figure(frame, "exp1", req.r)
    assert len(fig.data) == 2 * len(req.methods) and req.r in [shape.x0 for shape in fig.layout.shapes]
    job = session.Job(session.configs(session.default_request("exp1"))).start()
    job.thread.join(60)
    runs = job.snapshot()["runs"]
    assert all(run["cached"] and run["record"]["app_embeddings"] for run in runs.values())
    # nothing was trained by the app: its loss / γ curves are the stored run's
    assert all(run["steps"] and run["steps"] == run["record"]["steps"] for run in runs.values())
    mtimes = {p: p.stat().st_mtime for p in tmp_path.glob("*.pt")}
    again = warm.warm(["exp1"], r_values=())
    assert not again["trained"] and len(again["cached"]) == 2
    assert {p: p.stat().st_mtime for p in tmp_path.glob("*.pt")} == mtimes


def test_ciml_tab_trains_and_shows_dice_and_maps(app):
    # only the open tab runs: the CIML page is drawn once its tab is chosen
    assert not [b for b in app.button if b.key == "ciml-train"]
    app.session_state["tab"] = "CIML: keep complementary information"
    app.run()
    assert any("complementary" in m.value for m in app.markdown)
    assert not any("holds up" in h.value for h in app.subheader)  # the first tab is not drawn
    app.button(key="ciml-train").click().run()
    assert not app.exception
    job = app.session_state["ciml_job"]
    job.thread.join(90)
    at = app.run()
    assert job.snapshot()["status"] == "done", job.snapshot()["error"]
    assert not at.exception and not at.error
    dice = next(d.value for d in at.dataframe if "mean Dice" in d.value.columns)
    assert {"ensemble", "early fusion", "CIML", "single (T1ce)"} <= set(dice.index)
    assert dice["mean Dice"].between(0, 100).all()
    shares = next(d.value for d in at.dataframe if "T1ce" in d.value.columns)
    assert (shares.sum(axis=1) - 100).abs().max() < 0.5  # each region's shares sum to 100 %
    assert {"gates", "contributions", "prediction"} <= set(job.figures)


def test_runs_train_side_by_side_and_match_the_plain_trainer(real_data, tmp_path, monkeypatch):
    """The job trains Baseline and MIMM-X in two threads at once; each run is seeded on its
    own (initial weights under a lock, MINE's shuffles from the method's generator), so the
    records equal those of the plain trainer run one at a time."""
    from mimmx.app import session
    from mimmx.runs import ResultStore
    from mimmx.trainer import train

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    monkeypatch.setattr(session, "PARALLEL_RUNS", 2)
    cfgs = session.configs(session.default_request("exp1"))
    started = {}
    original = session.Job._train_one

    def spy(self, label, cfg):
        started[label] = time.monotonic()
        return original(self, label, cfg)

    monkeypatch.setattr(session.Job, "_train_one", spy)
    job = session.Job(cfgs, ResultStore(tmp_path)).start()
    job.thread.join(300)
    s = job.snapshot()
    assert s["status"] == "done", s["error"]
    assert abs(started["Baseline"] - started["MIMM-X + DLS + CAW"]) < 5  # neither waited for the other
    for label, cfg in cfgs.items():
        alone = train(cfg, session.scenario_for(cfg))
        assert [e["acc"] for e in s["runs"][label]["history"]] == [e["acc"] for e in alone.history], label


def test_a_class_of_thirty_sessions_shares_one_server(real_data, tmp_path, monkeypatch):
    """Thirty students press Train on one server, ten at each of three λ: at most `slots`
    trainings run at once, each distinct configuration trains once (the rest join it or read
    it), every session gets its result, and reading a session's state stays quick."""
    from mimmx.app import session
    from mimmx.runs import ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    store = ResultStore(tmp_path)
    pool = session.SCHEDULER.workers if session.SCHEDULER.workers.n >= 2 else None
    scheduler = session.Scheduler(slots=2, workers=pool)  # the server's training processes, if enough
    base = session.default_request("exp1")
    jobs = [session.Job(session.configs(dataclasses.replace(base, lam=0.5 + i % 3)), store,
                        scheduler=scheduler).start() for i in range(30)]
    slowest = 0.0
    while any(job.running for job in jobs):
        for job in jobs:
            t0 = time.perf_counter()
            job.snapshot()
            slowest = max(slowest, time.perf_counter() - t0)
        time.sleep(0.2)
    assert slowest < 1.0
    states = [job.snapshot() for job in jobs]
    assert all(s["status"] == "done" for s in states), [s["error"] for s in states]
    assert all(run["record"] for s in states for run in s["runs"].values())
    keys = {run["key"] for s in states for run in s["runs"].values()}
    assert len(keys) == 1 + 3  # one Baseline (it does not read λ), MIMM-X at each of three λ
    assert sorted(scheduler.trained) == sorted(keys)  # nothing trained twice
    assert scheduler.peak <= 2
    if pool is None:
        scheduler.workers.close()


def test_a_run_kept_at_chance_says_so_from_the_training_process_to_the_page(real_data, tmp_path,
                                                                           monkeypatch):
    """The trainer's RunWarning (the kept model learnt nothing of y) is raised in a training
    process: it comes back in the stored record, and the page shows it under the final table."""
    from mimmx.app import session
    from mimmx.runs import ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    monkeypatch.setenv("MIMMX_APP_RESULTS", str(tmp_path))
    cfg = session.configs(dataclasses.replace(session.default_request("exp1"), methods=("Baseline",)))
    frozen = {"Baseline": cfg["Baseline"].override(["train.lr=1e-12", "train.epochs=1"])}  # learns nothing
    job = session.Job(frozen, ResultStore(tmp_path)).start()
    job.thread.join(120)
    record = job.snapshot()["runs"]["Baseline"]["record"]
    assert record and any("at chance" in w for w in record["warnings"]), record and record["warnings"]
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["job"] = job
    at.run()
    assert f"Baseline: {record['warnings'][0]}" in [w.value for w in at.warning]


def test_a_training_process_that_dies_is_reported_and_replaced(real_data, tmp_path, monkeypatch):
    """Trainings run in worker processes: one killed mid-run (out of memory, say) ends its job
    with an error that says so, and the next job gets a new worker and trains; one killed while
    idle is replaced before a job would get it."""
    from mimmx.app import session
    from mimmx.runs import ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    scheduler = session.Scheduler(slots=1)
    req = dataclasses.replace(session.default_request("exp1"), methods=("Baseline",), epochs=50)
    job = session.Job(session.configs(req), ResultStore(tmp_path), scheduler=scheduler).start()
    end = time.monotonic() + 120
    while not job.snapshot()["runs"]["Baseline"]["history"] and time.monotonic() < end:
        time.sleep(0.05)
    [worker] = scheduler.workers.members
    assert worker.process.pid != os.getpid()  # the training is not in this process
    worker.process.kill()
    job.thread.join(30)
    s = job.snapshot()
    assert s["status"] == "error" and "ended unexpectedly" in s["error"], s["error"]
    job = session.Job(session.configs(dataclasses.replace(req, epochs=1)), ResultStore(tmp_path),
                      scheduler=scheduler).start()
    job.thread.join(120)
    assert job.snapshot()["status"] == "done", job.snapshot()["error"]
    assert scheduler.workers.members[0] is not worker
    idle = scheduler.workers.members[0]
    idle.process.kill()  # one that dies while idle is replaced before it is lent
    idle.process.wait(10)
    job = session.Job(session.configs(dataclasses.replace(req, epochs=1, seed=1)), ResultStore(tmp_path),
                      scheduler=scheduler).start()
    job.thread.join(120)
    assert job.snapshot()["status"] == "done", job.snapshot()["error"]
    assert scheduler.workers.members[0] is not idle
    scheduler.workers.close()


def test_the_job_says_how_far_the_scenario_build_has_got(real_data, tmp_path, monkeypatch):
    """On a cold cache the first Train builds the scenario: the job's phase (the page's
    "Running: …" line) says how far, chunk of fractures by chunk."""
    from mimmx.app import session
    from mimmx.runs import ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    monkeypatch.setenv("MIMMX_CACHE", str(tmp_path / "cache"))  # nothing built on disk
    monkeypatch.setattr(session, "_scenarios", {})  # nor in this process
    monkeypatch.setattr("mimmx.scenarios.factors.FRACTURE_CHUNK", 20)
    job = session.Job(session.configs(session.default_request("exp1")), ResultStore(tmp_path / "results"),
                      scheduler=session.Scheduler(slots=1)).start()
    phases = []
    while job.running and (s := job.snapshot(keys=()))["scenario"] is None:
        phases.append(s["phase"])
        time.sleep(0.01)
    job.stop()
    job.thread.join(60)
    shown = sorted({p for p in phases if p != session.BUILDING and p.startswith(session.BUILDING)})
    assert len(shown) >= 2, phases  # e.g. "building the scenario (fracturing train-split digits: 40 of 200)"
    assert all(" of " in p and "fracturing" in p for p in shown)


def test_class_mode_shows_stored_runs_and_trains_none(real_data, tmp_path, monkeypatch):
    from mimmx.app import session
    from mimmx.runs import ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    monkeypatch.setenv("MIMMX_APP_CLASS", "1")
    job = session.Job(session.configs(session.default_request("exp1")), ResultStore(tmp_path),
                      scheduler=session.Scheduler(slots=1)).start()
    job.thread.join(60)
    s = job.snapshot()
    assert s["status"] == "error" and "class mode" in s["error"] and not list(tmp_path.glob("*.json"))


def test_the_robustness_panel_sees_a_run_as_soon_as_the_store_holds_it(tmp_path, monkeypatch):
    # the panel's look-ups are kept between reruns: a record landing in the store must show
    from mimmx.app import session
    from mimmx.runs.store import FORMAT, REQUIRED, ResultStore

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    results, req = ResultStore(tmp_path), session.default_request("exp1")
    assert session.robustness(req, results).empty
    cfg = session.configs(req)[req.methods[0]]
    acc = {s: {"y": 70.0 + i} for i, s in enumerate(("validation", "inverted", "balanced"))}
    record = {**{f: {} for f in REQUIRED}, "format": FORMAT, "key": cfg.hash(),
              "config": cfg.to_dict(), "method": cfg.method.name, "best": {"acc": acc},
              "wall_time": {"total": 1.0}}
    results.put(record)
    frame = session.robustness(req, results)
    assert frame[["method", "r", "validation", "inverted", "balanced"]].values.tolist() == [
        [req.methods[0], req.r, 70.0, 71.0, 72.0]]
    # another r from the grid is looked up in the same pass, and a changed setting is not this run
    assert session.robustness(dataclasses.replace(req, r=0.7), results)["r"].tolist() == [req.r]
    assert session.robustness(dataclasses.replace(req, epochs=req.epochs + 1), results).empty


def test_pages_are_drawn_a_few_at_a_time_and_a_fragment_inside_a_page_passes():
    """session.page_turn: at most PARALLEL_RUNS page scripts draw at once on the server (the
    rest wait without the GIL); a fragment drawn inside its page's run does not wait for itself."""
    import threading

    from mimmx.app import session

    inside, most, lock = [0], [0], threading.Lock()

    def draw():
        with session.page_turn(), session.page_turn():  # the page, then a fragment within it
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=draw) for _ in range(4 * session.PARALLEL_RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)  # nobody waits for a turn it holds
    assert 1 <= most[0] <= session.PARALLEL_RUNS


def test_a_training_process_whose_server_has_gone_ends_quietly(tmp_path):
    # a server stopped while its training processes still import torch: they find no server to
    # connect to, and end without a traceback in the server's log
    from mimmx.app import workers

    env = {**os.environ, workers.KEY_ENV_VAR: "00" * 16}
    done = subprocess.run([sys.executable, "-m", "mimmx.app.workers", str(tmp_path / "gone")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
