"""int8 CPU inference (fer_core/models/quantize.py): the record, its round trip through a file,
agreement with the fp32 network on real faces, and every way it falls back or refuses."""

import numpy as np
import pytest
import torch

from fer_core.errors import CheckpointError
from fer_core.inference import predict_proba
from fer_core.models import quantize
from fer_core.models.checkpoint import FAST_CHECKPOINT, load_checkpoint, save_checkpoint
from fer_core.predict import Predictor

pytestmark = pytest.mark.skipif(
    quantize.unavailable() is not None, reason=f"no int8 engine here: {quantize.unavailable()}"
)


def _resave(ckpt, path, int8):
    save_checkpoint(path, ckpt.model, ckpt.arch, ckpt.arch_kwargs, mean=ckpt.mean, std=ckpt.std,
                    classes=ckpt.classes, calibration=ckpt.calibration, int8=int8)  # fmt: skip
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def faces(csv_data):
    return csv_data.split("public_test").images[:600], csv_data.split("train").images


def test_record_survives_a_file_and_int8_agrees_with_fp32_on_real_faces(tmp_path, faces):
    test, train = faces
    fp32 = load_checkpoint(FAST_CHECKPOINT)
    record = quantize.calibrate(fp32.model, train, fp32.mean, fp32.std, faces=256)
    assert record["faces"] == 256 and record["engine"] == quantize.ENGINE
    blocks = quantize._blocks(fp32.model)
    assert len(record["activations"]) == len(blocks)  # a scale and zero point per conv block
    assert all(
        (a is None) == (not isinstance(b, tuple)) for a, b in zip(record["activations"], blocks)
    )
    direct = quantize.int8_model(fp32.model, record)
    loaded = _resave(fp32, tmp_path / "q.pt", record)
    assert loaded.precision() == "int8" and loaded.precision("fp32") == "fp32"
    from_file = loaded.inference_model()
    assert from_file is loaded.inference_model()  # built once per checkpoint
    p_direct = predict_proba(direct, test, fp32.mean, fp32.std, tta="flip")
    p_file = predict_proba(from_file, test, fp32.mean, fp32.std, tta="flip")
    np.testing.assert_array_equal(p_direct, p_file)
    p_fp32 = predict_proba(fp32.model, test, fp32.mean, fp32.std, tta="flip")
    agree = (p_file.argmax(1) == p_fp32.argmax(1)).mean()
    assert agree >= 0.95, agree
    assert np.abs(p_file - p_fp32).max() < 0.5
    assert not np.allclose(p_file, p_fp32, atol=1e-4)  # it is a different network


def test_first_block_and_head_stay_fp32_and_the_head_is_shared():
    fp32 = load_checkpoint(FAST_CHECKPOINT)
    int8 = fp32.inference_model("int8")
    assert int8.first_weight.dtype == torch.float32  # the first block: fp32, batch norm folded
    quantized = [m for m in int8.body if ".quantized." in type(m).__module__]
    assert len(quantized) == sum(isinstance(b, tuple) for b in quantize._blocks(fp32.model)) - 1
    assert not any(p is q for p in int8.parameters() for q in fp32.model.head.parameters())
    assert int8._fp32[0] is fp32.model  # the fp32 head runs, shared, not copied


def test_other_architectures_are_refused_by_calibration_and_run_fp32(tmp_path, faces):
    from fer_core.models.networks import build_model

    resnet = build_model("fer_resnet").eval()
    with pytest.raises(ValueError, match="VGG-style"):
        quantize.calibrate(resnet, faces[1], 0.5, 0.25, faces=64)


def test_a_file_without_a_record_runs_fp32_and_int8_is_refused_with_the_reason(tmp_path):
    fp32 = load_checkpoint(FAST_CHECKPOINT)
    bare = _resave(fp32, tmp_path / "bare.pt", {})
    assert bare.precision() == "fp32" and bare.inference_model() is bare.model
    with pytest.raises(CheckpointError, match=r"no int8 record.*finalize"):
        bare.inference_model("int8")
    with pytest.raises(CheckpointError, match="no int8 record"):
        Predictor(bare, precision="int8")
    with pytest.raises(CheckpointError, match="unknown precision"):
        bare.inference_model("int4")


def test_a_record_that_does_not_fit_falls_back_to_fp32(tmp_path):
    fp32 = load_checkpoint(FAST_CHECKPOINT)
    broken = {**fp32.int8, "activations": fp32.int8["activations"][:-1]}  # one block short
    bad = _resave(fp32, tmp_path / "bad.pt", broken)
    predictor = Predictor(bad)
    assert predictor.precision == "fp32" and predictor.model is bad.model
    with pytest.raises(CheckpointError, match="does not fit"):
        bad.inference_model("int8")
    unknown = _resave(fp32, tmp_path / "unknown.pt", {"format": 99, "activations": []})
    assert unknown.precision() == "fp32"
    wild = [[1e9, 0] if a else a for a in fp32.int8["activations"]]  # a scale out of range
    assert (
        _resave(fp32, tmp_path / "wild.pt", {**fp32.int8, "activations": wild}).precision()
        == "fp32"
    )


def test_auto_is_fp32_where_no_engine_or_not_a_cpu(monkeypatch):
    assert quantize.resolve_precision("auto", torch.device("cuda"), True) == "fp32"
    with pytest.raises(ValueError, match="CPU only"):
        quantize.resolve_precision("int8", torch.device("cuda"), True)
    monkeypatch.setattr(quantize, "ENGINE", "no-such-engine")
    assert "no no-such-engine int8 engine" in quantize.unavailable()
    fresh = load_checkpoint(FAST_CHECKPOINT)
    assert fresh.precision() == "fp32" and Predictor(fresh).precision == "fp32"


def test_shipped_models_predict_in_int8_and_evaluation_records_it(faces):
    from fer_core.evaluate import compute_metrics

    for path in (None, FAST_CHECKPOINT):
        predictor = Predictor.from_checkpoint(path)
        assert predictor.precision == "int8"
        assert predictor.ckpt.calibration["precision"] == "int8"
    test, _ = faces
    probs = predictor.probabilities(test[:8])
    assert probs.shape == (8, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert compute_metrics(np.zeros(8), probs, precision="int8").precision == "int8"
