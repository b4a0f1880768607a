"""A generic image-classification trainer with typed callbacks.

It knows nothing about FER or the UI: it takes uint8 images and integer labels, a model that returns
logits, and a `TrainConfig`. On CUDA the whole dataset lives on the GPU, batches are augmented there
(`augment.py`), and the forward pass runs under bf16 autocast in channels_last. Progress reaches the
outside world only through `Callback` methods; `request_stop()` (from any thread) is honoured within
one batch. `state_dict()` / `load_state_dict()` make a run resumable at epoch granularity.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_core.augment import AugmentConfig, augment_batch, mix_batch
from fer_core.inference import autocast, predict_logits, resolve_device
from fer_core.models import GroupedNet, fresh_copy, group_models, member_state_dict

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "onecycle", "plateau", "none")
MONITORS = ("val_acc", "val_macro_f1", "val_loss")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0  # cosine only
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None  # loss weight per class, or None
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # share of batches that get mixup / cutmix when either is on
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    early_stopping: int = 0  # stop after this many epochs without improvement; 0 = never
    monitor: str = "val_acc"
    ema_decay: float = 0.0  # exponential moving average of weights; 0 = off
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    sam_rho: float = 0.0  # sharpness-aware minimisation radius (two passes per step); 0 = off
    distill: float = 0.0  # weight of distillation from a teacher: peers, branches, else the EMA
    distill_temperature: float = 2.0
    peers: int = 0  # teacher networks trained alongside the model in one grouped network
    eval_tta: str = "none"  # test-time views for per-epoch validation
    mean: float = 0.5  # input normalisation
    std: float = 0.25
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}"),
            (self.monitor in MONITORS, f"monitor must be one of {MONITORS}"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (self.sam_rho >= 0, "sam_rho must be non-negative"),
            (0 <= self.distill < 1, "distill must be in [0, 1)"),
            (self.peers >= 0, "peers must be non-negative"),
            (self.peers == 0 or self.distill > 0, "peers are teachers: they need distill > 0"),
            (self.distill_temperature > 0, "distill_temperature must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if isinstance(values.get("augment"), dict):
            aug = values["augment"]
            values["augment"] = AugmentConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
            )
        if isinstance(values.get("class_weights"), list):
            values["class_weights"] = tuple(values["class_weights"])
        return cls(**values)


# ----------------------------------------------------------------------------- callbacks


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based, within the epoch
    batches: int
    loss: float
    images_per_s: float
    eta_s: float  # seconds left for the whole run, estimated


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_macro_f1: float
    lr: float
    seconds: float
    is_best: bool


@dataclass(frozen=True)
class TrainResult:
    history: list[EpochMetrics]
    best_epoch: int
    best_metric: float
    stopped: bool  # True when request_stop() ended the run early
    early_stopped: bool
    seconds: float


class Callback:
    """Override the hooks you need; every hook is a no-op by default."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_batch_end(self, trainer: Trainer, progress: BatchProgress) -> None: ...

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None: ...

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...


