"""Per-seed results → "mean ± std" tables in the poster's layout, and markdown for reports.

Input is always a tidy DataFrame: one row per (seed, …) measurement, e.g. the columns
``method, seed, head, test_set, accuracy`` for table (a) or ``method, seed, part, label,
accuracy`` for table (b). :func:`heads_to_tidy` and :func:`matrix_to_tidy` turn the outputs of
:mod:`mimmx.evaluation.probes` into such rows. Nothing here knows how results were produced.

Spread is the sample standard deviation over seeds (ddof = 1); a cell with a single seed
shows the mean alone, since its spread is unknown. Cells with fewer seeds than the table's
most are marked ``(n=k)``; the seed count is in ``table.attrs["caption"]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DASH = "–"  # an empty cell, as in the poster (a part predicting its own label, or no data)


def mean_std(values, decimals: int = 1) -> str:
    """``"84.2 ± 1.3"``: mean ± sample std (ddof=1) of ``values``, NaN ignored.

    One value gives ``"84.2"`` (no spread from one seed); none gives ``"–"``."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return DASH
    if v.size == 1:
        return f"{v[0]:.{decimals}f}"
    return f"{v.mean():.{decimals}f} ± {v.std(ddof=1):.{decimals}f}"


def _as_list(keys) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def _first_seen(df: pd.DataFrame, keys: list[str]) -> pd.Index:
    """The distinct values of ``df[keys]`` in order of first appearance, as an index."""
    if len(keys) == 1:
        return pd.Index(pd.unique(df[keys[0]]), name=keys[0])
    return pd.MultiIndex.from_frame(df[keys].drop_duplicates())


def summarise(df: pd.DataFrame, rows, columns, value: str = "accuracy",
              decimals: int = 1, what: str | None = None) -> pd.DataFrame:
    """Pivot a tidy frame into "mean ± std" strings: one row per distinct ``rows`` value(s),
    one column per distinct ``columns`` value(s), both in order of first appearance; the
    statistics run over all other columns (the seeds). Missing cells are ``"–"``.
    ``attrs["caption"]`` reads "<what> (mean ± std over N seeds)"."""
    rows, columns = _as_list(rows), _as_list(columns)
    missing = [c for c in [*rows, *columns, value] if c not in df.columns]
    if missing:
        raise ValueError(f"tidy frame lacks column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise ValueError("no results to summarise")
    if "seed" in df.columns and df.duplicated([*rows, *columns, "seed"]).any():
        others = [c for c in df.columns if c not in {*rows, *columns, "seed", value}]
        raise ValueError(f"several rows per seed in a cell of {rows} × {columns}: filter the "
                         f"frame on the other column(s) {others} first")
    groups = df.groupby(rows + columns, sort=False)[value]
    counts = groups.count()  # seeds per cell, NaN not counted
    n_max = int(counts.max())
    cells = pd.Series(  # one string per cell; there are few cells, so a plain loop
        [mean_std(v, decimals) + (f" (n={c})" if 0 < c < n_max else "")
         for v, c in zip(groups.agg(list), counts, strict=True)],
        index=counts.index, dtype=object)
    table = cells.unstack(columns)
    table = table.reindex(index=_first_seen(df, rows), columns=_first_seen(df, columns))
    table = table.fillna(DASH)
    seeds = f"{n_max} seed{'s' if n_max != 1 else ''}"
    spread = f"mean ± std over {seeds}" if n_max > 1 else seeds
    table.attrs["caption"] = f"{what or value} ({spread})"
    return table


def accuracy_table(df: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Poster table (a): rows = methods, columns = (head, test_set), cells "mean ± std".

    ``df`` has columns ``method, seed, head, test_set, accuracy`` (accuracy in %)."""
    return summarise(df, "method", ["head", "test_set"], "accuracy", decimals,
                     what="Accuracy [%]")


def probe_table(df: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Poster table (b): rows = feature parts, columns = (method, label), cells "mean ± std".

    ``df`` has columns ``method, seed, part, label, accuracy``. A part's own label
    (``f_y``→``y``, ``f_z1``→``z1``) shows "–", as in the poster."""
    table = summarise(df, "part", ["method", "label"], "accuracy", decimals,
                      what="Disentanglement: probe accuracy [%], ideally chance")
    for part in table.index:
        for col in table.columns:
            if part == f"f_{col[1]}":
                table.loc[part, col] = DASH
    return table


def heads_to_tidy(table: pd.DataFrame, **ids) -> pd.DataFrame:
    """A :func:`~mimmx.evaluation.probes.head_accuracy_table` (heads × test sets) as tidy rows
    ``*ids, head, test_set, accuracy``; ``ids`` (e.g. ``method="MIMM-X", seed=0``) become
    constant columns. NaN cells are dropped."""
    long = table.rename_axis(index="head", columns="test_set").stack().dropna().rename("accuracy")
    return _with_ids(long.reset_index(), ids)


def matrix_to_tidy(matrix: pd.DataFrame, **ids) -> pd.DataFrame:
    """A :func:`~mimmx.evaluation.probes.probe_matrix` (parts × labels) as tidy rows
    ``*ids, part, label, accuracy``; ``ids`` become constant columns."""
    long = matrix.rename_axis(index="part", columns="label").stack().dropna().rename("accuracy")
    return _with_ids(long.reset_index(), ids)


def _with_ids(frame: pd.DataFrame, ids: dict) -> pd.DataFrame:
    for i, (key, value) in enumerate(ids.items()):
        frame.insert(i, key, value)
    return frame


def to_markdown(table: pd.DataFrame, caption: str | None = None) -> str:
    """A GitHub-flavoured markdown table; multi-level column labels are joined with spaces
    (``f_y→y Val``). ``caption`` (default ``table.attrs["caption"]``) is written above it."""
    def cell(x) -> str:
        parts = x if isinstance(x, tuple) else (x,)
        return " ".join(str(p) for p in parts).replace("|", "\\|")

    names = [n for n in table.index.names if n is not None]
    header = [" / ".join(names)] + [cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for key, row in table.iterrows():
        lines.append("| " + " | ".join([cell(key)] + [cell(v) for v in row]) + " |")
    caption = caption if caption is not None else table.attrs.get("caption")
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"
