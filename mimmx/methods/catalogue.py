"""Every comparison method of the poster (and the peer benchmark), one small class each.

| name               | objective                                             | DLS   | CAW   |
|--------------------|-------------------------------------------------------|-------|-------|
| baseline           | Σ L_i                                                 | off   | off   |
| baseline_dls_caw   | Σ γ_i L_i                                             | on    | on    |
| rebalance          | Σ γ_i L_i on a training set resampled to equal cells  | cfg   | cfg   |
| dcor               | Σ L_i + λ dCor(f_y, f_z)            (Székely 2007)    | off   | off   |
| mmd                | Σ L_i + λ HSIC(f_y, f_z), RBF kernels                 | off   | off   |
| adversarial        | Σ L_i + λ CE(adversary(GRL(f_y)), z)  (Ganin 2015)    | off   | off   |
| mimm               | Σ L_i + λ MINE(f_y, f_z1): one factor (Fay 2023)      | off   | off   |
| mimmx              | Σ γ_i L_i + λ MINE(f_y, CAW(f_z1..f_zN)) (Fay 2025)   | cfg   | cfg   |
| groupdro           | Σ_g q_g L_0,g + Σ_i≥1 L_i, q ← q·e^{η L_0,g}  (Sagawa 2020) | off | off |
| jtt                | Σ L_i on a set with an ERM's errors ×λ_up (Liu 2021)  | off   | off   |
| dfr                | Σ L_i, then the y readout refit on held-out balanced data (Kirichenko 2023) | off | off |

"cfg": taken from ``method.dls`` / ``method.caw`` (the poster's ablation rows). CAW acts only
through the dependence term, so for ``baseline_dls_caw`` it has nothing to weight and the row
equals baseline + DLS; the name follows the poster's row.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimmx.config import EstimatorConfig
from mimmx.errors import ConfigError
from mimmx.methods.base import Dims, Method, batches_of, cell_balancing_weights, register
from mimmx.models.caw import CAW, CAWEstimator
from mimmx.models.estimators import DependenceEstimator, build_estimator


@register("baseline")
class Baseline(Method):
    dls, caw = False, False


@register("baseline_dls_caw")
class BaselineDLSCAW(Method):
    dls, caw = True, True


@register("rebalance")
class Rebalance(Method):
    """Resample the training set so that every cell (y, z_1..z_N) is equally likely:
    w(x) ∝ 1 / count(y(x), z(x))."""

    def sample_weights(self, y: Tensor, z: Tensor) -> Tensor:
        return cell_balancing_weights(y, z)


class DependencePenalty(Method):
    """Σ γ_i L_i + λ · D(f_y, f_z) with a dependence estimator D from ``method.estimator``.

    Joint (default): D(f_y, [f_z1, ..., f_zN]) with one estimator; with CAW on, the estimator
    sees the CAW-weighted f̃_z and the CAW scorer trains with the critic (``CAWEstimator``).
    ``method.debias``: each D becomes D(f_y, f_z) − D(f_y, f_z∘π), zero in expectation (value
    and gradient) wherever f_y is independent of z.
    Per factor (``estimator.per_factor``): D = Σ_i D_i(f_y, f_zi), one estimator each; with CAW
    on, D = Σ_i N·w_i·D_i with w = softmax(D / τ), a soft maximum over the factors' leakage
    (``CAW.combine``). ``estimator.reduce = "mean"`` divides either by N (λ / N per factor).
    See ``mimmx.models.caw`` for the reconstruction and its rationale. ``method.nonnegative``:
    each estimate D enters as max(0, D), so a negative estimate never pays the encoder.
    ``method.penalised``: the factors i whose f_zi enter D (all by default). ``method.resample``:
    the losses' batches drawn with every cell (y, z_1..z_N) equally likely, as Rebalance's.
    ``method.penalty_through = "majority"``: D(f̂_y, f_z) with f̂_y = f_y on images of a majority
    (y, z_i) cell of every factor i the estimate pairs and sg(f_y) (detached) elsewhere.
    ``method.dls_penalty``: DLS over the penalty too, γ_D·λ·D with γ_D = (max(0, D) / L̄)^α_Z and
    max(0, D) one more loss in L̄.
    """

    estimator_name: str | None = None  # None: method.estimator.name
    only_first_factor = False
    reads = ("lam", "warmup_epochs", "one_sided", "grad_scaling", "nonnegative", "penalty_split", "debias",
             "penalised", "resample", "penalty_batch", "penalty_through", "dls_penalty",
             "estimator.per_factor", "estimator.balanced", "estimator.batch_size",
             "estimator.per_factor_batches", "penalty_rotate", "caw_temperature")
    # the estimator's own knobs, for those with networks that train between encoder steps
    TRAINED = {"mine": ("width", "marginals", "gradient", "ema_rate", "conditional", "n_shuffles",
                        "standardize"),
               "adversarial": ("width",)}

    @classmethod
    def live_keys(cls, cfg):
        keys = super().live_keys(cfg)
        name = cls.estimator_name or cfg.estimator.name
        if cls.estimator_name is None:
            keys.add("estimator.name")
        if cfg.estimator.per_factor:
            keys.add("estimator.reduce")
        if name in cls.TRAINED:
            keys |= {"n_b", "alternation", "estimator_batches", "estimator.lr",
                     *(f"estimator.{k}" for k in cls.TRAINED[name])}
        return keys

    def __init__(self, cfg, dims: Dims, n_epochs: int):
        super().__init__(cfg, dims, n_epochs)
        if cfg.dls_penalty and not self.use_dls:
            raise ConfigError("method.dls_penalty=true weights the penalty by Dynamic Loss Scaling; "
                              "turn DLS on (method.dls=true) or leave dls_penalty at false")
        e = cfg.estimator
        name = self.estimator_name or e.name
        if self.estimator_name and e.name not in (self.estimator_name, EstimatorConfig.name):
            raise ConfigError(f"method {cfg.name!r} always uses the {self.estimator_name!r} "
                              f"estimator; method.estimator.name={e.name!r} would be ignored. "
                              f"Leave it at {EstimatorConfig.name!r}, or choose the method that "
                              f"uses {e.name!r} (method.name={'mimmx' if e.name == 'mine' else e.name})")
        self.factors = penalised_factors("z1" if self.only_first_factor else cfg.penalised, dims)
        z_dims = [dims.f_z[i] for i in self.factors]
        options = {"mine": dict(width=e.width, marginals=e.marginals, gradient=e.gradient,
                                ema_rate=e.ema_rate, conditional=e.conditional,
                                n_shuffles=e.n_shuffles, standardize=e.standardize),
                   "adversarial": dict(hidden=e.width)}.get(name, {})

        def make(d_z: int, factors: list[int]) -> DependenceEstimator:
            extra = {"z_classes": [dims.n_z[i] for i in factors]} if name == "adversarial" else {}
            return build_estimator(name, dims.f_y, d_z, **options, **extra)

        self.generator = None  # the debiasing permutations' (seeded by Method.seed)
        caw = self.use_caw and len(self.factors) > 1
        self.per_factor = e.per_factor and len(self.factors) > 1
        if e.reduce not in ("sum", "mean"):
            raise ConfigError(f"method.estimator.reduce must be 'sum' or 'mean', got {e.reduce!r}")
        self.scale = 1.0 / len(self.factors) if self.per_factor and e.reduce == "mean" else 1.0
        self.own_batches = e.per_factor_batches and self.per_factor
        if e.per_factor_batches and not (self.per_factor and e.balanced):
            raise ConfigError("method.estimator.per_factor_batches needs method.estimator.per_factor=true, "
                              "method.estimator.balanced=true and more than one penalised factor")
        self.attention = None
        if self.per_factor:
            self.estimators = nn.ModuleList([make(d, [i]) for i, d in zip(self.factors, z_dims)])
            self.attention = CAW(z_dims, mode="dependence", temperature=cfg.caw_temperature) if caw else None
        else:
            est = make(sum(z_dims), self.factors)
            self.estimators = nn.ModuleList([CAWEstimator(est, CAW(z_dims, temperature=cfg.caw_temperature))
                                             if caw else est])

    def settings(self) -> dict:
        e = self.cfg.estimator
        return {**super().settings(), "estimator": type(self.estimators[0]).__name__,
                "factors": self.factors, "per_factor": self.per_factor, "scale": self.scale,
                "lam": self.cfg.lam, "penalty_split": self.cfg.penalty_split,
                "estimator_options": {"width": e.width, "marginals": e.marginals, "gradient": e.gradient}}

    def reserve(self, y: Tensor, z: Tensor, generator: torch.Generator) -> Tensor | None:
        """``method.penalty_split`` = ρ: round(ρ · n_c) random images of every cell c
        (y, z_1..z_N), kept for the penalty and its estimator."""
        rho = self.cfg.penalty_split
        if rho <= 0:
            return None
        cells = torch.cat([y[:, None], z], 1).cpu()
        _, inverse = torch.unique(cells, dim=0, return_inverse=True)
        mask = torch.zeros(len(y), dtype=torch.bool)
        for c in range(int(inverse.max()) + 1):
            members = (inverse == c).nonzero().flatten()
            k = round(rho * len(members))
            mask[members[torch.randperm(len(members), generator=generator)[:k]]] = True
        if mask.all() or not mask.any():
            raise ConfigError(f"method.penalty_split = {rho} leaves no images for "
                              f"{'the losses' if mask.all() else 'the penalty'}; choose a share in (0, 1)")
        return mask.to(y.device)

    def sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        return cell_balancing_weights(y, z) if self.cfg.resample else None

    def setup(self, model, data, cfg, generator) -> None:
        super().setup(model, data, cfg, generator)
        # majority[i][y, z_i]: (y, z_i) at least as frequent in training as if independent-uniform
        self.majority = {}
        for i in self.factors:
            counts = torch.zeros(self.dims.n_y, self.dims.n_z[i], device=data.y.device)
            counts.index_put_((data.y, data.z[:, i]), torch.ones_like(data.y, dtype=counts.dtype),
                              accumulate=True)
            self.majority[i] = counts >= counts.sum() / counts.numel()

    def _through(self, f_y: Tensor, y: Tensor, z: Tensor, factors: list[int]) -> Tensor:
        """f_y as the penalty sees it (``method.penalty_through``); z: (B, len(factors))."""
        if self.cfg.penalty_through == "all":
            return f_y
        keep = torch.ones_like(y, dtype=torch.bool)
        for col, i in enumerate(factors):
            keep &= self.majority[i][y, z[:, col]]
        return torch.where(keep[:, None], f_y, f_y.detach())

    def penalty_sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        """``estimator.balanced``: the penalty's batches are drawn with every cell
        (y, z_i of the penalised factors) equally likely; with ``per_factor_batches``, factor
        i's share of the batch with every (y, z_i) cell equally likely."""
        if self.own_batches:
            self.factor_weights = [cell_balancing_weights(y, z[:, [i]]).cpu() for i in self.factors]
        return cell_balancing_weights(y, z[:, self.factors]) if self.cfg.estimator.balanced else None

    def _draw(self) -> Tensor:
        if not self.own_batches:
            return super()._draw()
        t = self.t
        size = max((self.cfg.estimator.batch_size or t.cfg.batch_size) // len(self.factors), 2)
        allowed = (self.draw_weights > 0).float()  # the penalty split's images, when reserved
        return torch.cat([torch.multinomial(w * allowed, size, replacement=True, generator=t.generator)
                          for w in self.factor_weights]).to(t.device)

    def _share(self, k: int, *tensors: Tensor) -> list[Tensor]:
        """Factor k's rows of a penalty or estimator batch (all rows unless ``per_factor_batches``)."""
        if not self.own_batches:
            return list(tensors)
        n = len(tensors[0]) // len(self.factors)
        return [t[k * n:(k + 1) * n] for t in tensors]

    def _inputs(self, parts: list[Tensor], z: Tensor):
        return parts[0], [parts[1 + i] for i in self.factors], z[:, self.factors]

    def _penalty(self, est, f_y: Tensor, f_z: Tensor, z: Tensor, y: Tensor) -> Tensor:
        """D(f_y, f_z), or with ``method.debias`` D(f_y, f_z) − D(f_y, f_z∘π) for a random
        permutation π of the batch (f_z and z permuted together, f_y and y kept)."""
        d = est.penalty(f_y, f_z, z, y)
        if not self.cfg.debias:
            return d
        perm = torch.randperm(len(f_y), generator=self.generator).to(f_y.device)
        return d - est.penalty(f_y, f_z[perm], z[perm], y)

    def penalty(self, parts, y, z):
        f_y, f_zs, zs = self._inputs(parts, z)
        if self.cfg.one_sided:  # f_z is anchored by its own heads; only f_y is pushed away
            f_zs = [f.detach() for f in f_zs]
        if self.per_factor:
            terms = []
            for k, (i, est, f_z) in enumerate(zip(self.factors, self.estimators, f_zs)):
                fy, fz, zk, yk = self._share(k, f_y, f_z, zs[:, [k]], y)
                terms.append(self._penalty(est, self._through(fy, yk, zk, [i]), fz, zk, yk))
            terms = torch.stack(terms)
            logs = {f"mi_z{i + 1}": float(t) for i, t in zip(self.factors, terms.detach())}
            if self.cfg.nonnegative:
                terms = terms.clamp(min=0)
            if self.attention is None:
                return self.scale * terms.sum(), logs
            w = self.attention.weights(f_zs, scores=terms.detach())
            logs.update({f"caw_z{i + 1}": float(v) for i, v in zip(self.factors, w)})
            return self.scale * self.attention.combine(terms), logs
        est = self.estimators[0]
        pen = self._penalty(est, self._through(f_y, y, zs, self.factors), torch.cat(f_zs, 1), zs, y)
        w = getattr(est, "last_weights", None)
        logs = {} if w is None else {f"caw_z{i + 1}": float(v) for i, v in zip(self.factors, w.mean(0))}
        return (pen.clamp(min=0) if self.cfg.nonnegative else pen), logs

    def estimator_loss(self, parts, y, z):
        f_y, f_zs, zs = self._inputs([p.detach() for p in parts], z)
        if self.per_factor:
            return sum(est.estimator_loss(*self._share(k, f_y, f_z, zs[:, [k]], y))
                       for k, (est, f_z) in enumerate(zip(self.estimators, f_zs)))
        return self.estimators[0].estimator_loss(f_y, torch.cat(f_zs, 1), zs, y)

    @torch.no_grad()
    def estimate(self, parts: list[Tensor], z: Tensor, y: Tensor | None = None) -> float:
        """The estimator's current dependence value (e.g. MI in nats) on these features."""
        f_y, f_zs, zs = self._inputs(parts, z)
        if self.per_factor:
            return sum(est.estimate(f_y, f_z, zs[:, [k]], y)
                       for k, (est, f_z) in enumerate(zip(self.estimators, f_zs)))
        return self.estimators[0].estimate(f_y, torch.cat(f_zs, 1), zs, y)


@register("dcor")
class DCor(DependencePenalty):
    estimator_name, dls, caw = "dcor", False, False


@register("mmd")
class MMDPenalty(DependencePenalty):
    estimator_name, dls, caw = "mmd", False, False


@register("adversarial")
class Adversarial(DependencePenalty):
    estimator_name, dls, caw = "adversarial", False, False


@register("mimm")
class MIMM(DependencePenalty):
    """The original single-factor MIMM: MINE between f_y and the first factor's f_z1 only."""

    estimator_name, dls, caw, only_first_factor = "mine", False, False, True
    reads = tuple(k for k in DependencePenalty.reads if k != "penalised")

    def __init__(self, cfg, dims: Dims, n_epochs: int):
        if cfg.penalised != "all":
            raise ConfigError(f"method 'mimm' always penalises the first factor only; "
                              f"method.penalised={cfg.penalised!r} would be ignored. To choose "
                              f"the penalised factors, use method.name=mimmx (with method.dls=false "
                              f"method.caw=false for MIMM's objective)")
        super().__init__(cfg, dims, n_epochs)


@register("mimmx")
class MIMMX(DependencePenalty):
    estimator_name = "mine"


def penalised_factors(spec: str, dims: Dims) -> list[int]:
    """The 0-based factor indices named by ``method.penalised``: "all", or comma-separated
    factor names or z-indices ("marker", "z1,z3")."""
    n = len(dims.f_z)
    if spec.strip() == "all":
        return list(range(n))
    known = {f"z{i + 1}": i for i in range(n)} | {name: i for i, name in enumerate(dims.names)}
    chosen = set()
    for token in (t.strip() for t in spec.split(",")):
        if token not in known:
            raise ConfigError(f"method.penalised={spec!r}: {token!r} is not a factor of this scenario; "
                              f"use \"all\" or a comma-separated list of {', '.join(known)}")
        chosen.add(known[token])
    return sorted(chosen)


def cell_index(y: Tensor, z: Tensor, n_y: int, n_z: tuple[int, ...]) -> Tensor:
    """The cell (group) g = (y, z_1..z_N) of each example as one integer, mixed radix:
    g = ((y · K_1 + z_1) · K_2 + z_2) …, in [0, n_y Π K_i)."""
    g = y.clone()
    for i, k in enumerate(n_z):
        g = g * k + z[:, i]
    return g


@register("groupdro")
class GroupDRO(Method):
    """Group DRO (Sagawa et al., ICLR 2020, Algorithm 1) over the cells g = (y, z_1..z_N):

        q_g ← q_g · exp(η · L_0,g) for the cells in the batch, q ← q / Σ q
        L = Σ_g q_g L_0,g + Σ_{i≥1} L_i

    L_0,g is the y cross-entropy averaged over the batch's examples of cell g; the z heads keep
    their plain losses. As the paper advises, a strong L2 penalty (``method.group_l2``, Adam's
    weight decay) keeps the network from fitting the small cells exactly, where their loss, and
    with it their weight, would vanish. Uses the factor labels in training."""

    dls, caw = False, False
    reads = ("group_eta", "group_l2")

    def __init__(self, cfg, dims: Dims, n_epochs: int):
        super().__init__(cfg, dims, n_epochs)
        if not cfg.group_eta > 0:
            raise ConfigError(f"method.group_eta must be > 0, got {cfg.group_eta}")
        n_groups = dims.n_y * int(np.prod(dims.n_z))
        self.register_buffer("q", torch.full((n_groups,), 1.0 / n_groups))

    def make_optimiser(self, model, cfg):
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=self.cfg.group_l2)

    def task_losses(self, logits, y, z):
        losses = super().task_losses(logits, y, z)
        g = cell_index(y, z, self.dims.n_y, self.dims.n_z)
        per_example = F.cross_entropy(logits[0], y, reduction="none")
        n = torch.zeros_like(self.q).index_add_(0, g, torch.ones_like(per_example))
        group_loss = torch.zeros_like(self.q).index_add_(0, g, per_example) / n.clamp(min=1)
        present = n > 0
        with torch.no_grad():
            self.q[present] *= torch.exp(self.cfg.group_eta * group_loss[present].detach())
            self.q /= self.q.sum()
        return torch.cat([(self.q * group_loss).sum()[None], losses[1:]])

    def settings(self) -> dict:
        return {**super().settings(), "eta": self.cfg.group_eta, "l2": self.cfg.group_l2}


