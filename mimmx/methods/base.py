"""The method interface and its registry.

A method is what a run optimises beyond the network itself: the encoder's loss, the extra
networks it trains (an estimator, an adversary, attention), its optimisers and how it
alternates their steps. It owns its step, as DomainBed's algorithms do:

    method.setup(model, train_split, train_cfg, generator)   # once: optimisers, weights, stages
    for each epoch:  order = method.epoch_order()             # the epoch's training indices
        for each batch:  for logs in method.update(batch, progress): ...   # one dict per step
    method.finish(model, scenario)                            # after the kept model is restored

The trainer is the loop (epochs, evaluation, keeping the model, callbacks) and calls only this
interface; it knows no method by name.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from mimmx.config import MethodConfig, TrainConfig
from mimmx.errors import ConfigError
from mimmx.models.dls import alpha_y_schedule, dls_gammas

METHODS: dict[str, type[Method]] = {}


def cell_balancing_weights(y: Tensor, z: Tensor) -> Tensor:
    """Sampling weights w(x) ∝ 1 / count(y(x), z_1(x), ..., z_N(x)): every cell equally likely."""
    cells = torch.cat([y[:, None], z], 1)
    _, inverse, counts = torch.unique(cells, dim=0, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].float()


def batches_of(x: Tensor) -> Tensor:
    """uint8 (B, H, W) -> float (B, 1, H, W) in [0, 1]."""
    return x.unsqueeze(1).float().div_(255.0)


def random_shift(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Each image of ``x`` (B, C, H, W) translated by its own (dy, dx) ~ U{−k..k}², edges
    replicated: x'[b, :, i, j] = x[b, :, clamp(i − dy_b), clamp(j − dx_b)]."""
    b, _, h, w = x.shape
    d = torch.randint(-k, k + 1, (2, b), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device) - d[0, :, None]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=x.device) - d[1, :, None]).clamp_(0, w - 1)  # (B, W)
    return x[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
             ].permute(0, 3, 1, 2)


