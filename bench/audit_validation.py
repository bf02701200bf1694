"""The shortcut audit's validation (docs/audit.md): does the audit find the confounders it is not
told about, and leave the unconfounded model alone?

    MIMMX_DATA=../shared/data python bench/audit_validation.py exp1 [--seeds 3]
    MIMMX_DATA=../shared/data python bench/audit_validation.py cohort [--seeds 3]

``exp1`` (or any experiment): the stored Baseline and Oracle runs of ``python -m mimmx reproduce
EXP --rows baseline oracle`` (the store of $MIMMX_CACHE, else data/cache), audited on the
Balanced set with the scenario's factors listed by name among the image measures; prints each
factor's family rank and whether it is flagged, and the three strongest families.
``cohort``: the example cohort (``write_example_cohort``, the hospital drives the shortcut at
r_site = 0.9) with only sex declared as a factor; a Baseline is trained per seed and audited with
every manifest column as a candidate; prints the rank of the site's family. With ``--loop``,
the site column then becomes a factor and exp2's MIMM-X trains with it (``add_factor``); prints
the site's dCor, p and error gap before and after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def families(table) -> str:
    """The three strongest families: head [members]."""
    out = []
    for rank in sorted(table["family"].unique())[:3]:
        members = list(table.loc[table["family"] == rank, "candidate"])
        out.append(f"{rank}. {members[0]}" + (f" [{', '.join(members[1:])}]" if members[1:] else ""))
    return "; ".join(out)


def factor_line(table, names: list[str]) -> str:
    """Per factor: its family's rank and size, its own rank, dCor, adjusted p."""
    t = table.set_index("candidate")
    size = table["family"].value_counts()
    return ", ".join(f"{n}: family {t.loc[n, 'family']} (of {size[t.loc[n, 'family']]}), rank "
                     f"{table.index[table['candidate'] == n][0] + 1}, dCor {t.loc[n, 'dcor']:.2f}, p_adj "
                     f"{t.loc[n, 'p_adjusted']:.3g}, push {t.loc[n, 'push']:+.2f} (p_adj {t.loc[n, 'p_push']:.3g})"
                     f"{' flagged' if t.loc[n, 'flagged'] else ''}" for n in names)


def experiment(name: str, seeds: int, permutations: int) -> None:
    from mimmx.evaluation.audit import audit_run
    from mimmx.runs.experiments import row_config, rows
    from mimmx.runs.store import ResultStore

    store = ResultStore()
    by_slug = {r.slug: r for r in rows(name)}
    for slug in ("baseline", "oracle"):
        for seed in range(seeds):
            cfg = row_config(name, by_slug[slug], seed=seed)
            if not store.checkpoint_path(cfg).exists():
                raise SystemExit(f"{name} {slug} seed {seed} is not in {store}; run `python -m mimmx "
                                 f"reproduce {name} --rows baseline oracle --seeds {seeds}` first")
            result = store.load_run(cfg)
            t = time.perf_counter()
            table = audit_run(result, "balanced", n_permutations=permutations, seed=seed).table
            wall = time.perf_counter() - t
            print(f"{name} {slug} seed {seed} ({len(table)} candidates, {wall:.0f} s): "
                  f"{factor_line(table, result.scenario.factor_names)}; flagged {int(table.flagged.sum())}")
            print(f"    {families(table)}")


def cohort(seeds: int, permutations: int, epochs: int, loop: bool) -> None:
    from mimmx.config import RunConfig
    from mimmx.evaluation.audit import add_factor, audit_run, cohort_metadata
    from mimmx.runs.experiments import row_config, rows
    from mimmx.scenarios.cohort import (
        CohortSpec,
        ColumnRule,
        cohort_scenario,
        load_cohort,
        write_example_cohort,
    )
    from mimmx.trainer import train

    with tempfile.TemporaryDirectory() as folder:
        csv = write_example_cohort(folder, n=5000, seed=0, r_site=0.9)
        spec = CohortSpec(manifest=str(csv), group_column="patient_id",
                          label=ColumnRule("effusion", values={"absent": 0, "present": 1}),
                          factors=(ColumnRule("sex", values={"Female": 0, "Male": 1}),))
        data = load_cohort(spec, cache=False)
        for seed in range(seeds):
            scenario = cohort_scenario(data, seed=seed)
            cfg = RunConfig().override(["method.name=baseline", f"train.epochs={epochs}", f"seed={seed}"])
            result = train(cfg, scenario)
            metadata = cohort_metadata(data, scenario.splits["balanced"])
            t = time.perf_counter()
            table = audit_run(result, "balanced", metadata=metadata, n_permutations=permutations, seed=seed).table
            wall = time.perf_counter() - t
            site = table[table["candidate"].str.startswith("site = ")].iloc[0]
            acc = result.best["acc"]["balanced"]["y"]
            print(f"cohort baseline seed {seed} (Balanced y {acc:.1f} %, {len(table)} candidates, {wall:.0f} s): "
                  f"{site.candidate}: family {site.family}, dCor {site.dcor:.2f}, p_adj {site.p_adjusted:.3g}, "
                  f"push {site.push:+.2f} (p_adj {site.p_push:.3g}), gap {site.gap:.1f}"
                  f"{' flagged' if site.flagged else ''}; {factor_line(table, ['sex'])}")
            print(f"    {families(table)}")
            if loop:
                metadata = {s: cohort_metadata(data, split) for s, split in scenario.splits.items()}
                method = row_config("exp2", {r.slug: r for r in rows("exp2")}["mimmx"]).method
                before, after, run = add_factor(result, site.candidate, method, "balanced", metadata=metadata,
                                                n_permutations=permutations, seed=seed)
                for label, report, r in (("before", before, result), ("after", after, run)):
                    t = report.table.set_index("candidate").loc[site.candidate]
                    print(f"    {label}: Balanced y {r.best['acc']['balanced']['y']:.1f} %, {site.candidate} "
                          f"dCor {t.dcor:.2f}, p_adj {t.p_adjusted:.3g}, push {t.push:+.2f} (p_adj {t.p_push:.3g}), "
                          f"gap {t.gap:.1f}, family {t.family}{' flagged' if t.flagged else ''}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", help="an experiment (exp1, exp2, ...) or 'cohort'")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--permutations", type=int, default=999)
    p.add_argument("--epochs", type=int, default=10, help="cohort: the Baseline's epochs")
    p.add_argument("--loop", action="store_true", help="cohort: then train MIMM-X with the site as a factor")
    a = p.parse_args()
    os.environ.setdefault("MIMMX_THREADS", "1")
    if a.what == "cohort":
        cohort(a.seeds, a.permutations, a.epochs, a.loop)
    else:
        experiment(a.what, a.seeds, a.permutations)


if __name__ == "__main__":
    main()
