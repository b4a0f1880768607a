"""Trainer: smoke run on real images, learning, stop within a batch, resume, repeatability."""

import copy
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from fer_core.data.augment import AugmentConfig
from fer_core.errors import CheckpointError
from fer_core.models.networks import build_model, member_state_dict
from fer_core.training.config import TrainConfig
from fer_core.training.recipes import get_recipe, with_overrides
from fer_core.training.runs import DataSelection, list_runs, read_run, select_data, train_run
from fer_core.training.trainer import Callback, Trainer, seed_everything

FAST = TrainConfig(epochs=2, batch_size=32, lr=3e-3, augment=AugmentConfig.none(), device="cpu")


def _subset(data, n, seed=0):
    x, y, vx, vy = select_data(data, DataSelection(limit=n, seed=seed))
    return x, y, vx[:200], vy[:200]


class Recorder(Callback):
    def __init__(self, stop_after_batches=None):
        self.batches, self.epochs, self.stop_after = [], [], stop_after_batches

    def on_batch_end(self, trainer, progress):
        self.batches.append(progress)
        if self.stop_after and len(self.batches) >= self.stop_after:
            trainer.request_stop()

    def on_epoch_end(self, trainer, metrics):
        self.epochs.append(metrics)


def test_smoke_run_on_real_images(csv_data):
    x, y, vx, vy = _subset(csv_data, 320)
    rec = Recorder()
    result = Trainer(build_model("small"), FAST, x, y, vx, vy, [rec]).fit()
    assert len(result.history) == 2 and len(rec.epochs) == 2
    assert rec.batches[-1].batch == rec.batches[-1].batches == 10
    assert all(np.isfinite([m.train_loss, m.val_loss, m.val_acc]).all() for m in result.history)
    assert result.best_epoch in (1, 2) and not result.stopped


def test_loss_falls_on_a_tiny_subset(csv_data):
    """A model must be able to fit 64 real faces: the training loss falls clearly.

    Seeded before the model is built: its initial weights came from whatever random state the
    tests before it left, and on some of them the eval-mode check scored 0.39 against a train
    accuracy of 0.98 (BatchNorm's running statistics lag the weights on 4 batches an epoch)."""
    x, y, _, _ = _subset(csv_data, 64)
    cfg = replace(FAST, epochs=25, batch_size=16, lr=3e-3, scheduler="none")
    seed_everything(0)
    result = Trainer(build_model("small"), cfg, x, y, x, y).fit()
    assert result.history[-1].train_loss < 0.6 * result.history[0].train_loss
    assert result.history[-1].val_acc > 0.5  # validated on the same 64 images


def test_stop_is_honoured_within_one_batch(csv_data):
    x, y, vx, vy = _subset(csv_data, 640)
    rec = Recorder(stop_after_batches=3)
    result = Trainer(build_model("small"), replace(FAST, epochs=5), x, y, vx, vy, [rec]).fit()
    assert result.stopped and len(rec.batches) == 3 and result.history == []


def test_seeded_runs_repeat_exactly(csv_data):
    x, y, vx, vy = _subset(csv_data, 128)
    cfg = replace(FAST, augment=AugmentConfig.strong(), mixup_alpha=0.2, cutmix_alpha=1.0)
    seed_everything(cfg.seed)
    a = Trainer(build_model("small"), cfg, x, y, vx, vy).fit().history
    seed_everything(cfg.seed)
    b = Trainer(build_model("small"), cfg, x, y, vx, vy).fit().history
    assert [m.train_loss for m in a] == [m.train_loss for m in b]
    assert [m.val_acc for m in a] == [m.val_acc for m in b]


@pytest.mark.parametrize(
    "optimizer, scheduler",
    [("sgd", "plateau"), ("adam", "onecycle"), ("adamw", "cosine"), ("sgd", "none")],
)
def test_optimizers_and_schedulers_run(csv_data, optimizer, scheduler):
    x, y, vx, vy = _subset(csv_data, 96)
    cfg = replace(
        FAST,
        optimizer=optimizer,
        scheduler=scheduler,
        ema_decay=0.9,
        class_weights=(1.0,) * 7,
        label_smoothing=0.1,
    )
    result = Trainer(build_model("small"), cfg, x, y, vx, vy).fit()
    assert len(result.history) == 2 and result.history[0].lr > 0


