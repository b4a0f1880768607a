"""A generic image-classification trainer with typed callbacks.

It knows nothing about FER or the UI: it takes uint8 images and integer labels, a model that returns
logits, and a `TrainConfig`. On CUDA the whole dataset lives on the GPU, batches are augmented there
(`augment.py`), and the forward pass runs under bf16 autocast in channels_last. The loss is an
`Objective` (`losses.py`); optimiser, schedule, SAM and the weight average come from `optim.py`.
Progress reaches the outside world only through `Callback` methods; `request_stop()` (from any
thread) is honoured within one batch. `state_dict()` / `load_state_dict()` make a run resumable at
epoch granularity.

Started by `torchrun` (WORLD_SIZE > 1, `distributed.py`) it trains data-parallel: every process
draws the same epoch permutation and takes its slice of each global batch (`batch_size` is the
global batch: batch_size / world_size images per process), `DistributedDataParallel` averages the
gradients, batch norm is synchronised on CUDA, rank 0 validates and broadcasts the numbers, and
the epoch's loss and accuracy are reduced, so every process holds the same history and makes the
same best-epoch, schedule and stop decisions. With one process nothing of this is involved.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fer_core.data.augment import (
    AugmentConfig,
    AugmentDraws,
    apply_augmentation,
    draw_augmentation,
)
from fer_core.evaluate import macro_f1
from fer_core.inference import autocast, predict_logits
from fer_core.models.networks import (
    FerNet,
    GroupedNet,
    fresh_copy,
    group_models,
    member_state_dict,
    output_classes,
)
from fer_core.training import branch_streams, distributed, graphed
from fer_core.training.config import TrainConfig
from fer_core.training.losses import Objective
from fer_core.training.optim import (
    WeightAverage,
    build_optimizer,
    build_scheduler,
    sharpness_aware_gradient,
)

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
        self.dist, self.device = distributed.init(config.device)
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        _check_world(config, self.world_size, len(train_images))
        self.callbacks = list(callbacks)
        self._stop = threading.Event()

        torch.manual_seed(config.seed)
        self._place_model(model)
        if self.dist.distributed:  # own dropout masks per process (DDP gave all rank 0's weights)
            torch.manual_seed(_stream_seed(config.seed, -1, self.rank))
        self._place_data(train_images, train_labels, val_images, val_labels, train_targets)
        self.num_classes = self._infer_num_classes()
        weights = config.class_weights
        self.objective = Objective(
            config,
            torch.tensor(weights, dtype=torch.float32, device=self.device) if weights else None,
        )

        self.batches_per_epoch = max(1, len(self.x_train) // config.batch_size)
        self._graph: graphed.GraphedStep | None = None
        if config.cuda_graph:
            why = graphed.unsupported(config, self.device, self.world_size)
            if why:
                raise ValueError(f"cuda_graph: {why}")
        self.optimizer = build_optimizer(self.model, config, graphed=config.cuda_graph)
        self.scheduler = build_scheduler(self.optimizer, config, self.batches_per_epoch)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        # One process draws order and augmentation from one stream. With several, the order
        # stream stays shared (same permutation everywhere) and each process augments its own
        # images from its own stream, reseeded every epoch (so a resume needs no extra state).
        self._augment_generator = self.generator
        self._vote: distributed.StopVote | None = None
        if self.dist.distributed:
            self._augment_generator = torch.Generator(device=self.device)
            self._vote = distributed.StopVote(self.device)
        if config.cuda_graph:
            self._graph = graphed.GraphedStep(self)

        self.epoch = 0  # epochs completed
        self.history: list[EpochMetrics] = []
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.step = 0
        self._first_epoch = 0
        self._shown_loss, self._loss_read_at = math.nan, -math.inf  # see _report_batch

    def _place_model(self, model: nn.Module) -> None:
        """The network on its device and layout, its weight average, its compiled forward.

        With peers, the model and its teachers train as one grouped network (member 0 is the
        model); `student` is the plain model that member 0 is copied into to validate and save.
        """
        cfg = self.config
        self.student: nn.Module | None = None
        branched = isinstance(model, GroupedNet)
        if cfg.distill and not (cfg.ema_decay or cfg.peers or branched):
            raise ValueError("distill needs a teacher: peers, a branched network or ema_decay")
        if cfg.peers:
            if branched:
                raise ValueError("peers need a plain network, not a branched one")
            peers = [fresh_copy(model) for _ in range(cfg.peers)]
            self.student = model.to(self.device).eval().requires_grad_(False)
            members = [self.student, *[p.to(self.device) for p in peers]]
            model = group_models(cast("list[FerNet]", members))
        self.model = model.to(self.device)
        if self.dist.distributed and self.device.type == "cuda":
            # batch statistics over the global batch, as one process computes them (CUDA only:
            # on CPU each process normalises by its own slice's statistics)
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # channels_last is faster on CUDA (cuDNN) and CPU (oneDNN: 52 s -> 43 s per small-model
        # epoch on 2 cores); MPS keeps the default layout.
        self._channels_last = cfg.channels_last and self.device.type in ("cuda", "cpu")
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            if self.student is not None:
                self.student = self.student.to(memory_format=torch.channels_last)
        self.average = None
        if cfg.ema_decay > 0:  # compiled with the model: its move runs in every graphed step
            self.average = WeightAverage(self.model, cfg.ema_decay, compiled=cfg.compile)
        # Compiled, a batch's augmentation is a few fused kernels instead of about a hundred
        # small ones (with `resample` it is not: each batch's size would compile anew).
        self._model_input = model_input
        if cfg.compile and cfg.augment.resample == 0:
            self._model_input = cast(Callable[..., torch.Tensor], torch.compile(model_input))
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        self._forward_branches = None  # (B, branches, classes) for grouped networks
        trained = self._trained_forward()
        if isinstance(self.model, GroupedNet):
            self._forward_branches = trained
        else:
            self._forward = trained

    def _trained_forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The forward that training steps call: a grouped network's per-branch logits or a
        plain network's; through DDP with several processes (so backward averages the
        gradients), compiled when the config asks; a grouped network in a compiled CUDA graph
        runs its branches one by one on streams of their own."""
        grouped = isinstance(self.model, GroupedNet)
        cfg = self.config
        if cfg.cuda_graph and cfg.compile and not branch_streams.unsupported(self.model):
            # branch by branch on streams of their own: 7% less time a step for the shipped
            # network on an H200, and 9 s less compiling (branch_streams.py)
            return branch_streams.BranchStreams(cast(GroupedNet, self.model), cfg.compile_mode)
        forward: Callable[[torch.Tensor], torch.Tensor]
        forward = cast(GroupedNet, self.model).forward_branches if grouped else self.model
        if self.dist.distributed:
            cuda = self.device.type == "cuda"
            forward = DistributedDataParallel(
                _Branches(cast(GroupedNet, self.model)) if grouped else self.model,
                device_ids=[self.device.index] if cuda else None,
                # SyncBatchNorm keeps the statistics equal on CUDA; on CPU rank 0's are sent
                **cast(dict[str, Any], {_BUFFER_SYNC: not cuda}),
            )
        if cfg.compile:
            compiled = torch.compile(forward, mode=cfg.compile_mode)
            forward = cast(Callable[[torch.Tensor], torch.Tensor], compiled)
        return forward

    def _place_data(self, x_train, y_train, x_val, y_val, targets) -> None:
        """The images and labels as tensors on the training device (validation labels on the
        host, where the metrics are computed)."""
        self.x_train = torch.from_numpy(np.ascontiguousarray(x_train)).to(self.device)
        self.y_train = torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(self.device)
        # Soft labels replace the hard ones as the loss's target; accuracy stays on the hard ones.
        self.t_train = None
        if targets is not None:
            targets = np.asarray(targets, dtype=np.float32)
            if targets.shape[0] != len(y_train) or targets.ndim != 2:
                raise ValueError("train_targets must have one row of class probabilities per image")
            self.t_train = torch.from_numpy(targets).to(self.device)
        self.x_val = torch.from_numpy(np.ascontiguousarray(x_val)).to(self.device)
        self.y_val = np.asarray(y_val, dtype=np.int64)

    # ------------------------------------------------------------------ public API

    @property
    def ema(self) -> nn.Module | None:
        """The weight average (the EMA copy of the model), or None when EMA is off."""
        return self.average.module if self.average is not None else None

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA copy when EMA is on; with peers, the
        model's own member of the grouped network, as a plain network."""
        weights = self.ema if self.ema is not None else self.model
        if self.student is None:
            return weights
        grouped = cast(GroupedNet, _unwrapped(weights))
        self.student.load_state_dict(member_state_dict(grouped, 0, cast(FerNet, self.student)))
        return self.student

    def request_stop(self) -> None:
        """Ask the run to stop; honoured within one batch. Safe to call from any thread."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def fit(self) -> TrainResult:
        start = time.perf_counter()
        self._first_epoch = self.epoch
        for cb in self.callbacks:
            cb.on_train_start(self)
        stopped = early_stopped = False
        while self.epoch < self.config.epochs:
            metrics = self._run_epoch(start)
            if metrics is None:  # stop requested mid-epoch: the partial epoch is discarded
                stopped = True
                break
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
            if distributed.any_process(self._stop.is_set(), self.device):
                stopped = True
                break
            patience = self.config.early_stopping
            if patience and self.epoch - self.best_epoch >= patience:
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
        if self.config.cuda_graph:  # the graph reads the learning rate from a device tensor
            for group in self.optimizer.param_groups:
                group["lr"] = torch.as_tensor(float(group["lr"]), device=self.device)
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
        """The network's number of classes: read from its last linear layer. Only a network
        without one is probed with a forward pass of a blank face, which on a GPU at start-up
        takes seconds (cuDNN timing its algorithms for a batch of one that no step uses)."""
        known = output_classes(_unwrapped(self.model))
        if known is not None:
            return known
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            probe = torch.zeros(1, 1, *self.x_train.shape[1:], device=self.device)
            n = self.model(probe).shape[-1]
            self.model.train(was)
        return int(n)

    def _run_epoch(self, run_start: float) -> EpochMetrics | None:
        """One epoch of training, then validation and the best-epoch bookkeeping; None when a
        stop was requested mid-epoch."""
        cfg = self.config
        epoch_start = time.perf_counter()
        trained = self._train_one_epoch(run_start)
        if trained is None:
            return None
        val_loss, val_acc, val_f1 = self._validate()
        self.epoch += 1
        metric = {"val_acc": val_acc, "val_macro_f1": val_f1, "val_loss": -val_loss}[cfg.monitor]
        is_best = metric > self.best_metric
        if is_best:
            self.best_metric, self.best_epoch = metric, self.epoch
        if self.scheduler is not None and cfg.scheduler == "plateau":
            self.scheduler.step(metric)
        metrics = EpochMetrics(
            epoch=self.epoch,
            train_loss=trained[0],
            train_acc=trained[1],
            val_loss=val_loss,
            val_acc=val_acc,
            val_macro_f1=val_f1,
            lr=float(self.optimizer.param_groups[0]["lr"]),  # a tensor with cuda_graph
            seconds=time.perf_counter() - epoch_start,
            is_best=is_best,
        )
        self.history.append(metrics)
        return metrics

    def _batch_input(self, index: torch.Tensor) -> torch.Tensor:
        """The network's input for the training images at `index`: augmented, normalised."""
        raw = self.x_train[index]  # (B, H, W) uint8
        cfg = self.config
        draws = draw_augmentation(cfg.augment, (len(raw), 1, *raw.shape[1:]),
                                  self._augment_generator)  # fmt: skip
        return self._model_input(raw, draws, cfg.augment, cfg.mean, cfg.std, self._channels_last)

    def _batch(
        self, index: torch.Tensor, draw: MixDraw | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(augmented inputs, hard labels, loss targets) of one batch; a mixup / cutmix `draw`
        mixes it and turns the targets into class probabilities."""
        x, y = self._batch_input(index), self.y_train[index]
        target: torch.Tensor = y if self.t_train is None else self.t_train[index]
        if draw is not None:
            soft = target if target.dim() == 2 else F.one_hot(y, self.num_classes).float()
            x, target = self._mix(x, soft, draw)
        return x, y, target

    def _mix(
        self, x: torch.Tensor, soft: torch.Tensor, draw: MixDraw
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch mixed with a shuffled copy of itself as `draw` says: (B, 1, H, W) images and
        (B, classes) targets. Only the shuffle is drawn here, on the device: nothing is read
        back, so the host never waits for the GPU."""
        perm = torch.randperm(len(x), generator=self._augment_generator, device=x.device)
        if draw.box is None:  # mixup
            x = draw.lam * x + (1 - draw.lam) * x[perm]
        else:  # cutmix: the box comes from the other image
            y0, y1, x0, x1 = draw.box
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        return x, draw.lam * soft + (1 - draw.lam) * soft[perm]

    def _train_step(
        self, index: torch.Tensor, draw: MixDraw | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training step on the images at `index` -> (logits, loss to report, hard
        labels): replayed from a CUDA graph with `cuda_graph`, else eagerly. `cudnn_benchmark`
        holds while a step runs and not after: the setting is process-wide, and predictions
        after a run (in the app, say) would otherwise time their convolutions for every new
        batch shape."""
        with _cudnn_benchmark(self.config.cudnn_benchmark):
            if self._graph is not None:
                logits, shown, y = self._graph(index)
            else:
                x, y, target = self._batch(index, draw)
                logits, shown = self._step(x, target)
                if self.average is not None:
                    self.average.update(_unwrapped(self.model), self.step)
        if self.scheduler is not None and self.config.scheduler != "plateau":
            self.scheduler.step()
        self.step += 1
        return logits, shown, y

    def _step_body(
        self, index: torch.Tensor, ema_weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a CUDA graph captures of a step: batch, optimisation step and EMA update, with
        no host work (`graphed.py`)."""
        x, y, target = self._batch(index)
        logits, shown = self._step(x, target)
        if self.average is not None:
            self.average.blend(_unwrapped(self.model), ema_weight)
        return logits.detach(), shown.detach(), y  # keep no autograd graph alive

    def _step(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step -> (the model's logits, the loss to report)."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        logits, loss, shown = self._loss(x, target)
        loss.backward()
        if cfg.sam_rho > 0:
            sharpness_aware_gradient(
                self.model,
                cfg.sam_rho,
                zero_grad=lambda: self.optimizer.zero_grad(set_to_none=True),
                backward=lambda: self._loss(x, target)[1].backward(),
            )
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return logits, shown

    def _train_one_epoch(self, run_start: float) -> tuple[float, float] | None:
        """(mean training loss, training accuracy) of one epoch, or None when stopped."""
        cfg = self.config
        size, local = cfg.batch_size, cfg.batch_size // self.world_size
        first = self.rank * local  # this process's slice of every global batch
        self.model.train()
        order = torch.randperm(len(self.x_train), generator=self.generator, device=self.device)
        if self._vote is not None:
            self._augment_generator.manual_seed(_stream_seed(cfg.seed, self.epoch, self.rank))
            self._vote.reset()
        height, width = self.x_train.shape[1:]
        plan = mix_plan(cfg, self.batches_per_epoch, height, width, self.epoch)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0  # images this process trained on
        tick = time.perf_counter()
        for b in range(self.batches_per_epoch):
            if self._stopping():
                return None
            start = b * size + first
            logits, shown, y = self._train_step(order[start : start + local], plan[b])
            total_loss += shown.detach() * len(y)
            correct += (logits.argmax(-1) == y).sum()
            seen += len(y)
            if self.callbacks:
                self._report_batch(b, shown, seen, tick, run_start)
        return self._epoch_means(total_loss, correct, seen)

    def _stopping(self) -> bool:
        """Whether to stop before the next batch: this process's request alone, or with several
        processes the vote of all (which lags one batch)."""
        if self._vote is None:
            return self._stop.is_set()
        return self._vote.vote(self._stop.is_set())

    def _epoch_means(
        self, total_loss: torch.Tensor, correct: torch.Tensor, seen: int
    ) -> tuple[float, float]:
        """(mean loss, accuracy) over every image of the epoch, of all processes."""
        if not self.dist.distributed:
            return (total_loss / seen).item(), (correct / seen).item()
        sums = distributed.all_reduce_sum(torch.stack([total_loss, correct.float()]))  # (2,)
        loss, acc = (sums / (seen * self.world_size)).tolist()  # each process saw `seen`
        return loss, acc

    def _loss(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the model's logits, the loss to minimise, the model's own loss to report)."""
        cache = not self.config.cuda_graph  # a graph must not keep autocast's cast weights
        if self._forward_branches is not None:
            with autocast(self.device, self.config.amp, cache):
                logits = self._forward_branches(x).float()  # (B, branches, classes)
            return self.objective.branches(logits, target)
        with autocast(self.device, self.config.amp, cache):
            logits = self._forward(x)
            teacher, ema = None, self.ema
            if self.config.distill > 0 and ema is not None:  # the EMA weights teach (mean teacher)
                with torch.no_grad():
                    teacher = ema(x)
            loss = self.objective.plain(logits, target, teacher)
        return logits, loss, loss

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

    def _validate(self) -> tuple[float, float, float]:
        """(loss, accuracy, macro F1) on the validation images. With several processes rank 0
        validates alone and broadcasts its numbers: the set is small next to an epoch, macro F1
        needs every prediction in one place, and every process must make the same best-epoch,
        plateau and early-stopping decisions from bit-identical numbers."""
        if len(self.x_val) == 0:
            return float("nan"), float("nan"), float("nan")
        if not self.dist.distributed:
            return self._validate_here()
        values = list(self._validate_here()) if self.dist.is_main else [0.0, 0.0, 0.0]
        loss, acc, f1 = distributed.broadcast_floats(values, self.device)
        return loss, acc, f1

    def _validate_here(self) -> tuple[float, float, float]:
        # cuDNN's heuristics, not its timing (`cudnn_benchmark`): timing every convolution for
        # validation's two batch shapes took 3.3 s of the first epoch on an H200, to save a few
        # milliseconds an epoch.
        with _cudnn_benchmark(False):
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


def model_input(
    raw: torch.Tensor,
    draws: AugmentDraws,
    augment: AugmentConfig,
    mean: float,
    std: float,
    channels_last: bool,
) -> torch.Tensor:
    """uint8 faces (B, H, W) as a network's input (B, 1, H, W): augmented with `draws`,
    normalised, in channels_last when asked. Pure: it compiles."""
    x = raw.float().div_(255.0).unsqueeze(1)  # [0, 1]
    x = (apply_augmentation(x, augment, draws) - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def seed_everything(seed: int) -> None:
    """Seed every RNG a run draws from; call before building the model for repeatable inits."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    """cuDNN's algorithm timing switched on or off inside the block (`torch.backends.cudnn.flags`
    would reset its other settings too)."""
    was = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = was


def _unwrapped(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


# DDP's switch for sending rank 0's buffers before every forward (renamed in torch 2.14)
_BUFFER_SYNC = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else "broadcast_buffers"
)


class _Branches(nn.Module):
    """A grouped network whose forward is its per-branch logits (B, branches, classes): DDP
    averages gradients only of what passes through a module's `forward`."""

    def __init__(self, net: GroupedNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_branches(x)


def _check_world(config: TrainConfig, world_size: int, n_train: int) -> None:
    """`batch_size` is the global batch: it must split evenly over the processes."""
    if world_size == 1:
        return
    if config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} is the global batch: it must divide by the "
            f"{world_size} processes"
        )
    if n_train < config.batch_size:
        raise ValueError("data-parallel training needs at least one global batch of images")


def _stream_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for one process's random stream in one epoch (epoch -1: dropout's)."""
    return int(np.random.SeedSequence([seed % 2**32, epoch + 1, rank]).generate_state(1)[0])


@dataclass(frozen=True)
class MixDraw:
    """One batch's mixing: `lam` is the weight of its own images (cutmix: their share of the
    pixels after the box is pasted in), `box` cutmix's (y0, y1, x0, x1), None for mixup."""

    lam: float
    box: tuple[int, int, int, int] | None