@register("jtt")
class JTT(Method):
    """Just Train Twice (Liu et al., ICML 2021). Stage 1: an identification model of the same
    architecture and initial weights trains by ERM (Σ L_i) for ``method.jtt_epochs`` epochs; its
    error set E is the training images whose y it gets wrong. Stage 2: the network trains by
    ERM on the training set with E upsampled λ_up times (``method.jtt_upweight``):
    sampling weights w(x) = λ_up if x ∈ E else 1. No factor labels are used in training."""

    dls, caw = False, False
    reads = ("jtt_epochs", "jtt_upweight")

    def setup(self, model, data, cfg, generator):
        if self.cfg.jtt_epochs < 1 or not self.cfg.jtt_upweight >= 1:
            raise ConfigError(f"method.jtt_epochs must be ≥ 1 and method.jtt_upweight ≥ 1, got "
                              f"{self.cfg.jtt_epochs} and {self.cfg.jtt_upweight}")
        self.error_set = self.identify(copy.deepcopy(model), data, cfg, generator)
        super().setup(model, data, cfg, generator)

    def identify(self, model: nn.Module, data, cfg, generator: torch.Generator) -> Tensor:
        """Stage 1: train ``model`` by ERM for ``jtt_epochs`` epochs; the mask of the training
        images whose y it then predicts wrongly (eval mode)."""
        erm = Method(self.cfg, self.dims, self.n_epochs)
        erm.use_dls = False
        erm.setup(model, data, cfg, generator)
        steps = len(data) // cfg.batch_size
        for epoch in range(self.cfg.jtt_epochs):
            order = erm.epoch_order()
            for b in range(steps):
                for _ in erm.update(order[b * cfg.batch_size:(b + 1) * cfg.batch_size], epoch + b / steps):
                    pass
        model.eval()
        wrong = []
        with torch.no_grad():
            for start in range(0, len(data), 256):
                idx = torch.arange(start, min(start + 256, len(data)), device=data.x.device)
                _, logits = erm.t.forward(idx)
                wrong.append(logits[0].argmax(1) != data.y[idx])
        return torch.cat(wrong)

    def sample_weights(self, y, z):
        return 1.0 + (self.cfg.jtt_upweight - 1.0) * self.error_set.float()

    def settings(self) -> dict:
        return {**super().settings(), "jtt_epochs": self.cfg.jtt_epochs,
                "jtt_upweight": self.cfg.jtt_upweight, "error_set": int(self.error_set.sum())}


