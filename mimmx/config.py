"""One configuration object describes a run completely: ``RunConfig``.

Plain dataclasses, loaded from and saved to YAML. The CLI, the notebooks and the app all
build the same object; ``--set key=value`` overrides use the dotted field names
(``method.lam=0.5``). Unknown keys and wrongly typed values are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mimmx.errors import ConfigError


@dataclass
class ScenarioConfig:
    """Which confounded dataset to build (see ``mimmx.scenarios``)."""

    name: str = "exp1"
    r: float | None = field(default=None, metadata={"help": (
        "How strongly each spurious factor goes with y in training: r = P(z = y) (None: the "
        "scenario's own). 0.5 = no shortcut; 0.9 = nine in ten training images show the factor "
        "value that usually goes with their y; 1.0 = a perfect shortcut, with no image where "
        "they disagree.")})
    y_noise: float | None = None  # override P(recorded y ≠ the image's class group)
    n_train: int | None = None  # None: the scenario's default sizes
    n_selection: int | None = None
    n_test: int | None = None
    # False: train and select with every factor independent of y (the Oracle row); same test sets
    confounded: bool = True


@dataclass
class ModelConfig:
    """Feature encoder φ_FE and the split f = [f_y, f_z1, ..., f_zN] with one head per part."""

    encoder: str = "conv4"  # "mimm" | "conv4" | "densenet121"
    width: int = 8  # conv4: channels of the first block (w, 2w, 4w, 4w); 8 keeps CPU runs fast
    # f_y and each f_z are the heads' logits, as in the original MIMM: with 16-d linear-head
    # parts MINE saturates (docs/why-mimmx-works.md §2)
    f_y_dim: int = 2
    f_z_dim: int = 2  # per spurious factor
    head: str = "identity"  # "identity" (the part is the logits) | "linear"
    # one encoder for f_y and one for all f_z (no shared trunk): the z side is a z detector that
    # the penalty cannot damage (with a shared trunk the shortcut survived; the same §2)
    separate_encoders: bool = True
    # with separate encoders: "shared", one encoder for all f_z parts; "per_factor", one each,
    # so that no f_z part can carry another factor through a shared trunk
    z_encoders: str = "shared"


@dataclass
class EstimatorConfig:
    """The dependence estimator between f_y and f_z (used by methods that penalise it)."""

    name: str = "mine"  # "mine" | "dcor" | "mmd" | "adversarial"
    width: int = 128  # MINE statistics network / adversary hidden width (original MIMM: 400)
    # MINE marginals: "shuffle" (B pairs per step) | "all_pairs" (B² pairs, as the original MIMM;
    # at width 400 it trains at ~36 images/s on 2 CPU cores, see bench/bench_train.py)
    marginals: str = "shuffle"
    gradient: str = "ema"  # MINE: "ema" (Belghazi's bias-corrected) | "biased"
    n_shuffles: int = 1  # MINE "shuffle": marginal pairs per sample per step (more: less noise)
    ema_rate: float = 0.01
    lr: float = 1e-3  # estimator optimiser learning rate
    # one estimator per factor instead of one on the joint f_z (the shipped MIMM-X rows set it,
    # with reduce="mean": mimmx.runs.experiments.MIMMX_ESTIMATOR)
    per_factor: bool = False
    # per factor: the penalty is the "sum" of the factors' estimates or their "mean" (λ / N each)
    reduce: str = "sum"
    conditional: bool = False  # MINE: estimate I(f_y; f_z | y), marginal pairs within a class
    # estimate on cell-balanced batches (every (y, z_1..z_N) cell equally likely), where y and z are
    # independent, so that a causal f_y has zero MI and only the shortcut is penalised
    balanced: bool = True
    # MINE: standardise f_y and f_z over the batch before T, so that shrinking f_y cannot lower
    # the estimate (MI is scale-invariant; T's BatchNorm of W_y f_y + W_z f_z is not)
    standardize: bool = False
    # images per penalty and estimator batch (None: train.batch_size); the penalty's noise falls
    # as 1/√batch
    batch_size: int | None = None
    # per factor and balanced: factor i's estimator and penalty term take their own 1/N of the
    # batch, drawn balanced over (y, z_i) alone, instead of every term on one batch balanced over
    # all (y, z_1..z_N) cells (where the double-minority cells, ~1 % of the images at r = 0.9,
    # fill a quarter of every batch)
    per_factor_batches: bool = False


@dataclass
class MethodConfig:
    """The objective: L = γ_0 L_0 + Σ γ_i L_i + λ · penalty(f_y, f_z) (MIMM-X, poster eq. 1)."""

    name: str = "mimmx"
    lam: float = field(default=1.5, metadata={"help": (
        "λ, the weight of the dependence penalty between f_y and f_z (for MIMM and MIMM-X, the "
        "MINE estimate of their mutual information). 0 = the plain objective.")})
    dls: bool = True  # Dynamic Loss Scaling
    caw: bool = True  # Confounder Attention Weighter
    caw_temperature: float | None = field(default=None, metadata={"help": (
        "τ of the Confounder Attention Weighter's softmax over the factors, w = softmax(s / τ). "
        "With one estimator per factor the scores s are the factors' estimates (nats) and the "
        "penalty is Σ_i N·w_i·D_i: a small τ weighs the factor f_y leaks most almost alone (a "
        "soft maximum), a large τ weighs them alike. None: CAW's default (0.1 on per-factor "
        "estimates, 1.0 for the learned scorer of the joint estimator).")})
    alpha_y: float = field(default=0.3, metadata={"help": (
        "α_Y: the Dynamic Loss Scaling (DLS) exponent of the primary task's loss: its weight is "
        "γ_0 = (L_0 / L̄)^α_Y, L̄ the mean of all the heads' losses. A y loss above the mean gets "
        "a weight above 1, so a lagging y head is pushed; α_Y sets how hard (0: weight 1 "
        "always). Only methods with DLS use it.")})
    alpha_z: float = field(default=0.8, metadata={"help": (
        "α_Z: the DLS exponent of the spurious factors' losses: each factor head gets "
        "γ_i = (L_i / L̄)^α_Z, so a lagging f_z head is pushed to learn its factor, and f_z, not "
        "f_y, soaks the factors up. 0: weight 1 always. (It is not a parameter of the "
        "Confounder Attention Weighter, which has no setting here.)")})
    beta_y: float = field(default=0.01, metadata={"help": (
        "β_Y: how much α_Y grows over the whole training, α_Y(epoch) = α_Y + (epoch / epochs) · "
        "β_Y, so attention moves to the primary task as training goes on.")})
    n_b: int = field(default=6, metadata={"help": (
        "N_B: one encoder step, then N_B − 1 steps that train the dependence estimator (MINE).")})
    # "per_step": every training batch gives an encoder step, followed by N_B − 1 estimator steps
    # on batches of their own, so the encoder gets as many updates per epoch as the baseline;
    # "per_batch": the original code's loop, batch k trains the encoder when k mod N_B = 0
    alternation: str = "per_step"
    # "forward": each estimator step runs the encoder (no grad) on a batch of its own; "bank": the
    # N_B − 1 estimator steps of a cycle train on the features (detached) of the last N_B − 1
    # encoder steps' penalty batches, newest first, so a cycle costs no extra encoder pass
    # (per_step only; the features are up to N_B − 1 encoder steps old)
    estimator_batches: str = "forward"
    warmup_epochs: float = 0.0  # estimator-only steps before the penalty starts
    one_sided: bool = True  # the penalty's gradient reaches f_y only (f_z is held by its own heads)
    grad_scaling: bool = False  # scale λ·penalty so its gradient on f is at most the CE gradient's
    # the penalty is max(0, D) per estimate: a negative MI estimate (a critic lagging behind the
    # encoder) pays the encoder nothing instead of rewarding it
    nonnegative: bool = False
    debias: bool = field(default=False, metadata={"help": (
        "Pay for dependence, not for an informative f_y: the penalty is the estimate minus its "
        "value on the same batch with f_z permuted, D(f_y, f_z) − D(f_y, f_z∘π). Where f_y is "
        "independent of z the two are equal in distribution, so the penalty and its gradient are "
        "zero in expectation; a batch estimate alone sits above zero even there (dCor: 0.1–0.2 "
        "on 150 pairs), a floor that a strong λ makes nearly as costly as the shortcut.")})
    penalty_split: float = field(default=0.0, metadata={"help": (
        "The share of the training images set aside for the dependence penalty: the classification "
        "losses never see their labels, and the penalty and its estimator draw their batches from "
        "them only (stratified by cell). On the images a network fits, it can satisfy the penalty by "
        "memorising the few minority images instead of dropping the shortcut; on images it does not "
        "fit, it cannot. 0: the penalty uses the training images themselves.")})
    resample: bool = field(default=False, metadata={"help": (
        "Draw the classification losses' batches with every cell (y, z_1..z_N) equally likely, as "
        "Rebalance does, instead of as the training set comes. Methods with a dependence penalty "
        "only; the penalty's own batches are set by method.estimator.balanced.")})
    penalty_batch: str = field(default="drawn", metadata={"help": (
        "Where the encoder step computes the penalty: \"drawn\", on a batch of its own drawn as "
        "the estimator's are (cell-balanced with method.estimator.balanced), or \"task\", on the "
        "classification losses' batch, which saves one encoder pass per step; with "
        "method.resample the two are drawn alike.")})
    penalty_through: str = field(default="all", metadata={"help": (
        "The images through which the penalty's gradient reaches f_y: \"all\", or \"majority\", "
        "only those of a majority cell of each factor (y and z_i paired at least as often as "
        "uniform in training); on the others f_y enters the penalty detached. On a balanced batch "
        "the encoder can lower the estimate by moving the few minority training images, which it "
        "fits anyway; through the majority images it can only lower it by dropping what they share "
        "with f_z.")})
    dls_penalty: bool = field(default=False, metadata={"help": (
        "Dynamic Loss Scaling over the penalty too: the estimate D enters L̄ as one more loss, "
        "L̄ = (Σ_i L_i + max(0, D)) / (N + 2), and λ·D is weighted γ_D = (max(0, D) / L̄)^α_Z like "
        "a factor's loss, so a dependence that lags behind the losses is pushed harder and a met "
        "one (D ≤ 0) pays nothing. Needs method.dls; methods with a dependence penalty only.")})
    penalty_rotate: float = field(default=0.0, metadata={"help": (
        "The penalty's and the estimator's batches turned by up to this many degrees (each image "
        "by its own angle, before train.shift) in place of train.rotate, while the losses' batches "
        "keep train.rotate: the few minority images the balanced penalty batches repeat come back "
        "in new poses, so the penalty is harder to meet by fitting them one by one. Methods with a "
        "dependence penalty only. 0: the penalty's batches are augmented as the losses' are.")})
    penalised: str = field(default="all", metadata={"help": (
        "The factors whose f_z the penalty pairs with f_y: \"all\", or a comma-separated list of "
        "factor names or z-indices (\"marker\", \"z1,z3\"). The heads learn every factor either "
        "way. MIMM always penalises the first factor only.")})
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    # GroupDRO (Sagawa et al. 2020): step size η of the online group weights, and its L2 penalty
    group_eta: float = 0.01
    group_l2: float = 1e-3
    # JTT (Liu et al. 2021): epochs of the identification ERM, and the weight λ_up of its errors
    jtt_epochs: int = 2
    jtt_upweight: float = 10.0


@dataclass
class TrainConfig:
    epochs: int = field(default=20, metadata={"help": (
        "Passes over the training images; each epoch ends with an evaluation.")})
    batch_size: int = 150
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 1  # epochs between evaluations on the selection and test sets
    device: str | None = None  # None: mimmx.device.get_device()
    amp: bool = False  # mixed precision (CUDA only)
    # channels-last convolutions: faster training on CPU (bench/bench_train.py); max-pool's
    # gradient then breaks ties (equal activations) differently, so numbers differ from the
    # default layout's within seed noise. exp1-3 turn it on (mimmx.runs.experiments).
    channels_last: bool = False
    shift: int = field(default=0, metadata={"help": (
        "Random translation of every training image by up to this many pixels along each axis "
        "(edges replicated), drawn afresh on every training forward pass, for every method alike; "
        "evaluation sees the images as they are. 0: none.")})
    rotate: float = field(default=0.0, metadata={"help": (
        "Random rotation of every training image about its centre by up to this many degrees "
        "(bilinear, edges replicated), drawn afresh on every training forward pass before "
        "train.shift, for every method alike; evaluation sees the images as they are. 0: none.")})
    elastic: float = field(default=0.0, metadata={"help": (
        "Random elastic distortion of every training image: a smooth displacement field (white "
        "noise blurred by a Gaussian of 4 pixels) of this RMS length in pixels, drawn afresh on "
        "every training forward pass before train.rotate and train.shift, for every method "
        "alike; evaluation sees the images as they are. 0: none.")})
    # which evaluation's model is kept, judged on the confounded selection split only:
    # "y_cell_balanced" (its y accuracy with every cell (y, z_1..z_N) weighing the same, so that
    # a shortcut does not pay; docs/study/why-mimmx-works-history.md §12.3) | "y" (its plain y
    # accuracy)
    select: str = "y_cell_balanced"


# keys (nested paths) left out of the hash while they hold this value: adding a key with a
# default that keeps the old behaviour leaves every existing configuration's key unchanged
_HASH_NEUTRAL = {("train", "channels_last"): False, ("method", "estimator", "reduce"): "sum",
                 ("scenario", "y_noise"): None, ("train", "select"): "y",
                 ("scenario", "confounded"): True, ("method", "group_eta"): 0.01,
                 ("method", "group_l2"): 1e-3, ("method", "jtt_epochs"): 2,
                 ("method", "jtt_upweight"): 10.0, ("method", "nonnegative"): False,
                 ("method", "estimator", "standardize"): False,
                 ("method", "penalty_split"): 0.0, ("method", "debias"): False,
                 ("method", "estimator", "batch_size"): None, ("method", "penalised"): "all",
                 ("method", "resample"): False, ("method", "penalty_batch"): "drawn",
                 ("method", "penalty_through"): "all", ("method", "dls_penalty"): False,
                 ("method", "estimator", "per_factor_batches"): False,
                 ("model", "z_encoders"): "shared", ("train", "shift"): 0,
                 ("train", "rotate"): 0.0, ("train", "elastic"): 0.0,
                 ("method", "penalty_rotate"): 0.0, ("method", "caw_temperature"): None}


@dataclass
class RunConfig:
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    # --- YAML ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return _build(cls, d, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        return cls.from_dict(d)

    def replace(self, changes: typing.Mapping[str, Any]) -> RunConfig:
        """A copy with typed values at dotted keys, e.g. ``cfg.replace({"method.lam": 0.7})``,
        checked as a YAML file's are (types, ranges; floats kept to 12 significant digits, so
        that a slider's 0.7000000000000001 is 0.7 and hashes like it)."""
        d = self.to_dict()
        for key, value in changes.items():
            node, parts = d, key.split(".")
            for p in parts[:-1]:
                if not isinstance(node, dict) or p not in node:
                    raise ConfigError(f"unknown config key {key!r}")
                node = node[p]
            if not isinstance(node, dict) or parts[-1] not in node:
                raise ConfigError(f"unknown config key {key!r}")
            node[parts[-1]] = value
        return RunConfig.from_dict(d)

    def override(self, assignments: list[str]) -> RunConfig:
        """Apply ``key=value`` strings (dotted keys, YAML values), e.g. ``method.lam=0.5``."""
        changes = {}
        for a in assignments:
            key, sep, raw = a.partition("=")
            if not sep:
                raise ConfigError(f"override {a!r} is not of the form key=value")
            changes[key] = yaml.safe_load(raw)
        return self.replace(changes)

    def hash(self) -> str:
        """Stable short hash of the whole configuration (seed included): the results-cache key."""
        d = self.to_dict()
        for (*sections, key), neutral in _HASH_NEUTRAL.items():
            section = functools.reduce(dict.__getitem__, sections, d)
            if section[key] == neutral:
                del section[key]
        blob = json.dumps(d, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# a section's field types, resolved once per class (resolving them took most of a config's build)
_type_hints = functools.cache(typing.get_type_hints)


def field_help(key: str) -> str:
    """The help text of a config key (dotted, e.g. ``"method.lam"``), from its field's metadata."""
    cls, parts = RunConfig, key.split(".")
    for part in parts[:-1]:
        cls = _type_hints(cls)[part]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if parts[-1] not in fields or "help" not in fields[parts[-1]].metadata:
        raise KeyError(f"config key {key!r} has no help text")
    return fields[parts[-1]].metadata["help"]


def _at_least(low: float, open_: bool = False) -> tuple[str, typing.Callable[[float], bool]]:
    return (f"> {low:g}", lambda v: v > low) if open_ else (f"≥ {low:g}", lambda v: v >= low)


# the valid range of every bounded key (checked when a config is built; None always passes)
_RANGES: dict[str, tuple[str, typing.Callable[[float], bool]]] = {
    **{f"scenario.{k}": _at_least(1) for k in ("n_train", "n_selection", "n_test")},
    "scenario.r": ("in [0, 1] (P(z = y) in training)", lambda v: 0 <= v <= 1),
    **{f"model.{k}": _at_least(1) for k in ("width", "f_y_dim", "f_z_dim")},
    **{f"method.{k}": _at_least(0) for k in ("lam", "alpha_y", "alpha_z", "beta_y", "warmup_epochs",
                                              "group_eta", "group_l2")},
    "method.n_b": _at_least(1), "method.jtt_epochs": _at_least(1),
    "method.penalty_split": ("in [0, 1)", lambda v: 0 <= v < 1),
    "method.penalty_rotate": ("in [0, 180] (degrees)", lambda v: 0 <= v <= 180),
    "method.caw_temperature": _at_least(0, open_=True),
    "method.jtt_upweight": _at_least(0, open_=True),
    "method.estimator.width": _at_least(1), "method.estimator.n_shuffles": _at_least(1),
    "method.estimator.batch_size": _at_least(2),
    "method.estimator.ema_rate": ("in (0, 1]", lambda v: 0 < v <= 1),
    "method.estimator.lr": _at_least(0, open_=True),
    "train.epochs": _at_least(1), "train.batch_size": _at_least(2), "train.eval_every": _at_least(1),
    "train.lr": _at_least(0, open_=True), "train.weight_decay": _at_least(0),
}


# string keys with a fixed set of values
SELECT = ("y", "y_cell_balanced")  # train.select: the selection split's scores a model is kept by
_CHOICES: dict[str, tuple[str, ...]] = {
    "train.select": SELECT, "method.alternation": ("per_step", "per_batch"),
    "method.estimator_batches": ("forward", "bank"), "method.penalty_through": ("all", "majority"),
    "method.estimator.reduce": ("sum", "mean"),
    "method.estimator.marginals": ("shuffle", "all_pairs"), "method.estimator.gradient": ("ema", "biased"),
    "model.head": ("identity", "linear"), "model.z_encoders": ("shared", "per_factor"),
}


def _build(cls, d: Any, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<top>'} must be a mapping, got {d!r}")
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; "
                          f"valid keys here: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in d.items()}
    for k, v in kwargs.items():
        if v is not None and prefix + k in _RANGES:
            desc, ok = _RANGES[prefix + k]
            if not ok(v):
                raise ConfigError(f"config key {prefix + k!r} must be {desc}, got {v!r}")
        if prefix + k in _CHOICES and v not in _CHOICES[prefix + k]:
            raise ConfigError(f"config key {prefix + k!r} must be one of "
                              f"{', '.join(map(repr, _CHOICES[prefix + k]))}, got {v!r}")
    return cls(**kwargs)


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(tp, value, key: str):
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
        return float(f"{float(value):.12g}")  # 0.1 * 7 is 0.7
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return value
    return value
