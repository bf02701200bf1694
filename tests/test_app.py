"""The app page (``app.py``) through Streamlit's AppTest: it starts, lists the datasets,
trains a tiny request in its background thread, and shows bad input as an error."""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app(morpho_table, tmp_path, monkeypatch):
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
    # the same request again comes from the results store at once
    at.sidebar.button[0].click().run()
    again = at.session_state["job"]
    assert again is not job
    poll(at, lambda _: again.snapshot()["runs"]["Baseline"]["record"] is not None, 10)
    assert all(run["cached"] for run in again.snapshot()["runs"].values())


def test_infeasible_request_shows_an_error(app):
    app.sidebar.number_input[0].set_value(100000).run()  # more training images than MNIST has
    app.sidebar.button[0].click().run()
    at = poll(app, lambda at: len(at.error) > 0)
    assert not at.exception
    assert "train" in at.error[0].value.lower()


def test_stop_ends_the_training_early_and_stores_nothing(morpho_table, tmp_path, monkeypatch):
    from mimmx.app import session
    from mimmx.results import ResultStore

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
    assert not s["runs"]["MIMM-X + DLS + CAW"]["history"]  # never started
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
    assert not session.takes_r("exp3") and session.takes_r("exp1")
    with pytest.raises(UserError, match="not a probability"):
        session.configs(session.Request(r=1.5))
    with pytest.raises(UserError, match="not rows of"):
        session.configs(session.Request("morpho", ("MIMM-X + DLS + CAW",)))