def test_weight_average_of_a_network_without_buffers(csv_data):
    """The EMA copies a network's buffers (batch-norm statistics) each step; a network with
    none (the seed CNN without batch norm) averages its weights all the same."""
    x, y, vx, vy = _subset(csv_data, 64)
    model = build_model("seed_cnn3_colab")
    assert list(model.buffers()) == []
    trainer = Trainer(model, replace(FAST, epochs=1, ema_decay=0.9), x, y, vx, vy)
    trainer.fit()
    assert trainer.ema is not None
    moved = [not torch.equal(a, p) for a, p in zip(trainer.ema.parameters(), model.parameters())]
    assert any(moved)  # an average of the steps' weights, not the last weights


def test_early_stopping(csv_data):
    x, y, vx, vy = _subset(csv_data, 64)
    cfg = replace(FAST, epochs=30, lr=1e-9, early_stopping=2, monitor="val_loss")
    result = Trainer(build_model("small"), cfg, x, y, vx, vy).fit()
    assert result.early_stopped and len(result.history) < 30


def test_run_folder_resume_reaches_same_epoch_count(csv_data, tmp_path):
    recipe = with_overrides(get_recipe("cpu_default"), epochs=3, device="cpu")
    stopper = Recorder(stop_after_batches=None)

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, metrics):
            trainer.request_stop()

    sel = DataSelection(limit=200)
    best, first = train_run(csv_data, recipe, tmp_path / "run", sel, [StopAfterFirstEpoch()])
    assert first.stopped and len(first.history) == 1 and best.exists()
    summary = read_run(tmp_path / "run")
    assert summary.status == "stopped" and summary.epochs_done == 1
    _, second = train_run(csv_data, recipe, tmp_path / "run", sel, [stopper])
    assert len(second.history) == 3 and len(stopper.epochs) == 2  # resumed at epoch 2
    assert read_run(tmp_path / "run").status == "finished"
    assert [r.name for r in list_runs(tmp_path)] == ["run"]


def test_epoch_writer_writes_in_order_and_merges_epochs_that_wait():
    """While epoch 1 is being written, epochs 2 (a best) and 3 (not) end: 3 replaces 2 in the
    waiting slot but keeps 2's best checkpoint, so the files end as epoch 3's with best 2."""
    from fer_core.training.runs import _EpochFiles, _EpochWriter

    written, entered, release = [], threading.Event(), threading.Event()

    def write(files):
        entered.set()
        release.wait(10)
        written.append((files.epoch, files.best))

    writer = _EpochWriter(write)
    writer.submit(_EpochFiles({"epoch": 1}, {}, [], 1, 1))
    assert entered.wait(10)  # the writer holds epoch 1
    writer.submit(_EpochFiles({"epoch": 2}, {}, [], 2, 2))
    writer.submit(_EpochFiles(None, {}, [], 3, 2))
    release.set()
    writer.flush()
    assert written == [(1, {"epoch": 1}), (3, {"epoch": 2})]
    writer.submit(_EpochFiles(None, {}, [], 4, 2))  # a new thread once the last one ended
    writer.flush()
    assert written[-1] == (4, None)


def test_a_failed_epoch_write_is_raised_in_the_training_thread():
    from fer_core.training.runs import _EpochFiles, _EpochWriter

    def write(files):
        raise OSError(28, "No space left on device")

    writer = _EpochWriter(write)
    writer.submit(_EpochFiles(None, {}, [], 1, 1))
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    writer.flush()  # raised once


