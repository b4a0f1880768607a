"""`TrainConfig`: every setting of a training run, in one frozen dataclass.

Each field's `metadata` carries its command-line help (and flag name where it differs from the
field's), so the CLI's training flags are generated from this class: a new setting is one edit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fer_core.data.augment import TTA_MODES, AugmentConfig
from fer_core.options import setting

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "onecycle", "plateau", "none")
MONITORS = ("val_acc", "val_macro_f1", "val_loss")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
GRAPHING_MODES = ("reduce-overhead", "max-autotune")  # modes that capture CUDA graphs themselves


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(30, "training epochs")
    batch_size: int = setting(
        128,
        "images per step: the global batch; under torchrun each of the N processes takes "
        "batch_size / N (which must divide), so a recipe optimises alike on any N",
    )
    optimizer: str = setting("adamw", "optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(5e-4, "weight decay (not on norms and biases)")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "SGD: Nesterov momentum")
    scheduler: str = setting("cosine", "learning-rate schedule", choices=SCHEDULERS)
    warmup_epochs: float = setting(1.0, "cosine: linear warm-up, in epochs")
    plateau_factor: float = setting(0.5, "plateau: factor the rate is cut by")
    plateau_patience: int = setting(3, "plateau: epochs without improvement before a cut")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")
    class_weights: tuple[float, ...] | None = None  # loss weight per class (see --class-weighting)
    mixup_alpha: float = setting(0.0, "mixup Beta(a, a) parameter (0 = off)", flag="--mixup")
    cutmix_alpha: float = setting(0.0, "cutmix Beta(a, a) parameter (0 = off)", flag="--cutmix")
    mix_prob: float = setting(1.0, "share of batches mixed when mixup or cutmix is on")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    early_stopping: int = setting(0, "stop after this many epochs without improvement (0 = never)")
    monitor: str = setting(
        "val_acc", "validation metric that picks the best epoch", choices=MONITORS
    )
    ema_decay: float = setting(
        0.0, "exponential moving average of the weights (0 = off)", flag="--ema"
    )
    grad_clip: float = setting(0.0, "largest gradient norm (0 = no clipping)")
    sam_rho: float = setting(
        0.0, "sharpness-aware minimisation radius, two passes per step (0 = off)", flag="--sam"
    )
    distill: float = setting(
        0.0,
        "weight of distillation from a teacher: the peers' average with --peers, a branched "
        "network's average, else the EMA weights (0 = off)",
    )
    distill_temperature: float = setting(2.0, "softmax temperature of distillation")
    peers: int = setting(
        0,
        "teacher networks trained alongside the model in one grouped network; the model distils "
        "from their average and is the one saved",
    )
    eval_tta: str = setting("none", "test-time views of per-epoch validation", choices=TTA_MODES)
    mean: float = setting(0.5, "input normalisation: mean")
    std: float = setting(0.25, "input normalisation: standard deviation")
    seed: int = setting(0, "random seed (initialisation, order, augmentation, subset)")
    device: str = setting("auto", "auto, cpu, cuda or mps")
    amp: bool = setting(True, "bf16 autocast on CUDA")
    channels_last: bool = setting(True, "channels-last memory layout (CUDA and CPU)")
    compile: bool = setting(False, "torch.compile the model (CUDA)")
    compile_mode: str = setting(
        "default", "torch.compile mode, with --compile", choices=COMPILE_MODES
    )
    cudnn_benchmark: bool = setting(
        False,
        "let cuDNN time its convolution algorithms for each new shape and keep the fastest (CUDA; "
        "much faster for branched networks, but another process may pick other algorithms, so "
        "runs then repeat within the seed spread, not bit for bit)",
    )
    cuda_graph: bool = setting(
        False,
        "capture the whole training step in one CUDA graph and replay it every batch (CUDA, "
        "one process; not with SAM, mixup, cutmix or resampling; with --compile, mode default)",
    )

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}"),
            (self.monitor in MONITORS, f"monitor must be one of {MONITORS}"),
            (self.compile_mode in COMPILE_MODES, f"compile_mode must be one of {COMPILE_MODES}"),
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
            (
                not (self.cuda_graph and self.compile and self.compile_mode in GRAPHING_MODES),
                f"compile modes {' and '.join(GRAPHING_MODES)} capture CUDA graphs of their own: "
                "use compile_mode default with cuda_graph",
            ),
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
            aug: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in values["augment"].items()
            }
            values["augment"] = AugmentConfig(**aug)
        if isinstance(values.get("class_weights"), list):
            values["class_weights"] = tuple(values["class_weights"])
        return cls(**values)
