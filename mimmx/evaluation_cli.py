"""``python -m mimmx evaluate RUN_DIR``, ``python -m mimmx reproduce EXP``, ``python -m mimmx sweep``.

- ``evaluate``: tables (a) and (b), post-hoc MI and embeddings of a trained run folder; writes
  ``evaluation.md``, ``evaluation.json`` and ``embeddings.html`` into it and prints the tables.
- ``reproduce``: every poster row of an experiment × ``--seeds``; writes ``results/<exp>.md``
  and ``.json``. Finished (config, seed) pairs come from the results store.
- ``sweep``: inverted-set accuracy against the correlation strength r, per method.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run folder (tables (a), (b), MI, embeddings)")
    p.add_argument("run_dir", help="a run folder written by `mimmx train` (or a checkpoint .pt)")
    p.add_argument("--embedding", default="umap", choices=["umap", "tsne", "pca", "none"],
                   help="feature embedding (default umap; pca is instant; none skips it)")
    p.add_argument("--probes", nargs="+", default=["logreg", "knn"], choices=["logreg", "knn"])
    p.add_argument("--no-mi", action="store_true", help="skip the post-hoc MINE estimate")
    p.add_argument("--seed", type=int, default=None, help="seed of the probes, MINE and embedding "
                   "(default: the run's)")
    p.set_defaults(func=evaluate)

    for name, helptext in (("reproduce", "train every poster row of an experiment over seeds and "
                                         "write results/<exp>.md and .json"),
                           ("sweep", "inverted-set accuracy against correlation strength r")):
        p = sub.add_parser(name, help=helptext)
        if name == "reproduce":
            from mimmx.experiments import EXPERIMENTS

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


def evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mimmx.evaluation.report import evaluate_result, figures_html, load_run

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
    from mimmx.results import ResultStore

    return ResultStore(args.store)


def reproduce(args: argparse.Namespace) -> int:
    from mimmx import reproduce as rp

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
    from mimmx import reproduce as rp

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