def test_on_the_cpu_an_epoch_is_on_disk_before_anyone_hears_of_it(csv_data, tmp_path):
    """What the app and the CLI show of a CPU run (their callbacks come after the recorder) is
    already written: a server killed right after showing an epoch keeps it."""
    recipe = with_overrides(get_recipe("cpu_default"), epochs=2, device="cpu")
    seen_on_disk = []

    class ReadsTheFolder(Callback):
        def on_epoch_end(self, trainer, metrics):
            seen_on_disk.append((metrics.epoch, read_run(tmp_path / "run").epochs_done))

    train_run(csv_data, recipe, tmp_path / "run", DataSelection(limit=200), [ReadsTheFolder()])
    assert seen_on_disk == [(1, 1), (2, 2)]


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
        ),
    ],
)
def test_the_state_written_is_the_epoch_that_ended(request, tmp_path, monkeypatch, device):
    """Written in the background (as on a GPU), the state is copied when its epoch ends: training
    on while it is written does not change what lands on disk (each epoch's weights, as the
    trainer had them then). On a GPU the copy is made there and moved to the CPU by the writer,
    on a stream of its own."""
    from fer_core.models.checkpoint import safe_torch_load
    from fer_core.training import runs

    recipe = with_overrides(get_recipe("cpu_default"), epochs=2, device=device)
    data = request.getfixturevalue("zip_data" if device == "cuda" else "csv_data")
    at_end, writes, epoch_2_trains = {}, [], threading.Event()

    class Snapshot(Callback):
        def on_batch_end(self, trainer, progress):
            if progress.epoch == 2:
                epoch_2_trains.set()

        def on_epoch_end(self, trainer, metrics):
            at_end[metrics.epoch] = runs.copy_tensors(trainer.model.state_dict(), "cpu")

    original = runs.RunRecorder._write

    def checking_write(self, files):
        writes.append(files.epoch)
        if files.epoch == 1:  # written only once epoch 2 has changed the weights
            assert epoch_2_trains.wait(60)
        original(self, files)
        if files.epoch == 1:
            state = safe_torch_load(tmp_path / "run" / "state.pt")
            for key, value in at_end[1].items():
                assert torch.equal(state["model"][key], value), key

    monkeypatch.setattr(runs.RunRecorder, "_write", checking_write)
    monkeypatch.setattr(runs.RunRecorder, "BACKGROUND_DEVICES", ("cuda", "cpu"))
    train_run(data, recipe, tmp_path / "run", DataSelection(limit=200), [Snapshot()])
    state = safe_torch_load(tmp_path / "run" / "state.pt")
    assert state["epoch"] == 2 and 2 in writes
    for key, value in at_end[2].items():
        assert torch.equal(state["model"][key], value), key
    assert read_run(tmp_path / "run").epochs_done == 2


def test_validation_leaves_convolutions_to_cudnn_heuristics(csv_data, monkeypatch):
    """`cudnn_benchmark` times the training step's convolutions; validation's two batch shapes
    are not timed (on an H200 that took 3.3 s of the first epoch), even when the process has the
    setting on, and the setting is as the process had it after the run."""
    from fer_core.training import trainer as trainer_module

    during_validation = []
    predict = trainer_module.predict_logits

    def recording(*args, **kwargs):
        during_validation.append(torch.backends.cudnn.benchmark)
        return predict(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "predict_logits", recording)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    x, y, vx, vy = _subset(csv_data, 96)
    Trainer(build_model("small"), replace(FAST, epochs=2), x, y, vx, vy).fit()
    assert during_validation == [False, False]
    assert torch.backends.cudnn.benchmark


def test_cudnn_benchmark_holds_during_the_steps_only(csv_data, monkeypatch):
    """The setting is process-wide: a run switches it on for its steps and leaves it as it found
    it, for callbacks, validation and whatever the process does after the run."""
    during_steps, between_steps = [], []
    step = Trainer._step

    def recording(self, *args):
        during_steps.append(torch.backends.cudnn.benchmark)
        return step(self, *args)

    class Between(Callback):
        def on_batch_end(self, trainer, progress):
            between_steps.append(torch.backends.cudnn.benchmark)

    monkeypatch.setattr(Trainer, "_step", recording)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    x, y, vx, vy = _subset(csv_data, 96)
    config = replace(FAST, epochs=2, cudnn_benchmark=True)
    Trainer(build_model("small"), config, x, y, vx, vy, callbacks=[Between()]).fit()
    assert during_steps and all(during_steps)
    assert between_steps and not any(between_steps)
    assert not torch.backends.cudnn.benchmark


