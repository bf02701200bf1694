"""The commands that make runs:

- ``train CONFIG.yaml [--set key=value ...] [--out DIR]``: one run, written as a run folder;
- ``configs``: (re)write configs/, one YAML per poster row and experiment;
- ``evaluate RUN_DIR``: tables (a) and (b), post-hoc MI and embeddings of a run folder; writes
  ``evaluation.md``, ``evaluation.json`` and ``embeddings.html`` into it;
- ``audit RUN_DIR``: candidate shortcut attributes ranked by how much the run's f_y and its
  errors depend on them beyond y; writes ``audit.md`` and ``audit.json`` beside the run;
- ``reproduce EXP``: every poster row of an experiment × ``--seeds``; writes
  ``results/<exp>.md`` and ``.json``. Finished (config, seed) pairs come from the results store;
- ``sweep``: inverted-set accuracy against the correlation strength r, per method.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mimmx.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run from a YAML config")
    p.add_argument("config", help="YAML file (see configs/); missing keys take their defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set method.lam=0.5 (repeatable)")
    p.add_argument("--out", default="runs", help="parent folder of the run folder (default: runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    p = sub.add_parser("configs", help="(re)write configs/: one YAML per poster row and experiment")
    p.add_argument("--out", default="configs")
    p.set_defaults(func=write_configs)

    p = sub.add_parser("evaluate", help="evaluate a trained run folder (tables (a), (b), MI, embeddings)")
    p.add_argument("run_dir", help="a run folder written by `mimmx train` (or a checkpoint .pt)")
    p.add_argument("--embedding", default="umap", choices=["umap", "tsne", "pca", "none"],
                   help="feature embedding (default umap; pca is instant; none skips it)")
    p.add_argument("--probes", nargs="+", default=["logreg", "knn"], choices=["logreg", "knn"])
    p.add_argument("--no-mi", action="store_true", help="skip the post-hoc MINE estimate")
    p.add_argument("--seed", type=int, default=None, help="seed of the probes, MINE and embedding "
                   "(default: the run's)")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("audit", help="rank candidate shortcut attributes of a trained run "
                                     "(what its f_y and its errors depend on beyond y)")
    p.add_argument("run_dir", help="a run folder written by `mimmx train` (or a checkpoint .pt)")
    p.add_argument("--split", default="balanced", choices=["validation", "inverted", "balanced"],
                   help="the held-out set to audit on (default balanced)")
    p.add_argument("--permutations", type=int, default=999, help="permutations per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--add-factor", metavar="NAME", help="close the loop: train MIMM-X (the "
                   "experiment's own MIMM-X settings) with the audited candidate NAME as one more "
                   "factor and write audit-add-NAME.md with the audit before and after")
    p.set_defaults(func=audit)

    for name, helptext in (("reproduce", "train every poster row of an experiment over seeds and "
                                         "write results/<exp>.md and .json"),
                           ("sweep", "inverted-set accuracy against correlation strength r")):
        p = sub.add_parser(name, help=helptext)
        if name == "reproduce":
            from mimmx.runs.experiments import EXPERIMENTS

            p.add_argument("experiment", choices=sorted(EXPERIMENTS))
            p.add_argument("--rows", nargs="+", metavar="ROW",
                           help="only these rows (slugs as in configs/<exp>/, e.g. baseline mimmx)")
        else:
            p.add_argument("--scenario", default="exp1", help="scenario or experiment (default exp1)")
            p.add_argument("--methods", nargs="+", default=["baseline", "mimmx"], metavar="METHOD",
                           help="poster-row slugs (default: baseline mimmx)")
            p.add_argument("--r", nargs="+", type=float, default=[0.5, 0.7, 0.9, 0.99],
                           help="correlation strengths P(z = y) (default 0.5 0.7 0.9 0.99)")
        p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (default 3)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of every config, e.g. --set train.epochs=5 (repeatable)")
        p.add_argument("--out", default="results", help="folder of the tables (default results/)")
        p.add_argument("--store", default=None, help="results store folder "
                       "(default: $MIMMX_CACHE/results, else data/cache/results)")
        p.add_argument("--backend", default="local", choices=["local", "pool", "ray"],
                       help="where jobs run: here one by one, a process pool, or a Ray cluster")
        p.add_argument("--workers", type=int, default=None, help="pool processes (default: cores)")
        p.add_argument("--address", default=None,
                       help="Ray cluster address (default: start a local Ray instance)")
        p.add_argument("--threads", type=int, default=None, help="torch threads per job")
        p.set_defaults(func=reproduce if name == "reproduce" else sweep)


def write_configs(args: argparse.Namespace) -> int:
    from mimmx.runs.experiments import write_configs

    paths = write_configs(args.out)
    print(f"wrote {len(paths)} configs under {args.out}/")
    return 0


class ProgressBar:
    """Callback: a tqdm bar over steps, with the latest losses and evaluation."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)

    def __call__(self, ev: dict) -> None:
        if ev["type"] == "step":
            self.bar.update(1)
            if ev["kind"] == "encoder" and ev["step"] % 20 == 1:
                self.bar.set_postfix(loss=f"{ev['loss']:.3f}", penalty=f"{ev.get('penalty', 0):.3f}")
        elif ev["type"] == "eval":
            acc = ev["acc"]
            self.bar.write(f"epoch {ev['epoch']:3d}  y acc  sel {acc['selection']['y']:5.1f}  "
                           f"val {acc['validation']['y']:5.1f}  inv {acc['inverted']['y']:5.1f}  "
                           f"bal {acc['balanced']['y']:5.1f}  ({ev['images_per_second']:.0f} img/s)")
        elif ev["type"] == "end":
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from mimmx.config import RunConfig
    from mimmx.runs.folder import write_run
    from mimmx.trainer import build_scenario, train

    cfg = RunConfig.from_yaml(args.config).override(args.overrides)
    run_dir = Path(args.out) / f"{cfg.scenario.name}-{cfg.method.name}-{cfg.hash()}"
    if run_dir.parent.exists() and not run_dir.parent.is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder; give a folder for the run folders")
    scenario = build_scenario(cfg)
    steps = cfg.train.epochs * (len(scenario.splits["train"]) // cfg.train.batch_size)
    callbacks = [] if args.quiet else [ProgressBar(steps)]
    result = train(cfg, scenario, callbacks)
    write_run(result, run_dir)
    best = result.best
    print(f"\nbest epoch {best['epoch']} (chosen on the selection split by {cfg.train.select}); accuracy %:")
    heads = list(best["acc"]["validation"])
    print(f"{'head':6s} " + " ".join(f"{s:>10s}" for s in best["acc"]))
    for h in heads:
        print(f"{h:6s} " + " ".join(f"{best['acc'][s][h]:10.1f}" for s in best["acc"]))
    print(f"wall time {result.wall_time:.1f} s, {result.images_per_second:.0f} training images/s; "
          f"run folder {run_dir}")
    return 0


def _progress(total: int):
    state = {"done": 0}

    def cb(record: dict, reused: bool) -> None:
        state["done"] += 1
        from mimmx.evaluation.report import method_name

        c, acc = record["config"], record["best"]["acc"]
        name = record.get("row") or method_name(record["method"])  # reproduce: the row's label
        r = f" r={c['scenario']['r']}" if c["scenario"].get("r") is not None else ""
        took = "stored" if reused else f"{record['wall_time']['total']:.0f} s"
        print(f"[{state['done']}/{total}] {c['scenario']['name']}{r} {name} seed {c['seed']}"
              f" ({took}): y acc "
              f"val {acc['validation']['y']:.1f} inv {acc['inverted']['y']:.1f} "
              f"bal {acc['balanced']['y']:.1f}", flush=True)
    return cb


def _store(args):
    from mimmx.runs import ResultStore

    return ResultStore(args.store)


def reproduce(args: argparse.Namespace) -> int:
    from mimmx.runs import reproduce as rp

    n_rows = len(rp.select_rows(args.experiment, args.rows))
    result = rp.reproduce(
        args.experiment, args.seeds, overrides=args.overrides, rows_wanted=args.rows,
        out=args.out, store=_store(args), backend=args.backend, workers=args.workers,
        address=args.address, threads=args.threads, command=_argv(args),
        progress=_progress(n_rows * args.seeds))
    print()
    print(result.markdown)
    print(f"wrote {result.paths['markdown']} and {result.paths['json']}")
    return 0


def sweep(args: argparse.Namespace) -> int:
    from mimmx.runs import reproduce as rp

    result = rp.sweep(
        args.scenario, args.methods, args.r, args.seeds, overrides=args.overrides, out=args.out,
        store=_store(args), backend=args.backend, workers=args.workers, address=args.address,
        threads=args.threads, command=_argv(args),
        progress=_progress(len(args.methods) * len(args.r) * args.seeds))
    print()
    print(result.markdown)
    print(f"wrote {', '.join(str(p) for p in result.paths.values())}")
    return 0


def _argv(args: argparse.Namespace) -> str | None:
    """The command as typed (``python -m mimmx …``) for the report; None when called from
    Python (``cli.main([...])``), where the library writes the equivalent command itself."""
    if len(sys.argv) > 1 and sys.argv[1] == args.command:
        return "python -m mimmx " + shlex.join(sys.argv[1:])
    return None


def evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mimmx.evaluation.report import evaluate_result, figures_html
    from mimmx.runs.folder import load_run

    result = load_run(args.run_dir)
    embedding = None if args.embedding == "none" else args.embedding
    report = evaluate_result(result, probes=args.probes, mi=not args.no_mi, embedding=embedding,
                             seed=args.seed)
    path = Path(args.run_dir)
    # a run folder gets evaluation.*; a checkpoint file (e.g. in the results store) <key>.*
    folder, prefix = (path, "") if path.is_dir() else (path.parent, path.stem + ".")
    md = report.to_markdown()
    written = [f"{prefix}evaluation.md", f"{prefix}evaluation.json"]
    (folder / written[0]).write_text(md)
    report.to_json(folder / written[1], embeddings=embedding is not None)
    print(md)
    if report.figures:
        written.append(f"{prefix}embeddings.html")
        figures_html(report.figures, folder / written[-1])
    print(f"wrote {', '.join(written)} in {folder}")
    return 0


def audit(args: argparse.Namespace) -> int:
    from mimmx.evaluation.audit import audit_run
    from mimmx.evaluation.report import figures_html
    from mimmx.runs.folder import atomic_write, load_run

    if args.permutations < 19:
        raise UserError(f"--permutations must be ≥ 19 for a test at 5 %, got {args.permutations}")
    result = load_run(args.run_dir)
    report = audit_run(result, args.split, n_permutations=args.permutations, seed=args.seed)
    path = Path(args.run_dir)
    folder, prefix = (path, "") if path.is_dir() else (path.parent, path.stem + ".")
    md = report.markdown(f"Shortcut audit of {path.name} on the {args.split} set")
    atomic_write(folder / f"{prefix}audit.md", md)
    atomic_write(folder / f"{prefix}audit.json", report.table.to_json(orient="records", indent=1))
    figures_html(report.figures(), folder / f"{prefix}audit.html")
    print(md)
    print(f"wrote {prefix}audit.md, {prefix}audit.json and {prefix}audit.html in {folder}")
    if args.add_factor:
        add_factor_loop(result, args, folder, prefix)
    return 0


def add_factor_loop(result, args: argparse.Namespace, folder: Path, prefix: str) -> None:
    """``audit --add-factor NAME``: MIMM-X with NAME as one more factor, audited before and after."""
    from mimmx.config import MethodConfig
    from mimmx.evaluation.audit import add_factor, before_after_markdown
    from mimmx.evaluation.report import figures_html
    from mimmx.runs.experiments import EXPERIMENTS, row_config, rows
    from mimmx.runs.folder import atomic_write

    name, exp = args.add_factor, result.config.scenario.name
    mimmx_rows = [r for r in rows(exp) if r.slug == "mimmx"] if exp in EXPERIMENTS else []
    method = row_config(exp, mimmx_rows[0]).method if mimmx_rows else MethodConfig()
    print(f"training {method.name} with {name!r} as one more factor ...")
    before, after, run = add_factor(result, name, method, args.split, n_permutations=args.permutations,
                                    seed=args.seed)
    slug = "".join(c if c.isalnum() else "-" for c in name)
    md = before_after_markdown(name, before, after, (result, run)) + "\n" + after.markdown(
        f"Shortcut audit after, on the {args.split} set")
    atomic_write(folder / f"{prefix}audit-add-{slug}.md", md)
    figures_html(after.figures(), folder / f"{prefix}audit-add-{slug}.html")
    print(md)
    print(f"wrote {prefix}audit-add-{slug}.md and .html in {folder}")