def mix_plan(
    cfg: TrainConfig, batches: int, height: int, width: int, epoch: int
) -> list[MixDraw | None]:
    """Every batch's mixup / cutmix decision of one epoch (None: not mixed), drawn up front on
    the host, so no batch reads a random number back from the GPU. Seeded by (seed, epoch):
    every process draws the same plan, and a resumed run the plan it would have drawn."""
    if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
        return [None] * batches
    rng = np.random.default_rng([cfg.seed % 2**32, epoch, 0x6D6978])  # 'mix'
    plan: list[MixDraw | None] = []
    for _ in range(batches):
        if rng.random() >= cfg.mix_prob:
            plan.append(None)
            continue
        cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha <= 0 or rng.random() < 0.5)
        alpha = cfg.cutmix_alpha if cutmix else cfg.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        if not cutmix:
            plan.append(MixDraw(lam, None))
            continue
        cut = math.sqrt(1 - lam)  # the box covers 1 - lam of the image
        half_h, half_w = int(height * cut) // 2, int(width * cut) // 2
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
        y0, y1 = max(cy - half_h, 0), min(cy + half_h, height)
        x0, x1 = max(cx - half_w, 0), min(cx + half_w, width)
        plan.append(MixDraw(1 - (y1 - y0) * (x1 - x0) / (height * width), (y0, y1, x0, x1)))
    return plan