def test_config_round_trip():
    cfg = get_recipe("shipped").config
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        TrainConfig(optimizer="lbfgs")


def test_no_cuda_needed():
    assert Trainer is not None and torch.device("cpu")


def test_sam_step_takes_the_gradient_at_the_perturbed_weights(csv_data):
    """One SAM step by hand (SGD without momentum, one full batch) equals the trainer's step."""
    x, y, _, _ = _subset(csv_data, 64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, stride=4), torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 7)
    )
    w0 = [p.detach().clone() for p in model.parameters()]
    cfg = replace(
        FAST, epochs=1, batch_size=64, optimizer="sgd", momentum=0.0, nesterov=False, lr=0.5,
        weight_decay=0.0, scheduler="none", sam_rho=0.5, amp=False, channels_last=False,
    )  # fmt: skip
    trainer = Trainer(model, cfg, x, y, x, y)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))  # what fit() draws
    inputs, targets = trainer._batch_input(order), trainer.y_train[order]

    reference = copy.deepcopy(model)
    with torch.no_grad():
        for p, w in zip(reference.parameters(), w0):
            p.copy_(w)
    loss = torch.nn.functional.cross_entropy(reference(inputs), targets)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(reference.parameters(), grads):
            p.add_(g * 0.5 / norm)
    loss = torch.nn.functional.cross_entropy(reference(inputs), targets)
    sharp = torch.autograd.grad(loss, list(reference.parameters()))
    expected = [w - 0.5 * g for w, g in zip(w0, sharp)]
    plain = [w - 0.5 * g for w, g in zip(w0, grads)]

    trainer.fit()
    got = list(model.parameters())
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, expected))
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, plain))


def test_self_distillation_loss_is_the_hand_computed_mix(csv_data):
    """distill=a, temperature T: (1 - a) * CE + a * T^2 * KL(EMA teacher || student), at T."""
    x, y, _, _ = _subset(csv_data, 32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, stride=4), torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 7)
    )
    cfg = replace(
        FAST, epochs=1, batch_size=32, ema_decay=0.9, distill=0.4, distill_temperature=3.0,
        amp=False, channels_last=False, label_smoothing=0.0,
    )  # fmt: skip
    trainer = Trainer(model, cfg, x, y, x, y)
    with torch.no_grad():  # a teacher that differs from the student
        for p in trainer.ema.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    inputs, targets = trainer._batch_input(torch.arange(32)), trainer.y_train[:32]
    _, loss, _ = trainer._loss(inputs, targets)

    student, teacher = model(inputs), trainer.ema(inputs)
    hard = torch.nn.functional.cross_entropy(student, targets)
    p_teacher = torch.softmax(teacher / 3.0, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / 3.0, -1))).sum(-1).mean()
    assert torch.allclose(loss, 0.6 * hard + 0.4 * 9.0 * kl, atol=1e-5)
    assert kl > 1e-4  # the teacher term is not trivially zero here
    loss.backward()  # the gradient flows into the student only
    assert all(p.grad is None for p in trainer.ema.parameters())


def test_distillation_needs_its_teacher():
    x = np.zeros((4, 48, 48), np.uint8)
    y = np.arange(4) % 2
    with pytest.raises(ValueError, match="needs a teacher"):
        Trainer(build_model("small"), replace(FAST, distill=0.5, ema_decay=0.0), x, y, x, y)


def _kl(teacher_probs, student_logits, t):
    return (
        (teacher_probs * (teacher_probs.log() - torch.log_softmax(student_logits / t, -1)))
        .sum(-1)
        .mean()
    )


