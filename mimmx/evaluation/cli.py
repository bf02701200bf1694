"""``python -m mimmx evaluate RUN_DIR``: tables (a) and (b), post-hoc MI and embeddings of a
trained run folder; writes ``evaluation.md``, ``evaluation.json`` and ``embeddings.html`` into
it and prints the tables."""

from __future__ import annotations

import argparse


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


def evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mimmx.evaluation.report import evaluate_result, figures_html
    from mimmx.runs import load_run

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
