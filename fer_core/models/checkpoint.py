"""Self-describing checkpoints: weights + architecture + class order + preprocessing + metrics.

One file rebuilds the model and says how to feed it. Files are loaded with `weights_only=True`, so a
checkpoint can never run code, and written atomically (temp file + rename), so a crash mid-write
leaves the previous file intact.
"""

from __future__ import annotations

import os
import pickle
import re
import threading
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from fer_core.atomic import atomic_write
from fer_core.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from fer_core.errors import CheckpointError
from fer_core.labels import CLASSES
from fer_core.lite.checkpoint_info import (  # re-exported: where the shipped models live
    CHECKPOINT_DIR,  # noqa: F401
    DEFAULT_CHECKPOINT,
    FAST_CHECKPOINT,  # noqa: F401
)
from fer_core.models.networks import ARCHITECTURES, FerNet, build_model, count_parameters

FORMAT = "fer_core.checkpoint"  # stored in every file: never rename
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "arch", "arch_kwargs", "state_dict", "classes")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "arch_kwargs": dict,
    "state_dict": dict,
    "classes": (list, tuple),
    "input_size": int,
    "mean": (int, float),
    "std": (int, float),
    "train_config": dict,
    "history": list,
    "metrics": dict,
    "extra": dict,
    "calibration": dict,
    "int8": dict,
}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode plus everything recorded about it."""

    model: FerNet
    arch: str
    arch_kwargs: dict
    classes: tuple[str, ...]
    input_size: int
    mean: float
    std: float
    train_config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # {"temperature": T, "split": ..., "tta": ..., "ece_before": ..., "ece_after": ...}
    calibration: dict = field(default_factory=dict)
    # the int8 record of fer_core.models.quantize.calibrate ({} : fp32 inference only)
    int8: dict = field(default_factory=dict)
    path: Path | None = None
    _inference: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def temperature(self) -> float:
        """Temperature for calibrated probabilities (1.0: not calibrated)."""
        return float(self.calibration.get("temperature", 1.0))

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    @property
    def name(self) -> str:
        return self.path.stem if self.path else self.arch

    def precision(self, precision: str = "auto") -> str:
        """The precision `inference_model(precision)` runs in here: "int8" or "fp32"."""
        return "fp32" if self.inference_model(precision) is self.model else "int8"

    def inference_model(self, precision: str = "auto") -> nn.Module:
        """The network that predictions run: the int8 one where `precision` ("auto", "int8"
        or "fp32") and this machine allow it (`fer_core.models.quantize`), else `model`.
        Built once per checkpoint; a stored record that cannot be used gives the fp32 model
        ("auto") or a CheckpointError ("int8")."""
        from fer_core.models.quantize import int8_model, resolve_precision

        device = next(self.model.parameters()).device
        try:
            resolved = resolve_precision(precision, device, bool(self.int8))
        except ValueError as exc:
            raise CheckpointError(f"{self.name}: {exc}") from None
        if resolved == "fp32":
            return self.model
        with self._lock:
            if "int8" not in self._inference:
                try:
                    self._inference["int8"] = int8_model(self.model, self.int8)
                    self._inference.pop("error", None)
                except (ValueError, RuntimeError) as exc:
                    self._inference["int8"] = None
                    self._inference["error"] = str(exc)
            built = self._inference["int8"]
        if built is None:
            if precision == "int8":
                raise CheckpointError(f"{self.name}: {self._inference['error']}")
            return self.model
        return built


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, arch: str, arch_kwargs: dict | None = None, **fields
) -> Path:
    """Write a checkpoint atomically; `fields` are those of `checkpoint_payload` (half=True
    stores float weights as fp16, half the size)."""
    return atomic_torch_save(checkpoint_payload(model, arch, arch_kwargs, **fields), path)


def checkpoint_payload(
    model: nn.Module,
    arch: str,
    arch_kwargs: dict | None = None,
    *,
    mean: float,
    std: float,
    classes: tuple[str, ...] = CLASSES,
    input_size: int = 48,
    train_config: dict | None = None,
    history: list[dict] | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
    calibration: dict | None = None,
    int8: dict | None = None,
    half: bool = False,
    on_device: bool = False,
) -> dict:
    """What `save_checkpoint` writes, with the weights copied (to the CPU, or with `on_device`
    where they are, for a writer that moves them later): the model may go on training while the
    payload is written."""
    model = getattr(model, "_orig_mod", model)
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().half() if half and value.is_floating_point() else value.detach()
        state[key] = value.clone() if on_device else value.cpu().clone()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "state_dict": state,
        "classes": list(classes),
        "input_size": int(input_size),
        "mean": float(mean),
        "std": float(std),
        "train_config": train_config or {},
        "history": history or [],
        "metrics": metrics or {},
        "extra": extra or {},
        "calibration": calibration or {},
        "int8": int8 or {},
    }


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename over the target."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def safe_torch_load(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True and friendly errors for every way a file can be wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip container
        raise CheckpointError(
            f"{path.name}: not a readable PyTorch checkpoint (truncated, corrupt or another format)"
        )
    try:
        with warnings.catch_warnings():  # torch's notes would add lines to a one-line error
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # the callable the file asks for
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path.name}: refused to load: it contains objects other than tensors and plain "
            f"data{what}, which could run code"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        if "TorchScript" in str(exc):
            raise CheckpointError(
                f"{path.name}: a TorchScript export, not a checkpoint (load it with torch.jit.load)"
            ) from None
        raise CheckpointError(
            f"{path.name}: not a readable PyTorch checkpoint (truncated or corrupt: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name}: not a fer_core checkpoint (top level is not a dict)")
    return obj


def load_checkpoint(path: str | os.PathLike | None = None, device: str = "cpu") -> Checkpoint:
    """Load a checkpoint (default: the shipped model) and rebuild its model in eval mode."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if path == DEFAULT_CHECKPOINT and not path.exists():
        raise CheckpointError(
            f"no shipped model at {path}; train one with `python -m fer_core train` "
            "and pass --checkpoint"
        )
    raw = safe_torch_load(path)
    if raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{path.name}: not a fer_core checkpoint (a bare state_dict or another tool's file)"
        )
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise CheckpointError(f"{path.name}: incomplete checkpoint, missing {', '.join(missing)}")
    version = raw["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path.name}: unknown checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name}: written by a newer fer_core (format {version}, this one reads up to "
            f"{FORMAT_VERSION}); upgrade fer_core"
        )
    arch = raw["arch"]
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise CheckpointError(f"{path.name}: unknown architecture {arch!r}")
    malformed = _malformed(raw)
    if malformed:
        raise CheckpointError(f"{path.name}: malformed checkpoint ({malformed})")
    classes = tuple(raw["classes"])
    try:
        model = build_model(arch, num_classes=len(classes), **raw["arch_kwargs"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name}: cannot build {arch} ({exc})") from None
    state = {
        k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in raw["state_dict"].items()
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or ["?"]
        detail = lines[1] if len(lines) > 1 else lines[0]  # line 0 only says "Error(s) in ..."
        raise CheckpointError(
            f"{path.name}: weights do not fit architecture {arch} ({detail[:200]})"
        ) from None
    # channels_last: oneDNN's fastest CPU convolutions (2-3x at batch 1) and cuDNN's on GPUs.
    model.to(device).to(memory_format=torch.channels_last).eval()
    return Checkpoint(
        model=model,
        arch=arch,
        arch_kwargs=dict(raw["arch_kwargs"]),
        classes=classes,
        input_size=int(raw.get("input_size", 48)),
        mean=float(raw.get("mean", 0.5)),
        std=float(raw.get("std", 0.25)),
        train_config=dict(raw.get("train_config", {})),
        history=list(raw.get("history", [])),
        metrics=dict(raw.get("metrics", {})),
        extra=dict(raw.get("extra", {})),
        calibration=dict(raw.get("calibration", {})),
        int8=dict(raw.get("int8", {})),
        path=path,
    )


def interpolate(start: Checkpoint, end: Checkpoint, alpha: float) -> Checkpoint:
    """The checkpoint whose weights lie `alpha` of the way from `start`'s to `end`'s:
    (1 - alpha) * start + alpha * end, every float tensor (weights and batch-norm statistics).

    Made for a fine-tuned model and the model it was fine-tuned from (weight-space ensembling,
    WiSE-FT: Wortsman et al., 2022): both share one initialisation, so the straight line between
    them stays in one basin, and its middle keeps what fine-tuning added while losing less of
    what the first model had. Everything else (recipe, history, counters) is `end`'s; the
    calibration, the int8 record and the stored evaluation are dropped (they belonged to other
    weights), and `extra["interpolated"]` records the two files (their paths) and alpha. The
    model is a new one.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CheckpointError(f"alpha is {alpha}: 0 (the start) to 1 (the end)")
    for what in ("arch", "arch_kwargs", "classes", "input_size", "mean", "std"):
        if getattr(start, what) != getattr(end, what):
            raise CheckpointError(
                f"{start.name} and {end.name} differ in {what} "
                f"({getattr(start, what)!r} against {getattr(end, what)!r}): only two "
                "checkpoints of one network can be interpolated"
            )
    a, b = start.model.state_dict(), end.model.state_dict()
    mixed = {
        k: torch.lerp(a[k].float(), v.float(), alpha).to(v.dtype) if v.is_floating_point() else v
        for k, v in b.items()
    }
    model = build_model(end.arch, num_classes=len(end.classes), **end.arch_kwargs)
    model.load_state_dict(mixed)
    model.to(memory_format=torch.channels_last).eval()
    record = {
        "start": str(start.path or start.name),
        "end": str(end.path or end.name),
        "alpha": alpha,
    }
    return replace(
        end,
        model=model,
        metrics={},
        calibration={},
        int8={},
        extra={**end.extra, "interpolated": record},
        path=None,
    )


def _malformed(raw: dict) -> str | None:
    """Why a checkpoint's fields have the wrong types, or None when they are fine."""
    for key, kind in _TYPES.items():
        if key in raw and not isinstance(raw[key], kind):
            return f"{key} has type {type(raw[key]).__name__}"
    if not raw["classes"] or not all(isinstance(c, str) for c in raw["classes"]):
        return "classes must be a non-empty list of names"
    temperature = raw.get("calibration", {}).get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
    ):
        return f"calibration temperature {temperature!r} is not a number in 0.05..20"
    return None


class _Exported(nn.Module):
    """What an export holds: uint8-range grayscale (B, 1, 48, 48) in, probabilities out."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model = model
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x / 255.0 - self.mean) / self.std
        return self.model(x).softmax(-1)


def export(ckpt: Checkpoint, out: str | os.PathLike, fmt: str = "torchscript") -> Path:
    """Export to TorchScript (or ONNX when the onnx package is installed).

    The exported module takes (B, 1, 48, 48) floats in 0..255 and returns class probabilities in
    the order of `ckpt.classes` (stored in the file as well).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _Exported(ckpt.model.cpu().eval(), ckpt.mean, ckpt.std).eval()
    example = torch.zeros(1, 1, ckpt.input_size, ckpt.input_size)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, example)
        traced.save(str(out), _extra_files={"classes.txt": "\n".join(ckpt.classes)})
        return out
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise CheckpointError("ONNX export needs the onnx package: pip install onnx") from None
        torch.onnx.export(
            wrapper,
            (example,),  # torch wraps a lone Tensor in a tuple itself; its annotation wants one
            str(out),
            input_names=["image"],
            output_names=["probs"],
            dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}},
        )
        return out
    raise CheckpointError(f"unknown export format {fmt!r}: torchscript or onnx")