def random_rotation(x: Tensor, degrees: float, generator: torch.Generator) -> Tensor:
    """Each image of ``x`` (B, C, H, W) turned counter-clockwise (as displayed) about its centre
    by its own θ_b ~ U(−degrees, degrees), bilinear, edges replicated: x'(p) = x(R(θ_b)ᵀ p) with
    p the pixel's centred coordinates, y pointing up."""
    theta = torch.empty(len(x)).uniform_(-degrees, degrees, generator=generator).deg2rad_()
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
    affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(affine.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_elastic(x: Tensor, rms: float, generator: torch.Generator, sigma: float = 4.0) -> Tensor:
    """Each image of ``x`` (B, C, H, W) warped by its own smooth displacement field (Simard et
    al., 2003): u = white noise blurred by a Gaussian of ``sigma`` pixels, scaled to an RMS
    length of ``rms`` pixels per image; x'(p) = x(p + u_b(p)), bilinear, edges replicated."""
    b, _, h, w = x.shape
    noise = torch.empty(b, 2, h, w).uniform_(-1.0, 1.0, generator=generator).to(x.device, x.dtype)
    radius = min(int(3 * sigma), (min(h, w) - 1) // 2)
    u = TF.gaussian_blur(noise, [2 * radius + 1] * 2, [sigma, sigma])
    u = u * (rms / u.square().sum(1).mean((1, 2)).sqrt().clamp_min(1e-12))[:, None, None, None]
    scale = torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=x.dtype)  # pixels -> [-1, 1]
    identity = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(b, 2, 3)
    grid = F.affine_grid(identity, list(x.shape), align_corners=False)
    grid = grid + u.permute(0, 2, 3, 1) * scale  # (B, H, W, 2): (x, y) = (column, row)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class Trainee:
    """What a method trains on, handed over by :meth:`Method.setup`: the network, the training
    split (on the device), the training settings and the run's seeded generator (the only
    source of batch randomness). A plain object, so the network is not a submodule of the
    method (their state dicts stay apart)."""

    model: nn.Module
    data: object  # mimmx.scenarios.SplitData
    cfg: TrainConfig
    generator: torch.Generator

    @property
    def device(self) -> torch.device:
        return self.data.x.device

    @property
    def amp(self) -> bool:
        return self.cfg.amp and self.device.type == "cuda"

    def forward(self, idx: Tensor, rotate: float | None = None):
        """(parts, logits) of training images ``idx`` (warped by ``train.elastic``, rotated by up
        to ``rotate`` degrees, by default ``train.rotate``, then shifted by up to ``train.shift``
        pixels), under autocast when ``amp``."""
        x = batches_of(self.data.x[idx])
        rotate = self.cfg.rotate if rotate is None else rotate
        if self.cfg.elastic:
            x = random_elastic(x, self.cfg.elastic, self.generator)
        if rotate:
            x = random_rotation(x, rotate, self.generator)
        if self.cfg.shift:
            x = random_shift(x, self.cfg.shift, self.generator)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.model(x)


def register(name: str):
    """Class decorator: ``@register("mimmx")`` adds the method to :data:`METHODS`."""

    def wrap(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


@dataclass(frozen=True)
class Dims:
    """Sizes the method needs: feature parts and label cardinalities."""

    f_y: int
    f_z: tuple[int, ...]  # one sub-vector per factor
    n_y: int
    n_z: tuple[int, ...]
    names: tuple[str, ...] = ()  # the factors' names (scenario.factor_names), for method.penalised


class Method(nn.Module):
    """The plain objective (the baseline): L = Σ_i γ_i L_i over the y head (i = 0) and the z_i
    heads, γ_i = 1, or Dynamic Loss Scaling when ``dls`` is on (poster eq. 2-3).

    Steps alternate as in MIMM, one encoder step then N_B − 1 estimator steps
    (``method.alternation``): ``per_batch``, the original loop, shares the epoch's batches
    (batch k trains the encoder when k mod N_B = 0); ``per_step`` gives every batch an encoder
    step and draws the estimator's batches separately, so the encoder is updated as often as
    the baseline's (``method.estimator_batches=bank``: the estimator steps reuse the features of
    the last N_B − 1 encoder steps' penalty batches, no extra encoder pass). A method without
    networks of its own trains the encoder on every batch.

    Subclasses override :meth:`penalty` (a dependence term added with weight λ),
    :meth:`estimator_loss` (trained on detached features in the N_B − 1 steps between encoder
    steps), :meth:`task_losses`, :meth:`sample_weights`, and for stages of their own
    :meth:`setup` and :meth:`finish`. Class attributes ``dls``/``caw`` fix a switch for the
    method (None: taken from the config); ``holdout`` asks the scenario for its cell-balanced
    ``holdout`` split.
    """

    name = "base"
    dls: bool | None = None
    caw: bool | None = None
    holdout = False
    reads: tuple[str, ...] = ()  # the method.* keys (dotted below method) it reads beyond DLS's

    @classmethod
    def live_keys(cls, cfg: MethodConfig) -> set[str]:
        """The ``method.*`` keys (dotted below ``method``) that change what this method does
        under ``cfg``: its name, the DLS/CAW switches, DLS's α_Y, α_Z, β_Y when DLS is on, and
        :attr:`reads`. A shipped YAML holds only these; the others keep their
        defaults (so its hash is the full config's)."""
        keys = {"name", "dls", "caw", *cls.reads}  # dls, caw: the row's columns, even when fixed
        if cfg.dls if cls.dls is None else cls.dls:
            keys |= {"alpha_y", "alpha_z", "beta_y"}
        return keys

    def __init__(self, cfg: MethodConfig, dims: Dims, n_epochs: int):
        super().__init__()
        self.cfg, self.dims, self.n_epochs = cfg, dims, n_epochs
        self.use_dls = cfg.dls if type(self).dls is None else type(self).dls
        self.use_caw = cfg.caw if type(self).caw is None else type(self).caw
        if cfg.n_b < 1:
            raise ConfigError(f"method.n_b must be ≥ 1, got {cfg.n_b}")

    # --- what the trainer asks ------------------------------------------------------------
    @property
    def has_estimator(self) -> bool:
        """True when the method trains networks of its own between encoder steps."""
        return any(p.requires_grad for p in self.parameters())

    @property
    def n_b(self) -> int:
        """Steps per cycle: one encoder step, then N_B − 1 estimator steps."""
        return self.cfg.n_b if self.has_estimator else 1

    def settings(self) -> dict:
        """The effective switches, recorded next to the results."""
        return {"method": self.name, "dls": self.use_dls, "caw": self.use_caw}

    def seed(self, seed: int) -> None:
        """Give every random part of the method (MINE's shuffles) one generator seeded with
        ``seed``, so that a run does not depend on torch's global RNG (two runs can train
        side by side in one process, as the app does, and stay reproducible)."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if hasattr(m, "generator"):
                m.generator = gen

    def gammas(self, losses: Tensor, epoch: float) -> Tensor:
        """γ_0..γ_N: ones, or DLS γ_i = (L_i / L̄)^{α_i} with α_Y growing by β_Y over training."""
        if not self.use_dls:
            return torch.ones_like(losses)
        alpha_y = alpha_y_schedule(self.cfg.alpha_y, self.cfg.beta_y, epoch, self.n_epochs)
        return dls_gammas(losses.detach(), alpha_y, self.cfg.alpha_z)

    # --- the step: set-up, epoch order, update, finish -------------------------------------
    def setup(self, model: nn.Module, data, cfg: TrainConfig, generator: torch.Generator) -> None:
        """Before the first step: the optimisers (Adam on the network; Adam at
        ``estimator.lr`` on the method's own networks), the sampling weights, the alternation."""
        self.t = Trainee(model, data, cfg, generator)
        m = self.cfg
        if m.alternation not in ("per_step", "per_batch"):
            raise ConfigError(f"method.alternation must be 'per_step' or 'per_batch', got {m.alternation!r}")
        if m.estimator_batches not in ("forward", "bank"):
            raise ConfigError(f"method.estimator_batches must be 'forward' or 'bank', "
                              f"got {m.estimator_batches!r}")
        if m.penalty_batch not in ("drawn", "task"):
            raise ConfigError(f"method.penalty_batch must be 'drawn' or 'task', got {m.penalty_batch!r}")
        if m.estimator_batches == "bank" and m.alternation != "per_step":
            raise ConfigError("method.estimator_batches=bank needs method.alternation=per_step")
        self.opt = self.make_optimiser(model, cfg)
        self.opt_est = (torch.optim.Adam(self.parameters(), lr=m.estimator.lr)
                        if self.has_estimator else None)
        reserved = self.reserve(data.y, data.z, generator)
        self.fit_idx = (torch.arange(len(data), device=data.x.device) if reserved is None
                        else (~reserved).nonzero().flatten())
        self.weights = self.sample_weights(data.y[self.fit_idx], data.z[self.fit_idx])
        pen = self.penalty_sample_weights(data.y, data.z)
        if reserved is not None:  # the penalty's batches come from the reserved images only
            pen = reserved.float() * (1.0 if pen is None else pen)
        self.pen_weights = pen
        self.draw_weights = pen.cpu() if pen is not None else torch.ones(len(data))
        # the last N_B − 1 penalty batches of the encoder steps, features detached, newest last
        self.bank: collections.deque = collections.deque(maxlen=max(self.n_b - 1, 1))
        self.n_steps = 0

    def make_optimiser(self, model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
        """The network's optimiser: Adam at ``train.lr`` with ``train.weight_decay``."""
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def epoch_order(self) -> Tensor:
        """The training indices of one epoch: a permutation of the images the losses fit, or as
        many draws with replacement by :meth:`sample_weights` when the method resamples."""
        t = self.t
        n = len(self.fit_idx)
        if self.weights is None:
            order = torch.randperm(n, generator=t.generator)
        else:
            order = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=t.generator)
        return self.fit_idx[order.to(t.device)]

    @property
    def n_fit(self) -> int:
        """How many training images the classification losses see (all but the reserved)."""
        return len(self.fit_idx)

    def reserve(self, y: Tensor, z: Tensor, generator: torch.Generator) -> Tensor | None:
        """A mask of training images kept out of the classification losses (None: none)."""
        return None

    def update(self, idx: Tensor, progress: float) -> Iterator[dict]:
        """The steps of one training batch ``idx`` at fractional epoch ``progress``: one dict
        of logs per step, with its ``kind`` ("encoder" | "estimator")."""
        own_batches = self.cfg.alternation == "per_step"
        if self.n_b == 1 or not own_batches:  # original: the epoch's batches are shared
            kinds = ["encoder" if self.n_steps % self.n_b == 0 else "estimator"]
        else:  # one encoder step on this batch, then N_B − 1 estimator steps on drawn batches
            kinds = ["encoder"] + ["estimator"] * (self.n_b - 1)
        for k, kind in enumerate(kinds):
            if kind == "encoder":
                drawn = self.pen_weights is not None and self.cfg.penalty_batch == "drawn"
                logs = self.encoder_step(idx, self._draw() if drawn else None, progress)
            else:
                if self.cfg.estimator_batches == "bank":  # k-th newest penalty batch, fresh shuffles
                    batch = self.bank[-1 - (k - 1) % len(self.bank)]
                else:
                    batch = self._features(self._draw() if own_batches or self.pen_weights is not None
                                           else idx)
                logs = self.estimator_step(batch)
            self.n_steps += 1
            yield {"kind": kind, **logs}

    def finish(self, model: nn.Module, scenario) -> bool:
        """A stage after training, on the kept model (e.g. DFR's last-layer refit); True when
        it changed the model. The base method has none."""
        return False

    def _draw(self) -> Tensor:
        """A batch of training indices for the estimator or the penalty: drawn with the
        method's penalty weights (e.g. cell-balanced), else uniformly."""
        t = self.t
        size = self.cfg.estimator.batch_size or t.cfg.batch_size
        return torch.multinomial(self.draw_weights, size, replacement=True,
                                 generator=t.generator).to(t.device)

    @property
    def _penalty_rotate(self) -> float | None:
        """Degrees the penalty's and estimator's batches turn by (None: ``train.rotate``)."""
        return self.cfg.penalty_rotate or None

    def encoder_step(self, idx: Tensor, pen_idx: Tensor | None, progress: float) -> dict:
        """One step of the network on :meth:`encoder_loss`; the penalty on the batch ``pen_idx``
        when given."""
        t = self.t
        parts, logits = t.forward(idx)
        y, z = t.data.y[idx], t.data.z[idx]
        pen_batch = (parts, y, z)
        if pen_idx is not None:
            pen_parts, _ = t.forward(pen_idx, self._penalty_rotate)
            pen_batch = (pen_parts, t.data.y[pen_idx], t.data.z[pen_idx])
        with torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=t.amp):
            loss, logs = self.encoder_loss(parts, logits, y, z, progress, pen_batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.cfg.estimator_batches == "bank":
            self.bank.append(([p.detach().float() for p in pen_batch[0]], pen_batch[1], pen_batch[2]))
        return logs

    @torch.no_grad()
    def _features(self, idx: Tensor) -> tuple:
        """(parts, y, z) of training images ``idx``, for the estimator (no gradient to the encoder)."""
        parts, _ = self.t.forward(idx, self._penalty_rotate)
        return [p.float() for p in parts], self.t.data.y[idx], self.t.data.z[idx]

    def estimator_step(self, batch: tuple) -> dict:
        """One step of the method's own networks on :meth:`estimator_loss`."""
        parts, y, z = batch
        est_loss = self.estimator_loss(parts, y, z)
        self.opt_est.zero_grad(set_to_none=True)
        est_loss.backward()
        self.opt_est.step()
        return {"estimator_loss": float(est_loss.detach())}

    # --- the objective ----------------------------------------------------------------------
    def penalty(self, parts: list[Tensor], y: Tensor, z: Tensor) -> tuple[Tensor | None, dict]:
        """The dependence term between f_y = parts[0] and f_z = parts[1:] (None: no term)."""
        return None, {}

    def estimator_loss(self, parts: list[Tensor], y: Tensor, z: Tensor) -> Tensor | None:
        return None

    def sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        """Per-example sampling weights for the training set (None: uniform)."""
        return None

    def penalty_sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        """Sampling weights for a separate batch on which the penalty and the estimator are
        computed (None: they use the training batch)."""
        return None

    def encoder_loss(self, parts: list[Tensor], logits: list[Tensor], y: Tensor, z: Tensor,
                     epoch: float, penalty_batch: tuple | None = None) -> tuple[Tensor, dict]:
        """L = Σ γ_i L_i + λ·penalty (with ``method.dls_penalty``, L = Σ γ_i L_i + γ_D·λ·penalty,
        the γ's over [L_0..L_N, max(0, penalty)]); ``epoch`` is fractional (e.g. 2.5). The penalty is computed
        on ``penalty_batch = (parts, y, z)`` when given (see :meth:`penalty_sample_weights`),
        else on the training batch."""
        losses = self.task_losses(logits, y, z)
        pen_parts, pen_y, pen_z = penalty_batch or (parts, y, z)
        pen, pen_logs = self.penalty(pen_parts, pen_y, pen_z)
        gamma_pen = 1.0
        if pen is not None and self.cfg.dls_penalty:  # the penalty as one more loss in L̄
            gammas = self.gammas(torch.cat([losses, pen.detach().clamp_min(0).reshape(1)]), epoch)
            gammas, gamma_pen = gammas[:-1], float(gammas[-1])
        else:
            gammas = self.gammas(losses, epoch)
        loss = (gammas * losses).sum()
        logs = {f"loss_{k}": float(v) for k, v in zip(self.head_names, losses.detach())}
        logs.update({f"gamma_{k}": float(g) for k, g in zip(self.head_names, gammas)})
        if pen is not None:
            weight = self.cfg.lam * gamma_pen * float(epoch >= self.cfg.warmup_epochs)
            if self.cfg.dls_penalty:
                logs["gamma_penalty"] = gamma_pen
            if self.cfg.grad_scaling and weight > 0:
                weight *= self._gradient_ratio(loss, parts, weight * pen, pen_parts)
                logs["penalty_scale"] = weight / self.cfg.lam
            loss = loss + weight * pen
            logs["penalty"] = float(pen.detach())
            logs.update(pen_logs)
        logs["loss"] = float(loss.detach())
        return loss, logs

    def task_losses(self, logits: list[Tensor], y: Tensor, z: Tensor) -> Tensor:
        """L_0..L_N: the cross-entropy of the y head and of every z_i head, (N + 1,)."""
        targets = [y, *z.unbind(1)]
        return torch.stack([F.cross_entropy(lg, t) for lg, t in zip(logits, targets)])

    @staticmethod
    def _gradient_ratio(task: Tensor, parts: list[Tensor], penalty: Tensor,
                        pen_parts: list[Tensor]) -> float:
        """min(1, ‖∂task/∂f‖ / ‖∂penalty/∂f‖) on the features f: the adaptive scaling that keeps
        the dependence term from drowning the task's gradient (gradients w.r.t. the features
        only, so the encoder's backward runs once)."""
        g_task = torch.autograd.grad(task, parts, retain_graph=True, allow_unused=True)
        g_pen = torch.autograd.grad(penalty, pen_parts, retain_graph=True, allow_unused=True)

        def norm(grads) -> float:
            return sum(float((g.detach() ** 2).sum()) for g in grads if g is not None) ** 0.5

        n_pen = norm(g_pen)
        return 1.0 if n_pen == 0.0 else min(1.0, norm(g_task) / n_pen)

    @property
    def head_names(self) -> list[str]:
        return ["y", *[f"z{i + 1}" for i in range(len(self.dims.f_z))]]


def live_dict(cfg) -> tuple[dict, list[str]]:
    """``cfg.to_dict()`` (a RunConfig) without the method keys its method does not read
    (:meth:`Method.live_keys`) and that hold their defaults: what a shipped YAML holds, so that
    loading it back gives ``cfg`` and its hash. Also the dead keys kept because they differ
    from the default (an experiment-wide setting on a row that does not read it)."""
    from mimmx.config import MethodConfig

    d = cfg.to_dict()
    if cfg.method.name not in METHODS:
        return d, []
    live = METHODS[cfg.method.name].live_keys(cfg.method)
    kept: list[str] = []

    def prune(section: dict, default: dict, prefix: str) -> dict:
        out = {}
        for k, v in section.items():
            if isinstance(v, dict):
                sub = prune(v, default[k], prefix + k + ".")
                if sub:
                    out[k] = sub
            elif prefix + k in live:
                out[k] = v
            elif v != default[k]:
                out[k] = v
                kept.append(f"method.{prefix}{k}")
        return out

    d["method"] = prune(d["method"], dataclasses.asdict(MethodConfig()), "")
    return d, kept


def build_method(cfg: MethodConfig, dims: Dims, n_epochs: int) -> Method:
    if cfg.name not in METHODS:
        raise ConfigError(f"unknown method {cfg.name!r} (config key method.name); "
                          f"choose one of {', '.join(sorted(METHODS))}")
    return METHODS[cfg.name](cfg, dims, n_epochs)
