"""Evaluate every member of a peers run's grouped network (its final EMA weights, from state.pt)
and their ensembles on PublicTest with flip TTA. Usage: peers_eval.py RUN_DIR DATA. One JSON line."""

import json
import sys
from pathlib import Path

import numpy as np

from fer_core.checkpoint import safe_torch_load
from fer_core.data import load_dataset
from fer_core.inference import predict_logits
from fer_core.models import build_model, group_models, member_state_dict
from fer_core.train import TrainConfig

run_dir, data_path = Path(sys.argv[1]), sys.argv[2]
record = json.loads((run_dir / "run.json").read_text())
config = TrainConfig.from_dict(record["train_config"])
state = safe_torch_load(run_dir / "state.pt")
n = config.peers + 1
template = build_model(record["arch"], **record["arch_kwargs"])
grouped = group_models([build_model(record["arch"], **record["arch_kwargs"]) for _ in range(n)])
grouped.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
data = load_dataset(data_path).split("public_test")
probs = []
for i in range(n):
    template.load_state_dict(member_state_dict(grouped, i, template))
    template.cuda().eval()
    logp = predict_logits(template, data.images, config.mean, config.std, tta="flip")
    probs.append(logp.exp().numpy())
probs = np.stack(probs)


def acc(p: np.ndarray) -> float:
    return round(float((p.argmax(-1) == data.labels).mean()), 4)


print(
    json.dumps(
        {
            "epoch": int(state["epoch"]),
            "members": [acc(p) for p in probs],  # member 0 is the model, 1.. its teachers
            "teachers_ensemble": acc(probs[1:].mean(0)),
            "all_ensemble": acc(probs.mean(0)),
        }
    )
)