def test_peer_distillation_loss_is_the_hand_computed_mix(csv_data):
    """peers=2, distill=a, temperature T: the model's loss is (1 - a) * CE + a * T^2 * KL(mean
    of the peers' softened predictions || model), each peer adds its own CE, and the weights
    that are validated and saved are the model's own, as a plain network."""
    x, y, _, _ = _subset(csv_data, 64)
    torch.manual_seed(0)
    cfg = replace(
        FAST, epochs=1, batch_size=32, peers=2, distill=0.3, distill_temperature=2.0,
        amp=False, channels_last=False, label_smoothing=0.0, ema_decay=0.9,
    )  # fmt: skip
    trainer = Trainer(build_model("fer_vgg", width=8), cfg, x, y, x, y)
    grouped = trainer.model
    nets = []
    for i in range(3):
        net = build_model("fer_vgg", width=8)
        net.load_state_dict(member_state_dict(grouped, i, net))
        nets.append(net.train())
    inputs, targets = trainer._batch_input(torch.arange(32)), trainer.y_train[:32]
    grouped.eval()  # no dropout, so the grouped and the separate passes must agree
    for net in nets:
        net.eval()
    logits, loss, shown = trainer._loss(inputs, targets)
    out = [net(inputs) for net in nets]
    ce = [torch.nn.functional.cross_entropy(o, targets) for o in out]
    teacher = torch.stack([torch.softmax(o / 2.0, -1) for o in out[1:]]).mean(0)
    own = 0.7 * ce[0] + 0.3 * 4.0 * _kl(teacher, out[0], 2.0)
    assert torch.allclose(logits, out[0], atol=1e-5)
    assert torch.allclose(shown, own, atol=1e-5)
    assert torch.allclose(loss, own + ce[1] + ce[2], atol=1e-5)

    trainer.fit()
    saved = trainer.eval_model  # the model's member of the EMA weights, as a plain fer_vgg
    assert type(saved).__name__ == "FerNet" and len(saved.state_dict()) == len(nets[0].state_dict())
    expected = member_state_dict(trainer.ema, 0, nets[0])
    assert all(torch.equal(saved.state_dict()[k], v) for k, v in expected.items())


def test_branched_loss_sums_the_branches_and_reports_their_mean(csv_data):
    x, y, _, _ = _subset(csv_data, 64)
    torch.manual_seed(0)
    cfg = replace(FAST, batch_size=32, amp=False, channels_last=False, label_smoothing=0.1)
    model = build_model("fer_vgg", width=8, branches=3)
    trainer = Trainer(model, cfg, x, y, x, y)
    model.eval()  # no dropout: the two forward passes below must agree
    inputs, targets = trainer._batch_input(torch.arange(32)), trainer.y_train[:32]
    logits, loss, shown = trainer._loss(inputs, targets)
    branches = model.forward_branches(inputs)
    ce = sum(
        torch.nn.functional.cross_entropy(branches[:, i], targets, label_smoothing=0.1)
        for i in range(3)
    )
    assert torch.allclose(loss, ce, atol=1e-5) and torch.allclose(shown, ce / 3, atol=1e-5)
    assert torch.allclose(logits.exp(), branches.softmax(-1).mean(1), atol=1e-5)


def test_branched_network_trains_saves_and_loads(csv_data, tmp_path):
    from fer_core.models.checkpoint import load_checkpoint

    recipe = with_overrides(get_recipe("shipped"), epochs=1, device="cpu", amp=False)
    best, result = train_run(
        csv_data, recipe, tmp_path / "run", DataSelection(limit=256), arch_kwargs={"width": 8,
        "branches": 2},
    )  # fmt: skip
    ckpt = load_checkpoint(best)
    assert ckpt.arch_kwargs == {"width": 8, "branches": 2}
    assert type(ckpt.model).__name__ == "GroupedNet" and len(result.history) == 1
    assert np.isfinite(result.history[0].train_loss)


def test_peers_need_a_plain_network():
    x = np.zeros((4, 48, 48), np.uint8)
    y = np.arange(4) % 2
    cfg = replace(FAST, peers=1, distill=0.5)
    with pytest.raises(ValueError, match="plain network"):
        Trainer(build_model("fer_vgg", width=8, branches=2), cfg, x, y, x, y)
    with pytest.raises(ValueError, match="need distill"):
        replace(FAST, peers=1)


