"""Checkpoints: round trip, fp16 storage, TorchScript export, and every way a file can be wrong."""

import pickle

import pytest
import torch

from fer_core.errors import CheckpointError
from fer_core.models.checkpoint import export, load_checkpoint, save_checkpoint
from fer_core.models.networks import build_model


def _save(path, arch="small", **kw):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    save_checkpoint(
        path,
        model,
        arch,
        mean=0.5,
        std=0.25,
        metrics={"val_acc": 0.5},
        history=[{"epoch": 1}],
        train_config={"lr": 0.1},
        **kw,
    )
    return model


def test_round_trip(tmp_path):
    model = _save(tmp_path / "m.pt")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(3, 1, 48, 48)
    assert torch.allclose(
        model(x), ckpt.model(x), atol=1e-5
    )  # channels_last: same math, other order
    assert ckpt.classes[0] == "angry" and ckpt.mean == 0.5 and ckpt.std == 0.25
    assert ckpt.metrics == {"val_acc": 0.5} and ckpt.history == [{"epoch": 1}]
    assert ckpt.train_config == {"lr": 0.1} and not ckpt.model.training


def test_half_storage_is_smaller_and_close(tmp_path):
    model = _save(tmp_path / "full.pt", arch="seed_cnn4_fc512")
    _save(tmp_path / "half.pt", arch="seed_cnn4_fc512", half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    x = torch.randn(2, 1, 48, 48)
    assert torch.allclose(model(x), load_checkpoint(tmp_path / "half.pt").model(x), atol=1e-2)


def test_torchscript_export(tmp_path):
    _save(tmp_path / "m.pt")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    out = export(ckpt, tmp_path / "m.ts")
    extra = {"classes.txt": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    x = torch.rand(2, 1, 48, 48) * 255
    probs = scripted(x)
    expected = ckpt.model((x / 255 - 0.5) / 0.25).softmax(-1)
    assert torch.allclose(probs, expected, atol=1e-5)
    assert extra["classes.txt"].decode().split("\n")[3] == "happy"


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/fer_pwned_marker",))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    import os

    marker = "/tmp/fer_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "fer_core.checkpoint", "payload": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not os.path.exists(marker)


def test_wrong_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "text.pt")
    _save(tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save(build_model("small").state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not a fer_core checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")


def test_mismatched_or_incomplete_or_newer(tmp_path):
    _save(tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    for change, message in [
        ({"arch": "fer_resnet"}, "do not fit"),
        ({"arch": "nope"}, "unknown architecture"),
        ({"format_version": 99}, "newer"),
    ]:
        torch.save({**raw, **change}, tmp_path / "x.pt")
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / "x.pt")
    torch.save({k: v for k, v in raw.items() if k != "classes"}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="missing classes"):
        load_checkpoint(tmp_path / "x.pt")


# ----------------------------------------------------------------------------- read without torch


@pytest.mark.parametrize("name", ["fer_model.pt", "fer_model_fast.pt"])
def test_read_info_matches_the_full_load(name):
    from fer_core.lite.checkpoint_info import CHECKPOINT_DIR, read_info

    info, full = read_info(CHECKPOINT_DIR / name), load_checkpoint(CHECKPOINT_DIR / name)
    assert (info.arch, info.num_parameters, info.classes) == (
        full.arch,
        full.num_parameters,
        tuple(full.classes),
    )
    assert info.metrics == full.metrics and info.metrics["public_test"]["accuracy"] > 0.7


def test_read_info_of_a_saved_run_checkpoint(tmp_path):
    from fer_core.lite.checkpoint_info import read_info

    _save(tmp_path / "m.pt")
    info, full = read_info(tmp_path / "m.pt"), load_checkpoint(tmp_path / "m.pt")
    assert (info.arch, info.num_parameters, info.metrics) == (
        "small",
        full.num_parameters,
        full.metrics,
    )


def test_read_info_refuses_code_and_junk(tmp_path):
    """Only the four names a checkpoint needs are resolved: a payload is refused, never run."""
    import io
    import os
    import zipfile

    from fer_core.lite.checkpoint_info import read_info

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"arch": Payload()}))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    buffer = io.BytesIO()
    torch.save({"state_dict": {}}, buffer)  # a zip checkpoint without the fields
    (tmp_path / "bare.pt").write_bytes(buffer.getvalue())
    for name in ("evil.pt", "junk.pt", "bare.pt"):
        with pytest.raises(ValueError):
            read_info(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def test_home_page_path_imports_no_torch():
    """What a cold server runs for Home and the sidebar (dataset, shipped model summary, runs)
    never imports torch: importing it is ~2 s of a cold start (BENCHMARKS.md, section 5)."""
    from conftest import modules_imported_by

    code = (
        "from ui import state; from fer_core.lite.checkpoint_info import "
        "DEFAULT_CHECKPOINT, read_info; from fer_core.lite.run_records import list_runs; "
        "read_info(DEFAULT_CHECKPOINT); list_runs('.')"
    )
    assert modules_imported_by(code, "torch") == []


def test_interpolate_is_the_straight_line_between_two_checkpoints(tmp_path):
    from fer_core.models.checkpoint import interpolate

    _save(tmp_path / "a.pt")
    torch.manual_seed(1)
    other = build_model("small").eval()
    save_checkpoint(tmp_path / "b.pt", other, "small", mean=0.5, std=0.25, extra={"seed": 1},
                    calibration={"temperature": 0.8}, metrics={"val_acc": 0.6})  # fmt: skip
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for alpha in (0.0, 0.3, 1.0):
        mixed = interpolate(a, b, alpha)
        for name, value in mixed.model.state_dict().items():
            if value.is_floating_point():
                expected = (1 - alpha) * sa[name] + alpha * sb[name]
                assert torch.allclose(value, expected, atol=1e-6), name
            else:
                assert torch.equal(value, sb[name]), name
        record = {"start": str(tmp_path / "a.pt"), "end": str(tmp_path / "b.pt"), "alpha": alpha}
        assert mixed.extra == {"seed": 1, "interpolated": record}
        assert mixed.calibration == {} and mixed.metrics == {} and not mixed.model.training
    x = torch.randn(2, 1, 48, 48)
    assert torch.allclose(interpolate(a, b, 1.0).model(x), b.model(x), atol=1e-5)
    assert b.calibration == {"temperature": 0.8}  # the inputs are left as they were


def test_interpolate_refuses_other_networks_and_alphas(tmp_path):
    from fer_core.models.checkpoint import interpolate

    _save(tmp_path / "a.pt")
    _save(tmp_path / "c.pt", arch="seed_cnn4_fc512")
    a, c = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="differ in arch"):
        interpolate(a, c, 0.5)
    with pytest.raises(CheckpointError, match=r"alpha is 1\.5"):
        interpolate(a, a, 1.5)
