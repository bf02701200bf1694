"""The app's Audit tab (``mimmx.app.audit_page``): its run list names a stored run and skips
runs without a checkpoint, its audit of a stored run lists the scenario's factors, enough
permutations are used for a flag to be possible, and the tab (through AppTest) tells how to fill
an empty store and audits a stored run."""

import warnings
from pathlib import Path

import pytest

from mimmx.app import audit_page
from mimmx.evaluation.audit import LEVEL, run_attributes

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def store(real_data, tmp_path_factory):
    """A results store holding one tiny exp2 Baseline run, stored the way the app stores its
    runs (a record and its checkpoint), and a record of the same run without a checkpoint."""
    from mimmx.config import RunConfig
    from mimmx.errors import RunWarning
    from mimmx.evaluation import evaluate_result
    from mimmx.runs import ResultStore
    from mimmx.runs.folder import checkpoint_bytes, make_record
    from mimmx.trainer import train

    cfg = RunConfig().override(["scenario.name=exp2", "scenario.n_train=600", "scenario.n_selection=200",
                                "scenario.n_test=200", "train.epochs=2", "train.batch_size=60",
                                "train.device=cpu", "method.name=baseline"])
    with warnings.catch_warnings():  # two epochs on 600 images: a model near chance, audited all the same
        warnings.simplefilter("ignore", RunWarning)
        result = train(cfg)
    report = evaluate_result(result, probes=("logreg",), mi=False, embedding=None)
    results = ResultStore(tmp_path_factory.mktemp("results"))
    results.put(make_record(result, report.to_dict(), {}, 0.0), checkpoint_bytes(result))
    # the same run's record once more, seed 1, without a checkpoint: not auditable
    orphan = make_record(result, report.to_dict(), {}, 0.0)
    other = cfg.replace({"seed": 1})
    orphan.update(key=other.hash(), config=other.to_dict())
    results.put(orphan)
    return results, cfg


def test_the_run_list_names_stored_runs_and_skips_those_without_a_checkpoint(store):
    results, cfg = store
    assert len(list(results.records())) == 2
    runs = audit_page.stored_runs(results)
    assert len(runs) == 1
    run = runs[0]
    assert (run.key, run.scenario, run.method, run.seed) == (cfg.hash(), "exp2", "Baseline", 0)
    assert [name for name, _ in run.accuracy] == ["validation", "inverted", "balanced"]
    # the settings where it differs from the poster's exp2 Baseline, shortened
    assert run.name.startswith("Baseline · seed 0 · ") and "n_train 600" in run.name and "…" in run.name
    assert audit_page.default_run(runs, "exp2") == 0 and audit_page.default_run(runs, "exp1") == 0


def test_default_run_prefers_the_scenarios_baseline_at_the_posters_settings():
    def run(scenario, method, seed=0, note=""):
        return audit_page.StoredRun(f"{scenario}{method}{seed}{note}", scenario, method, seed, note)

    runs = [run("exp1", "Baseline"), run("exp2", "Oracle (no confounding)"),
            run("exp2", "Baseline", note="epochs 10"), run("exp2", "Baseline", 1), run("exp2", "dCor")]
    assert audit_page.default_run(runs, "exp2") == 3
    assert audit_page.default_run(runs[:3], "exp2") == 2
    assert audit_page.default_run(runs[1:2] + runs[4:], "exp2") == 0  # no Baseline: the first
    assert audit_page.default_run(runs, "morpho") == 0  # not stored: the first Baseline
    assert audit_page.default_run([], "exp2") == 0


def test_run_names_come_from_the_poster_rows():
    from mimmx.runs.experiments import ORACLE, row_config, rows

    mimmx_row = next(r for r in rows("exp2") if r.label == "MIMM-X + DLS + CAW")
    for row, label in ((ORACLE, "Oracle (no confounding)"), (mimmx_row, "MIMM-X + DLS + CAW")):
        cfg = row_config("exp2", row, 2)
        assert audit_page.run_name({"config": cfg.to_dict()})[:2] == (label, "")
    cfg = row_config("exp2", ORACLE, 0).replace({"train.epochs": 10})
    assert audit_page.run_name({"config": cfg.to_dict()})[:2] == ("Oracle (no confounding)", "epochs 10")


