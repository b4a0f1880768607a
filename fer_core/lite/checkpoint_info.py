"""Where the shipped checkpoints live, and what a checkpoint says about itself (architecture, size,
stored metrics), read without importing torch.

Importing torch costs a cold server about 2 s, and the Home page and the sidebar need nothing from a
shipped model but these few fields. A checkpoint is a zip holding a pickle; `read_info` unpickles it
with a reader that knows four names (OrderedDict, torch's tensor-rebuild function and its storage
types) and refuses every other one, as torch's `weights_only` loader does, so reading never runs
code. Tensors come back as their shapes.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "fer_model.pt"  # photos, evaluation, the CLI
FAST_CHECKPOINT = CHECKPOINT_DIR / "fer_model_fast.pt"  # the live webcam

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm state, not weights


@dataclass(frozen=True)
class CheckpointInfo:
    arch: str
    num_parameters: int
    metrics: dict
    classes: tuple[str, ...]


class _Shape(tuple):
    """A tensor, as its shape."""


def _rebuild_tensor(storage, offset, size, *rest) -> _Shape:
    return _Shape(size)


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return name  # only names the storage's type
        raise pickle.UnpicklingError(f"refused: {module}.{name}")

    def persistent_load(self, pid):
        return None  # the tensor data itself is never read


def read_info(path: str | Path) -> CheckpointInfo:
    """The architecture, parameter count, stored metrics and classes of a checkpoint file.

    Raises ValueError (or OSError) for anything that is not a readable fer_core checkpoint; callers
    fall back to `fer_core.models.checkpoint.load_checkpoint`, whose messages explain the problem."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ValueError(f"{Path(path).name}: not a PyTorch zip checkpoint")
            raw = _Reader(io.BytesIO(archive.read(pickles[0]))).load()
        weights = raw["state_dict"]
        count = sum(
            math.prod(shape)
            for key, shape in weights.items()
            if isinstance(shape, _Shape) and not key.endswith(_BUFFERS)
        )
        return CheckpointInfo(
            arch=str(raw["arch"]),
            num_parameters=count,
            metrics=dict(raw.get("metrics") or {}),
            classes=tuple(raw["classes"]),
        )
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, TypeError, EOFError) as exc:
        raise ValueError(f"{Path(path).name}: cannot read its summary ({exc})") from None
