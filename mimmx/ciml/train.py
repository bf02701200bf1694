"""Training and evaluation of the CIML experiment: one config, seeded runs, Dice/HD95, run folders.

A run (:func:`run`) generates a training phantom set from each seed and one held-out test set
from ``test_seed`` (shared by all seeds and methods), trains every method in ``methods`` with
Adam and a cosine learning-rate schedule, and evaluates on the test set:

- Dice per image and region, 2|P∩G| / (|P| + |G|) (1 when both are empty), averaged over images;
- HD95 per image and region: the larger of the two directed 95th-percentile surface distances
  (pixels; the MONAI convention), the image diagonal when exactly one mask is empty.

The ``ensemble`` method's members are also reported as the single-modality rows.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from mimmx.ciml.models import CIML, METHODS, Ensemble
from mimmx.ciml.phantom import MODALITIES, REGIONS, PhantomConfig, Phantoms, make_phantoms
from mimmx.device import describe_device, get_device
from mimmx.errors import ConfigError

LABELS = {"ensemble": "ensemble", "early_fusion": "early fusion", "ciml": "CIML"}
SINGLE_LABELS = {m: f"single ({n})" for m, n in zip(MODALITIES, ("FLAIR", "T1", "T1ce", "T2"), strict=True)}


@dataclass
class CIMLConfig:
    """Everything a CIML run depends on (YAML via :meth:`to_dict` / :meth:`from_dict`)."""

    methods: tuple[str, ...] = ("ensemble", "early_fusion", "ciml")
    seeds: tuple[int, ...] = (0,)
    n_train: int = 800
    n_test: int = 200
    test_seed: int = 10_000          # the held-out test set, the same for every seed
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-2
    width: int = 8                   # U-Net widths (w, 2w, 4w); early fusion uses 2w
    message_channels: int = 8        # CIML: channels of each VIB message z
    beta: float = 1e-3               # CIML: weight of the KL term
    hd95: bool = True
    device: str | None = None        # None: mimmx.device.get_device()
    threads: int | None = None       # torch CPU threads for the run (None: torch's default)
    phantom: PhantomConfig = field(default_factory=PhantomConfig)

    def __post_init__(self):
        if isinstance(self.phantom, dict):
            self.phantom = _from_dict(PhantomConfig, self.phantom, "phantom")
        self.methods, self.seeds = tuple(self.methods), tuple(int(s) for s in self.seeds)
        self.validate()

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"methods must be a non-empty subset of {sorted(METHODS)}, got {list(self.methods)}")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed")
        for name in ("n_train", "n_test", "epochs", "batch_size", "width", "message_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.lr <= 0 or self.beta < 0:
            raise ConfigError(f"lr must be > 0 and beta >= 0, got lr={self.lr!r}, beta={self.beta!r}")
        if self.phantom.size % 4:
            raise ConfigError(f"phantom.size must be divisible by 4 (two U-Net poolings), got {self.phantom.size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"], d["seeds"] = list(self.methods), list(self.seeds)
        d["phantom"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["phantom"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CIMLConfig:
        return _from_dict(cls, d, "config")

    @classmethod
    def fast(cls, **overrides) -> CIMLConfig:
        """A small configuration for tests, notebooks' FAST mode and demos (well under a minute):
        32 × 32 phantoms, one CPU thread (tiny networks gain nothing from more, and on a shared
        CPU two threads contending with other processes ran 25× slower here)."""
        small = PhantomConfig(size=32, wt_radius=(0.32, 0.48), tc_scale=(0.5, 0.7),
                              et_width=(0.35, 0.55))
        base = dict(n_train=256, n_test=64, epochs=4, batch_size=16, hd95=False, phantom=small,
                    threads=1)
        return cls(**{**base, **overrides})


def _from_dict(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"bad {where}: {err}") from err


# ---------------------------------------------------------------- metrics

def dice_scores(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice per image and region, 2|P∩G| / (|P| + |G|), 1 where both are empty. (N, R, H, W) -> (N, R)."""
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).sum((2, 3)).float()
    total = (pred.sum((2, 3)) + target.sum((2, 3))).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def hd95_scores(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """HD95 per image and region in pixels: max of the two directed 95th-percentile distances
    between the mask surfaces; 0 if both are empty, the image diagonal if one is. (N, R) array."""
    pred, target = pred.bool().cpu().numpy(), target.bool().cpu().numpy()
    n, r, h, w = pred.shape
    out = np.zeros((n, r))
    for i in range(n):  # scipy's distance transform works one image at a time
        for j in range(r):
            p, g = pred[i, j], target[i, j]
            if not p.any() and not g.any():
                continue
            if not p.any() or not g.any():
                out[i, j] = math.hypot(h, w)
                continue
            sp, sg = p & ~ndimage.binary_erosion(p), g & ~ndimage.binary_erosion(g)
            to_g, to_p = ndimage.distance_transform_edt(~sg), ndimage.distance_transform_edt(~sp)
            out[i, j] = max(np.percentile(to_g[sp], 95), np.percentile(to_p[sg], 95))
    return out


@torch.no_grad()
def predict_logits(predict: Callable, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Apply ``predict`` to ``images`` in batches (on their device); logits (N, 3, H, W)."""
    return torch.cat([predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def evaluate(predict: Callable, test: Phantoms, hd95: bool = True) -> dict[str, float]:
    """Dice (and HD95) per region on ``test``, averaged over images, plus their means over regions."""
    pred = predict_logits(predict, test.images) > 0
    dice = dice_scores(pred, test.masks).mean(0).tolist()
    out = {f"dice_{r}": d for r, d in zip(REGIONS, dice, strict=True)}
    out["dice_mean"] = float(np.mean(dice))
    if hd95:
        hd = hd95_scores(pred, test.masks).mean(0).tolist()
        out.update({f"hd95_{r}": d for r, d in zip(REGIONS, hd, strict=True)})
        out["hd95_mean"] = float(np.mean(hd))
    return out


# ---------------------------------------------------------------- training

def build_model(method: str, config: CIMLConfig) -> torch.nn.Module:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    return METHODS[method](config)


def train_model(model: torch.nn.Module, train: Phantoms, config: CIMLConfig, seed: int = 0,
                callback: Callable[[dict], None] | None = None, label: str = "") -> list[dict]:
    """Train ``model`` on ``train`` (already on the model's device) with Adam and a cosine
    schedule; returns one dict of mean losses per epoch, also passed to ``callback``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    history = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train), generator=g).to(train.images.device)
        sums: dict[str, float] = {}
        start = time.perf_counter()
        for i in range(0, len(train), config.batch_size):
            idx = order[i:i + config.batch_size]
            loss, stats = model.loss(train.images[idx], train.masks[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in {"loss": loss.item(), **stats}.items():
                sums[k] = sums.get(k, 0.0) + v / steps_per_epoch
        record = {"method": label, "seed": seed, "epoch": epoch + 1, "epochs": config.epochs,
                  "seconds": time.perf_counter() - start, **sums}
        history.append(record)
        if callback:
            callback(record)
    model.eval()
    return history


@dataclass
class Results:
    """A finished run: ``metrics`` (one row per method label and seed), the trained ``models``
    {(method, seed): model}, the ``test`` phantoms, ``history`` and the ``config``."""

    config: CIMLConfig
    metrics: pd.DataFrame
    models: dict
    test: Phantoms
    history: list[dict]
    environment: dict


def environment() -> dict:
    """Versions and hardware, recorded next to every result."""
    import mimmx

    return {"mimmx": mimmx.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "hardware": describe_device(),
            "platform": platform.platform()}


def run(config: CIMLConfig | None = None, callback: Callable[[dict], None] | None = None) -> Results:
    """Train and evaluate every method of ``config`` for every seed (see the module docstring)."""
    config = config or CIMLConfig()
    config.validate()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, callback)
    finally:
        torch.set_num_threads(threads)


def _run(config: CIMLConfig, callback) -> Results:
    device = get_device(config.device)
    test = make_phantoms(config.n_test, config.test_seed, config.phantom).to(device)
    rows, models, history = [], {}, []
    for seed in config.seeds:
        train = make_phantoms(config.n_train, seed, config.phantom).to(device)
        for method in config.methods:
            torch.manual_seed(seed)
            model = build_model(method, config).to(device)
            start = time.perf_counter()
            history += train_model(model, train, config, seed, callback, LABELS[method])
            seconds = time.perf_counter() - start
            models[(method, seed)] = model
            params = sum(p.numel() for p in model.parameters())
            if isinstance(model, Ensemble):
                for m, net in model.members.items():
                    rows.append({"method": SINGLE_LABELS[m], "seed": seed, "params": params // 4,
                                 "train_s": seconds / 4, **evaluate(net.predict, test, config.hd95)})
            rows.append({"method": LABELS[method], "seed": seed, "params": params,
                         "train_s": seconds, **evaluate(model.predict, test, config.hd95)})
    return Results(config, pd.DataFrame(rows), models, test, history, environment())


# ---------------------------------------------------------------- reporting

def summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per method (columns ``<metric>`` and ``<metric>_std``)."""
    cols = [c for c in metrics.columns if c.startswith(("dice_", "hd95_"))] + ["params", "train_s"]
    grouped = metrics.groupby("method", sort=False)[cols]
    out = grouped.mean()
    std = grouped.std(ddof=1).fillna(0.0).add_suffix("_std")
    out = out.join(std)
    out["seeds"] = grouped.size()
    return out


def markdown_table(metrics: pd.DataFrame) -> str:
    """Dice (%) per region and method, mean ± std over seeds when there are several; HD95 if measured."""
    s = summary(metrics)
    multi = int(s["seeds"].max()) > 1
    keys = [f"dice_{r}" for r in REGIONS] + ["dice_mean"]
    heads = ["Dice WT", "Dice TC", "Dice ET", "mean Dice"]
    if "hd95_mean" in s:
        keys += ["hd95_mean"]
        heads += ["mean HD95 (px)"]

    def cell(row, k):
        scale = 100 if k.startswith("dice") else 1
        v = f"{scale * row[k]:.1f}"
        return v + (f" ± {scale * row[k + '_std']:.1f}" if multi else "")

    lines = ["| method | " + " | ".join(heads) + " | params | train (s) |",
             "| --- |" + " ---: |" * (len(heads) + 2)]
    for name, row in s.iterrows():
        lines.append(f"| {name} | " + " | ".join(cell(row, k) for k in keys)
                     + f" | {int(row['params']):,} | {row['train_s']:.0f} |")
    seeds = int(s["seeds"].max())
    lines.append("")
    lines.append(f"Seeds: {seeds}" + (" (mean ± std)" if multi else "") + ". Dice in %"
                 + (", HD95 in pixels" if "hd95_mean" in s else "")
                 + ". Single-modality rows are the ensemble's members.")
    return "\n".join(lines)


def write_run(results: Results, out_dir: str | Path) -> Path:
    """Write ``config.yaml``, ``metrics.json`` (rows, summary, history, environment) and
    ``results.md`` into ``out_dir``; return the folder."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(results.config.to_dict(), sort_keys=False))
    payload = {"config": results.config.to_dict(), "environment": results.environment,
               "metrics": results.metrics.to_dict(orient="records"),
               "summary": summary(results.metrics).reset_index().to_dict(orient="records"),
               "history": results.history}
    (out / "metrics.json").write_text(json.dumps(payload, indent=1))
    env = results.environment
    (out / "results.md").write_text(
        markdown_table(results.metrics)
        + f"\n\nHardware: {env['hardware']}; torch {env['torch']}, mimmx {env['mimmx']}.\n")
    return out


def load_config(path: str | Path) -> CIMLConfig:
    """Read a CIMLConfig from a YAML file (the ``config.yaml`` of a run works too)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    return CIMLConfig.from_dict(yaml.safe_load(path.read_text()) or {})


def ciml_model(results: Results, seed: int | None = None) -> CIML:
    """The trained CIML model of ``results`` (first seed unless given)."""
    seed = results.config.seeds[0] if seed is None else seed
    if ("ciml", seed) not in results.models:
        raise ConfigError(f"this run has no CIML model for seed {seed}; include 'ciml' in methods")
    return results.models[("ciml", seed)]