def test_runs_trained_in_the_app_are_named_by_their_row_and_settings(monkeypatch):
    from mimmx.app import session

    monkeypatch.delenv("MIMMX_APP_TINY", raising=False)
    cfgs = session.configs(session.Request("exp3", ("Baseline", "MIMM-X + DLS + CAW"), epochs=10))
    assert {label: audit_page.run_name({"config": c.to_dict()})[:2] for label, c in cfgs.items()} == {
        "Baseline": ("Baseline", "epochs 10"), "MIMM-X + DLS + CAW": ("MIMM-X + DLS + CAW", "epochs 10")}


@pytest.mark.parametrize("n_candidates", [1, 12, 18, 40, 60])
def test_enough_permutations_for_a_flag(n_candidates):
    n = audit_page.permutations_for(n_candidates)
    assert n >= audit_page.LEAST_PERMUTATIONS
    assert n_candidates / (n + 1) <= LEVEL / 2  # the smallest adjusted p passes the level
    assert 12 / (199 + 1) > LEVEL  # why: 199 permutations could flag none of 12 candidates


def test_a_stored_run_is_audited_with_its_factors(store):
    results, cfg = store
    out = audit_page.run_audit(results, cfg.hash(), "balanced")
    table = out["report"].table.set_index("candidate")
    assert {"marker", "intensity", "intensity (measured)", "corner top-left"} <= set(table.index)
    assert table.loc["marker", "kind"] == "factor" and table.loc["intensity", "kind"] == "factor"
    assert out["candidates"] == len(table) and out["permutations"] == audit_page.permutations_for(len(table)) == 999
    assert out["bootstrap"] == audit_page.BOOTSTRAP
    assert out["candidates"] == len(run_attributes(results.load_run(cfg.hash()), "balanced")[0].columns)
    view = audit_page.candidates_view(out["report"].table)
    assert list(view["candidate"]) == list(out["report"].table["candidate"])
    assert {"family", "flagged", "p (adjusted)", "same family as"} <= set(view.columns)
    slices = audit_page.slices_view(out["report"].slices, out["report"].y_names)
    assert "members" not in slices and set(slices["class"]) <= set(out["report"].y_names)
    with pytest.raises(ValueError, match="split must be one of"):
        audit_page.run_audit(results, cfg.hash(), "train")


# ------------------------------------------------------------------------------ the tab


def _app(monkeypatch, root: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MIMMX_APP_TINY", "1")
    monkeypatch.setenv("MIMMX_APP_RESULTS", str(root))
    monkeypatch.setenv("MIMMX_THREADS", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["tab"] = "Audit: what does a model use?"  # only the open tab runs
    return at.run()


def test_the_tab_tells_how_to_fill_an_empty_store(real_data, tmp_path, monkeypatch):
    at = _app(monkeypatch, tmp_path / "empty")
    assert not at.exception
    assert any(t.label.startswith("Audit") for t in at.tabs)
    message = next(i.value for i in at.info if "nothing to audit" in i.value)
    assert "python -m mimmx reproduce exp2 --rows baseline oracle" in message and "first tab" in message


def test_the_tab_audits_a_stored_run_once(store, monkeypatch):
    results, cfg = store
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return run_audit(*args, **kwargs)

    run_audit = audit_page.run_audit
    monkeypatch.setattr(audit_page, "run_audit", counted)
    at = _app(monkeypatch, results.root)
    assert not at.exception
    assert at.selectbox(key="audit-scenario").value == "exp2"
    assert at.selectbox(key="audit-run-exp2").value == cfg.hash()
    assert any("Press **Audit**" in i.value for i in at.info)
    at.button(key="audit-go").click().run()
    assert not at.exception and not at.error
    frames = [d.value for d in at.dataframe]
    table = next(f for f in frames if "same family as" in getattr(f, "columns", ()))
    assert {"marker", "intensity"} <= set(table["candidate"])
    assert any("class right [%]" in getattr(f, "columns", ()) for f in frames)
    at.run()  # a rerun shows the same audit, from the cache
    assert not at.exception and len(calls) == 1
    assert any("same family as" in getattr(d.value, "columns", ()) for d in at.dataframe)
    at.radio(key="audit-split").set_value("inverted").run()  # another split: press Audit again
    assert any("Press **Audit**" in i.value for i in at.info) and len(calls) == 1
