"""Reading run folders (run.json, history.json): what the Train page and the sidebar list, without
importing torch. Writing and resuming runs is `fer_core.training.runs`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RUN_FILE, HISTORY_FILE, STATE_FILE, BEST_FILE = "run.json", "history.json", "state.pt", "best.pt"


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    status: str
    arch: str
    epochs_done: int
    epochs: int
    best_val_acc: float | None
    best_val_macro_f1: float | None
    history: list[dict]
    record: dict


def read_run(run_dir: str | os.PathLike) -> RunSummary | None:
    """Summarise one run folder, or None if it is not one (or unreadable)."""
    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        history = json.loads((run_dir / HISTORY_FILE).read_text())
    except (OSError, ValueError):
        history = []
    best = max(history, key=lambda h: h.get("val_acc") or 0.0, default=None)
    status = record.get("status", "unknown")
    return RunSummary(
        path=run_dir,
        name=run_dir.name,
        status=status,
        arch=record.get("arch", "?"),
        epochs_done=len(history),
        epochs=int(record.get("train_config", {}).get("epochs", 0)),
        best_val_acc=best.get("val_acc") if best else None,
        best_val_macro_f1=best.get("val_macro_f1") if best else None,
        history=history,
        record=record,
    )


def list_runs(root: str | os.PathLike) -> list[RunSummary]:
    """Every readable run under root, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [read_run(p) for p in sorted(root.iterdir(), reverse=True) if p.is_dir()]
    return [r for r in runs if r is not None]