def test_one_hot_soft_labels_train_exactly_like_hard_labels(csv_data):
    """Soft labels are the loss's target: one-hot rows must give the hard-label run's losses;
    accuracy is still counted on the hard labels."""
    x, y, vx, vy = _subset(csv_data, 192)
    config = replace(FAST, epochs=1, label_smoothing=0.1)
    seed_everything(0)
    hard = Trainer(build_model("small"), config, x, y, vx, vy).fit()
    seed_everything(0)
    onehot = np.eye(7, dtype=np.float32)[y]
    soft = Trainer(build_model("small"), config, x, y, vx, vy, train_targets=onehot).fit()
    assert soft.history[0].train_loss == pytest.approx(hard.history[0].train_loss, rel=1e-5)
    assert soft.history[0].val_acc == pytest.approx(hard.history[0].val_acc, abs=1e-6)
    with pytest.raises(ValueError, match="one row"):
        Trainer(build_model("small"), config, x, y, vx, vy, train_targets=onehot[:10])


def test_fine_tuning_starts_from_the_checkpoint_and_records_soft_labels(csv_data, tmp_path):
    from conftest import FERPLUS_PATH

    from fer_core.models.checkpoint import load_checkpoint

    start = load_checkpoint("checkpoints/fer_model_fast.pt")
    recipe = with_overrides(get_recipe("shipped_fast"), epochs=1, device="cpu", lr=1e-4)
    selection = DataSelection(limit=128, ferplus=str(FERPLUS_PATH), ferplus_weight=0.3)
    train_run(csv_data, recipe, tmp_path / "ft", selection, init=start)
    record = read_run(tmp_path / "ft").record
    assert record["init"] == "fer_model_fast"
    assert record["soft_labels"] == {"ferplus": str(FERPLUS_PATH), "weight": 0.3}
    # one epoch at a tiny learning rate from the shipped weights stays near them; random
    # weights would score near chance on the same validation images
    assert read_run(tmp_path / "ft").best_val_acc > 0.5
    stage1 = load_checkpoint(tmp_path / "ft" / "best.pt").extra["init"]  # the starting point
    assert stage1["checkpoint"] == "fer_model_fast"
    assert stage1["train_config"] == start.train_config and stage1["init"] == start.extra["init"]
    wrong = load_checkpoint("checkpoints/fer_model.pt")
    with pytest.raises(CheckpointError, match="not the run's"):
        train_run(csv_data, recipe, tmp_path / "ft2", DataSelection(limit=64), init=wrong)


def test_every_training_setting_is_a_cli_flag():
    """The train command's flags come from TrainConfig and AugmentConfig: each field is one flag,
    a given flag overrides the recipe, the rest keep the recipe's values."""
    from dataclasses import fields

    from fer_core.cli.main import build_parser
    from fer_core.cli.train import recipe_from_args
    from fer_core.data.augment import AugmentConfig

    parser = build_parser()
    argv = ["train", "--data", "x.csv", "--recipe", "shipped", "--ema", "0.99", "--no-amp",
            "--warmup-epochs", "2", "--aug-rotation", "5", "--aug-scale", "0.8", "1.2"]  # fmt: skip
    recipe, arch_kwargs, init = recipe_from_args(parser.parse_args(argv))
    config, shipped = recipe.config, get_recipe("shipped").config
    assert (config.ema_decay, config.amp, config.warmup_epochs) == (0.99, False, 2.0)
    assert (config.augment.rotation, config.augment.scale) == (5.0, (0.8, 1.2))
    assert config.epochs == shipped.epochs and config.lr == shipped.lr
    assert config.augment.erasing == shipped.augment.erasing
    assert arch_kwargs == {} and init is None and recipe.arch_kwargs == {"branches": 4}
    dests = {action.dest for action in train_parser(parser)._actions}
    settings = {f.name for f in fields(TrainConfig)} - {"augment", "class_weights"}
    assert settings <= dests
    assert {"aug_" + f.name for f in fields(AugmentConfig)} <= dests


def train_parser(parser):
    """The `train` subcommand's parser."""
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]
