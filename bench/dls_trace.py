"""What DLS and CAW do inside one run: the encoder steps' losses L_i, DLS's γ_i, the penalty D,
gradient scaling's factor (λ·D enters as λ·s·D, s = min(1, ‖∂task/∂f‖ / ‖∂(λ·D)/∂f‖)) and CAW's
weights, averaged per epoch; "capped": the share of encoder steps on which gradient scaling binds
(s < 1; a step whose penalty weighs 0 is not capped); "caw max": the larger CAW weight of each
step, averaged, and the share of steps where it exceeds 0.8.

    python bench/dls_trace.py [--experiment exp1] [--row "MIMM-X + DLS + CAW"] [--epochs 6] [--seed 0]
        [--set KEY=VALUE ...]

2 CPU cores: about 15 s an exp1 epoch.
"""

from __future__ import annotations

import argparse
import statistics as st

PREFIXES = ("loss_", "gamma_", "penalty", "caw_")


def main() -> None:
    import torch

    from mimmx.runs.experiments import row_config, rows
    from mimmx.trainer import train

    p = argparse.ArgumentParser()
    p.add_argument("--experiment", default="exp1")
    p.add_argument("--row", default="MIMM-X + DLS + CAW")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the row's config, e.g. --set method.dls_penalty=true")
    a = p.parse_args()
    torch.set_num_threads(1)
    row = {r.label: r for r in rows(a.experiment)}[a.row]
    cfg = row_config(a.experiment, row, seed=a.seed).override([f"train.epochs={a.epochs}", *a.set])
    steps: list[dict] = []
    train(cfg, callbacks=[lambda e: steps.append(e) if e["type"] == "step" and e["kind"] == "encoder" else None])
    keys = list(dict.fromkeys(k for prefix in PREFIXES for s in steps for k in s if k.startswith(prefix)))
    capped = "penalty_scale" in keys
    caw = [k for k in keys if k.startswith("caw_")]
    extra = (["capped"] if capped else []) + (["caw max", "caw max > 0.8"] if caw else [])
    print("| epoch | " + " | ".join(keys + extra) + " |\n|" + " --- |" * (len(keys) + 1 + len(extra)))
    for ep in range(a.epochs):
        sel = [s for s in steps if ep <= s["epoch"] < ep + 1]
        cells = [f"{st.mean(s[k] for s in sel if k in s):.3f}" for k in keys]
        if capped:
            cells.append(f"{st.mean(s.get('penalty_scale', 1.0) < 1 for s in sel):.2f}")
        if caw:  # how uneven each step's weights are (the epoch's mean weights hide it)
            w_max = [max(s[k] for k in caw) for s in sel if caw[0] in s]
            cells += [f"{st.mean(w_max):.3f}", f"{st.mean(w > 0.8 for w in w_max):.2f}"]
        print(f"| {ep + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