# ----------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_images: np.ndarray,  # (N, H, W) uint8
        train_labels: np.ndarray,  # (N,) int
        val_images: np.ndarray,
        val_labels: np.ndarray,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
        train_targets: np.ndarray | None = None,  # (N, classes) soft labels, rows sum to 1
    ) -> None:
        if len(train_images) < config.batch_size and len(train_images) < 2:
            raise ValueError("need at least two training images")
        self.config = config
        self.device = resolve_device(config.device)
        self.callbacks = list(callbacks)
        self._stop = threading.Event()

        torch.manual_seed(config.seed)
        # With peers, the model and its teachers train as one grouped network (member 0 is the
        # model); `student` is the plain model that member 0 is copied into to validate and save.
        self.student: nn.Module | None = None
        branched = isinstance(model, GroupedNet)
        if config.distill and not (config.ema_decay or config.peers or branched):
            raise ValueError("distill needs a teacher: peers, a branched network or ema_decay")
        if config.peers:
            if branched:
                raise ValueError("peers need a plain network, not a branched one")
            peers = [fresh_copy(model) for _ in range(config.peers)]
            self.student = model.to(self.device).eval().requires_grad_(False)
            model = group_models([self.student, *[p.to(self.device) for p in peers]])
        self.model = model.to(self.device)
        # channels_last is faster on CUDA (cuDNN) and CPU (oneDNN: 52 s -> 43 s per small-model
        # epoch on 2 cores); MPS keeps the default layout.
        self._channels_last = config.channels_last and self.device.type in ("cuda", "cpu")
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            if self.student is not None:
                self.student = self.student.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval() if config.ema_decay > 0 else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
        self._forward = torch.compile(self.model) if config.compile else self.model
        self._forward_branches = None  # (B, branches, classes) for grouped networks
        if isinstance(self.model, GroupedNet):
            branches = self.model.forward_branches
            self._forward_branches = torch.compile(branches) if config.compile else branches

        self.x_train = torch.from_numpy(np.ascontiguousarray(train_images)).to(self.device)
        self.y_train = torch.from_numpy(np.asarray(train_labels, dtype=np.int64)).to(self.device)
        # Soft labels replace the hard ones as the loss's target; accuracy stays on the hard ones.
        self.t_train = None
        if train_targets is not None:
            targets = np.asarray(train_targets, dtype=np.float32)
            if targets.shape[0] != len(train_labels) or targets.ndim != 2:
                raise ValueError("train_targets must have one row of class probabilities per image")
            self.t_train = torch.from_numpy(targets).to(self.device)
        self.x_val = torch.from_numpy(np.ascontiguousarray(val_images)).to(self.device)
        self.y_val = np.asarray(val_labels, dtype=np.int64)
        self.num_classes = self._infer_num_classes()
        weights = config.class_weights
        self.loss_weight = (
            torch.tensor(weights, dtype=torch.float32, device=self.device) if weights else None
        )

        self.batches_per_epoch = max(1, len(self.x_train) // config.batch_size)
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)

        self.epoch = 0  # epochs completed
        self.history: list[EpochMetrics] = []
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.step = 0
        self._first_epoch = 0
        self._shown_loss, self._loss_read_at = math.nan, -math.inf  # see _report_batch

    # ------------------------------------------------------------------ public API

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA copy when EMA is on; with peers, the
        model's own member of the grouped network, as a plain network."""
        weights = self.ema if self.ema is not None else self.model
        if self.student is None:
            return weights
        self.student.load_state_dict(member_state_dict(_unwrapped(weights), 0, self.student))
        return self.student

    def request_stop(self) -> None:
        """Ask the run to stop; honoured within one batch. Safe to call from any thread."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def fit(self) -> TrainResult:
        cfg = self.config
        start = time.perf_counter()
        self._first_epoch = self.epoch
        for cb in self.callbacks:
            cb.on_train_start(self)
        stopped = early_stopped = False
        while self.epoch < cfg.epochs:
            epoch_start = time.perf_counter()
            train_loss, train_acc = self._train_one_epoch(start)
            if train_loss is None:  # stop requested mid-epoch: the partial epoch is discarded
                stopped = True
                break
            val_loss, val_acc, val_f1 = self._validate()
            self.epoch += 1
            metric = {"val_acc": val_acc, "val_macro_f1": val_f1, "val_loss": -val_loss}[
                cfg.monitor
            ]
            is_best = metric > self.best_metric
            if is_best:
                self.best_metric, self.best_epoch = metric, self.epoch
            if self.scheduler is not None and cfg.scheduler == "plateau":
                self.scheduler.step(metric)
            metrics = EpochMetrics(
                epoch=self.epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                val_loss=val_loss,
                val_acc=val_acc,
                val_macro_f1=val_f1,
                lr=self.optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - epoch_start,
                is_best=is_best,
            )
            self.history.append(metrics)
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
            if self._stop.is_set():
                stopped = True
                break
            if cfg.early_stopping and self.epoch - self.best_epoch >= cfg.early_stopping:
                early_stopped = True
                break
        result = TrainResult(
            history=list(self.history),
            best_epoch=self.best_epoch,
            best_metric=self.best_metric,
            stopped=stopped,
            early_stopped=early_stopped,
            seconds=time.perf_counter() - start,
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def state_dict(self) -> dict:
        """Everything needed to resume after the last finished epoch (weights_only-loadable)."""
        return {
            "model": _unwrapped(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": [asdict(m) for m in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        _unwrapped(self.model).load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        self.history = [EpochMetrics(**m) for m in state["history"]]

    # ------------------------------------------------------------------ internals

    def _infer_num_classes(self) -> int:
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            probe = torch.zeros(1, 1, *self.x_train.shape[1:], device=self.device)
            n = self.model(probe).shape[-1]
            self.model.train(was)
        return int(n)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        # No weight decay on norms and biases: they are scale parameters, not features.
        decay, no_decay = [], []
        for p in self.model.parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        if cfg.optimizer == "adam":
            # Classic Adam adds weight decay to the gradient (L2), unlike AdamW.
            return torch.optim.Adam(groups, lr=cfg.lr)
        return torch.optim.AdamW(groups, lr=cfg.lr)

    def _build_scheduler(self):
        cfg = self.config
        total = cfg.epochs * self.batches_per_epoch
        if cfg.scheduler == "cosine":
            warmup = int(cfg.warmup_epochs * self.batches_per_epoch)

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

            return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        if cfg.scheduler == "onecycle":
            # OneCycleLR divides by zero when its warm-up is exactly one step (4 steps in all)
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer,
                max_lr=cfg.lr,
                total_steps=total,
                pct_start=0.3 if total == 4 else 0.25,
            )
        if cfg.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="max",
                factor=cfg.plateau_factor,
                patience=cfg.plateau_patience,
            )
        return None

    def _batch_input(self, index: torch.Tensor) -> torch.Tensor:
        x = self.x_train[index].float().div_(255.0).unsqueeze(1)  # (B, 1, H, W) in [0, 1]
        x = augment_batch(x, self.config.augment, self.generator)
        x = (x - self.config.mean) / self.config.std
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _train_one_epoch(self, run_start: float) -> tuple[float | None, float]:
        cfg = self.config
        self.model.train()
        order = torch.randperm(len(self.x_train), generator=self.generator, device=self.device)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        tick = time.perf_counter()
        for b in range(self.batches_per_epoch):
            if self._stop.is_set():
                return None, 0.0
            index = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x, y = self._batch_input(index), self.y_train[index]
            target: torch.Tensor = y if self.t_train is None else self.t_train[index]
            mixing = (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0) and (
                torch.rand(1, generator=self.generator, device=self.device).item() < cfg.mix_prob
            )
            if mixing:
                soft = target if target.dim() == 2 else F.one_hot(y, self.num_classes).float()
                x, target = mix_batch(x, soft, cfg.mixup_alpha, cfg.cutmix_alpha, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            logits, loss, shown = self._loss(x, target)
            loss.backward()
            if cfg.sam_rho > 0:
                self._sharpness_aware_gradient(x, target)
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None and cfg.scheduler != "plateau":
                self.scheduler.step()
            self._update_ema()
            self.step += 1
            total_loss += shown.detach() * len(y)
            correct += (logits.argmax(-1) == y).sum()
            seen += len(y)
            if self.callbacks:
                self._report_batch(b, shown, seen, tick, run_start)
        return (total_loss / seen).item(), (correct / seen).item()

    def _loss(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the model's logits, the loss to minimise, the model's own loss to report)."""
        if self._forward_branches is not None:
            return self._branch_loss(x, target)
        with autocast(self.device, self.config.amp):
            logits = self._forward(x)
            loss = self._hard_loss(logits, target)
            if self.config.distill > 0:
                # self-distillation: the EMA weights are the teacher (the "mean teacher")
                with torch.no_grad():
                    teacher = F.log_softmax(
                        self.ema(x).float() / self.config.distill_temperature, -1
                    )
                loss = self._with_teacher(loss, logits, teacher)
        return logits, loss, loss

    def _branch_loss(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every branch of a grouped network learns the labels, and with `distill` also its
        teacher's softened prediction. With peers (online ensemble distillation) only branch 0,
        the model, learns from the teacher: the peers' average. In a branched network every
        branch learns from the average of all branches. Branch losses are summed, so each branch
        gets the gradient it would get alone."""
        cfg = self.config
        with autocast(self.device, cfg.amp):
            logits = self._forward_branches(x).float()  # (B, branches, classes)
        n = logits.shape[1]
        losses = [self._hard_loss(logits[:, i], target) for i in range(n)]
        if cfg.distill:
            with torch.no_grad():
                teachers = logits[:, 1:] if cfg.peers else logits
                probs = F.softmax(teachers / cfg.distill_temperature, dim=-1).mean(1)
                teacher = probs.clamp_min(1e-12).log()
            for i in range(1 if cfg.peers else n):
                losses[i] = self._with_teacher(losses[i], logits[:, i], teacher)
        total = sum(losses)
        if cfg.peers:
            return logits[:, 0], total, losses[0]
        mean_logp = torch.logsumexp(logits.log_softmax(-1), dim=1) - math.log(n)
        return mean_logp, total, total / n

    def _hard_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(),
            target,
            weight=self.loss_weight,
            label_smoothing=self.config.label_smoothing,
        )

    def _with_teacher(
        self, hard: torch.Tensor, logits: torch.Tensor, teacher_logp: torch.Tensor
    ) -> torch.Tensor:
        """(1 - distill) * the hard loss + distill * T^2 * KL(teacher || student), both softened
        by the temperature T (`teacher_logp` already is); T^2 keeps the soft term's gradient the
        size of the hard loss's."""
        t = self.config.distill_temperature
        student = F.log_softmax(logits.float() / t, dim=-1)
        soft = F.kl_div(student, teacher_logp, log_target=True, reduction="batchmean") * t * t
        return (1 - self.config.distill) * hard + self.config.distill * soft

    def _sharpness_aware_gradient(self, x: torch.Tensor, target: torch.Tensor) -> None:
        """SAM (Foret et al. 2021): replace the gradient with the one taken at the worst point
        within `sam_rho` of the weights (first-order), which favours flat minima."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        steps = torch._foreach_mul(grads, self.config.sam_rho / (norm + 1e-12))
        with torch.no_grad():
            torch._foreach_add_(params, steps)
        self.optimizer.zero_grad(set_to_none=True)
        self._loss(x, target)[1].backward()
        with torch.no_grad():
            torch._foreach_sub_(params, steps)

    def _report_batch(self, b: int, loss, seen: int, tick: float, run_start: float) -> None:
        cfg = self.config
        now = time.perf_counter()
        done_batches = self.epoch * self.batches_per_epoch + b + 1
        total_batches = cfg.epochs * self.batches_per_epoch
        # ETA from this session's pace (a resumed run starts the clock again).
        session_batches = (self.epoch - self._first_epoch) * self.batches_per_epoch + b + 1
        pace = (now - run_start) / session_batches
        # Reading the loss waits for the GPU, which then idles while Python queues the next
        # batch: read it at most 5 times a second (the bar and the app show no faster).
        if now - self._loss_read_at >= 0.2 or b + 1 == self.batches_per_epoch or b == 0:
            self._shown_loss, self._loss_read_at = float(loss.item()), now
        progress = BatchProgress(
            epoch=self.epoch + 1,
            epochs=cfg.epochs,
            batch=b + 1,
            batches=self.batches_per_epoch,
            loss=self._shown_loss,
            images_per_s=seen / max(now - tick, 1e-9),
            eta_s=pace * (total_batches - done_batches),
        )
        for cb in self.callbacks:
            cb.on_batch_end(self, progress)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # Warm the decay up so early EMA weights are not dominated by the random init.
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        ema_params = list(self.ema.parameters())
        params = [p.detach() for p in _unwrapped(self.model).parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for eb, b in zip(self.ema.buffers(), _unwrapped(self.model).buffers()):
            eb.copy_(b)

    def _validate(self) -> tuple[float, float, float]:
        if len(self.x_val) == 0:
            return float("nan"), float("nan"), float("nan")
        logp = predict_logits(
            self.eval_model,
            self.x_val,
            self.config.mean,
            self.config.std,
            tta=self.config.eval_tta,
            amp=self.config.amp,
        )
        y = torch.from_numpy(self.y_val)
        loss = F.nll_loss(logp, y).item()
        pred = logp.argmax(-1)
        acc = (pred == y).float().mean().item()
        return loss, acc, macro_f1(y.numpy(), pred.numpy(), self.num_classes)


def seed_everything(seed: int) -> None:
    """Seed every RNG a run draws from; call before building the model for repeatable inits."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in y_true or y_pred."""
    cm = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def _unwrapped(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)
