"""Training with the whole step in a CUDA graph (fer_core/training/graphed.py): refused with the
reason where it cannot run (checked everywhere), and on a GPU the same training as eager steps,
repeatable, resumable (those tests need CUDA and are skipped without it; run them on a GPU with
`FER_SHARED_DATA=DIR pytest tests/test_graphed.py`)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import CSV_PATH, ZIP_PATH

from fer_core.models.networks import build_model
from fer_core.training.branch_streams import BranchStreams
from fer_core.training.config import TrainConfig
from fer_core.training.trainer import Trainer, seed_everything

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


@pytest.fixture(scope="module")
def faces():
    from fer_core.data.fer2013 import load_dataset

    path = ZIP_PATH if ZIP_PATH.exists() else CSV_PATH
    if not path.exists():
        pytest.fail(f"real data missing: {path}")
    data = load_dataset(path)
    train, val = data.split("train"), data.split("public_test")
    return train.images[:2048], train.labels[:2048], val.images[:512], val.labels[:512]


def _trainer(faces, arch="small", **overrides) -> Trainer:
    seed_everything(0)
    kwargs = {"branches": 2} if arch == "fer_vgg" else {}
    model = build_model(arch, **({"width": 16} | kwargs if arch == "fer_vgg" else {}))
    settings = {"epochs": 2, "batch_size": 128, "ema_decay": 0.99, "scheduler": "cosine",
                "warmup_epochs": 1} | overrides  # fmt: skip
    config = TrainConfig(**settings)
    return Trainer(model, config, *faces)


def test_refused_with_the_reason_where_it_cannot_run(faces):
    with pytest.raises(ValueError, match="capture CUDA graphs of their own"):
        TrainConfig(cuda_graph=True, compile=True, compile_mode="reduce-overhead")
    assert TrainConfig(cuda_graph=True, compile=True).compile_mode == "default"  # allowed
    with pytest.raises(ValueError, match="cuda_graph: CUDA graphs need a CUDA device"):
        _trainer(faces, device="cpu", cuda_graph=True)
    if torch.cuda.is_available():
        for bad, why in (({"sam_rho": 0.05}, "SAM"), ({"mixup_alpha": 0.2}, "mixup")):
            with pytest.raises(ValueError, match=why):
                _trainer(faces, device="cuda", cuda_graph=True, **bad)


def _losses(trainer: Trainer) -> np.ndarray:
    result = trainer.fit()
    assert all(type(h.lr) is float for h in result.history)  # run records stay plain JSON
    return np.array([[h.train_loss, h.train_acc, h.val_loss, h.val_acc] for h in result.history])


@cuda
@pytest.mark.parametrize(
    "arch, compiled", [("small", False), ("fer_vgg", False), ("fer_vgg", True)]
)
def test_graph_trains_like_eager_steps_and_repeats_exactly(faces, arch, compiled):
    eager = _losses(_trainer(faces, arch, device="cuda"))
    graph = _trainer(faces, arch, device="cuda", cuda_graph=True, compile=compiled)
    first = _losses(graph)
    assert graph._graph is not None and graph._graph.graph is not None  # it did capture
    # compiled, a branched network's branches run one by one, each on a stream of its own
    assert isinstance(graph._forward_branches, BranchStreams) == (arch == "fer_vgg" and compiled)
    # fused SGD and the graph's replay reorder a few sums: close to eager, not bit-equal
    np.testing.assert_allclose(first[:, [0, 2]], eager[:, [0, 2]], rtol=0.03)
    assert np.abs(first[:, 3] - eager[:, 3]).max() <= 0.05
    again = _losses(_trainer(faces, arch, device="cuda", cuda_graph=True, compile=compiled))
    np.testing.assert_array_equal(first, again)


@cuda
def test_graph_run_resumes_with_its_learning_rate_on_the_device(faces):
    whole = _trainer(faces, device="cuda", cuda_graph=True, epochs=3)
    expected = _losses(whole)
    half = _trainer(faces, device="cuda", cuda_graph=True, epochs=3)
    half.config = replace(half.config, epochs=1)
    half.fit()
    state = half.state_dict()
    resumed = _trainer(faces, device="cuda", cuda_graph=True, epochs=3)
    resumed.load_state_dict(state)
    assert all(torch.is_tensor(g["lr"]) for g in resumed.optimizer.param_groups)
    rest = _losses(resumed)
    assert rest.shape == (3, 4)
    np.testing.assert_allclose(rest[1:, 0], expected[1:, 0], rtol=0.02)