DFR_C = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)  # inverse L1 strengths tried (Kirichenko et al.)


@register("dfr")
class DFR(Method):
    """Deep Feature Reweighting (Kirichenko et al., ICLR 2023): train by ERM (Σ L_i), keep the
    model by the selection rule, then refit its last layer to y (:meth:`MIMMNet.y_readout`) by
    L1-regularised logistic regression on the scenario's ``holdout`` split: images of the
    official train split outside training, every cell (y, z_1..z_N) equally frequent. The
    penultimate features are standardised; C is chosen from :data:`DFR_C` by worst-cell
    accuracy on one half of the holdout after fitting on the other, then the fit is redone on
    all of it. Uses factor labels only in the holdout."""

    dls, caw = False, False
    holdout = True

    def finish(self, model, scenario) -> bool:
        if "holdout" not in scenario.splits:
            raise ConfigError("dfr needs the scenario's holdout split (ScenarioSpec.n_holdout > 0); "
                              "build the scenario with mimmx.trainer.build_scenario")
        from sklearn.linear_model import LogisticRegression

        hold = scenario.splits["holdout"]
        linear, rows = model.y_readout()
        x = self._penultimate(model, linear, hold).numpy().astype(np.float64)
        y = hold.y.numpy()
        g = cell_index(hold.y, hold.z, self.dims.n_y, self.dims.n_z).numpy()
        mean, std = x.mean(0), x.std(0) + 1e-6
        x = (x - mean) / std
        rng = np.random.default_rng(self._seed)
        half = np.zeros(len(y), bool)
        for cell in np.unique(g):  # a stratified half of every cell (the larger half fits)
            members = rng.permutation(np.flatnonzero(g == cell))
            half[members[: (len(members) + 1) // 2]] = True

        def fit(c: float, rows_: np.ndarray) -> LogisticRegression:
            return LogisticRegression(C=c, l1_ratio=1.0, solver="saga", max_iter=2000).fit(
                x[rows_], y[rows_])

        def worst(clf: LogisticRegression) -> float:
            right = clf.predict(x[~half]) == y[~half]
            return min(right[g[~half] == cell].mean() for cell in np.unique(g[~half]))

        if (~half).any() and len(np.unique(y[half])) == len(np.unique(y)):
            self.chosen_c = max(DFR_C, key=lambda c: worst(fit(c, half)))  # ties: the weakest L1
        else:  # too few held-out images per cell to choose: the weakest L1
            self.chosen_c = DFR_C[0]
        clf = fit(self.chosen_c, np.ones(len(y), bool))
        w, b = clf.coef_ / std, clf.intercept_ - (clf.coef_ / std) @ mean  # on raw features
        if w.shape[0] == 1:  # binary: logits (−s/2, s/2) give the same softmax as s = w·x + b
            w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
        if w.shape[0] != rows:
            raise ConfigError(f"dfr: the y readout has {rows} outputs but y has {w.shape[0]} classes")
        with torch.no_grad():
            linear.weight[:rows] = torch.as_tensor(w, dtype=linear.weight.dtype)
            linear.bias[:rows] = torch.as_tensor(b, dtype=linear.bias.dtype)
        return True

    def seed(self, seed: int) -> None:
        super().seed(seed)
        self._seed = seed

    @staticmethod
    @torch.no_grad()
    def _penultimate(model, linear: nn.Linear, split, batch_size: int = 256) -> Tensor:
        """The inputs of ``linear`` for every image of ``split`` (eval mode), on the CPU."""
        seen = []
        handle = linear.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().float().cpu()))
        device, was_training = next(model.parameters()).device, model.training
        model.eval()
        try:
            for start in range(0, len(split), batch_size):
                model(batches_of(split.x[start:start + batch_size].to(device)))
        finally:
            handle.remove()
            model.train(was_training)
        return torch.cat(seen)

    def settings(self) -> dict:
        return {**super().settings(), "C": getattr(self, "chosen_c", None)}
