"""Saliency maps: shapes and range, maps that find a known pattern, the model left untouched, and
saliency beside predictions from many threads on the shipped model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from fer_core.inference import to_input
from fer_core.models.checkpoint import DEFAULT_CHECKPOINT
from fer_core.models.networks import ARCHITECTURES, FerNet, build_model
from fer_core.predict import Predictor
from fer_core.saliency import grad_cam, occlusion, saliency_map

MEAN, STD = 0.5, 0.25
BRIGHT, DARK = 3, 4  # the classes the pattern model's two detectors drive
METHODS = {
    "default": saliency_map,
    "gradcam_last": lambda *a, **k: grad_cam(*a, size=0, **k),
    "gradcam_24": lambda *a, **k: grad_cam(*a, size=24, **k),
    "gradcampp": lambda *a, **k: grad_cam(*a, plus=True, **k),
    "occlusion": occlusion,
}


def pattern_model() -> FerNet:
    """A hand-set network: channel 0 fires on bright pixels, channel 1 on dark ones; class BRIGHT
    reads channel 0 and class DARK channel 1 (48 -> 24 -> 12 -> 6 pixels, global pooling)."""
    detect = nn.Conv2d(1, 2, 3, padding=1)
    mix = nn.Conv2d(2, 2, 1, bias=False)
    head = nn.Linear(2, 7)
    with torch.no_grad():
        detect.weight.zero_()
        detect.weight[0, 0, 1, 1], detect.weight[1, 0, 1, 1] = 1.0, -1.0
        detect.bias.fill_(-1.0)  # normalised input: mid grey 0, white +2, black -2
        mix.weight.copy_(torch.eye(2)[:, :, None, None])
        head.weight.zero_()
        head.bias.zero_()
        head.weight[BRIGHT, 0] = head.weight[DARK, 1] = 40.0
    features = nn.Sequential(detect, nn.ReLU(), nn.MaxPool2d(2), mix, nn.ReLU(), nn.MaxPool2d(2),
                             nn.MaxPool2d(2))  # fmt: skip
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return FerNet(features, pool).eval()


def pattern_face() -> np.ndarray:
    """Mid grey with a bright square top left and a dark square bottom right."""
    face = np.full((48, 48), 128, np.uint8)
    face[4:14, 6:16] = 255
    face[32:42, 30:40] = 0
    return face


def mass_in(cam: np.ndarray, rows: slice, cols: slice) -> float:
    return float(cam[rows, cols].sum() / max(cam.sum(), 1e-12))


@pytest.mark.parametrize("name", METHODS)
def test_maps_find_the_pattern_that_drives_each_class(name):
    method = METHODS[name]
    model = pattern_model()
    faces = np.stack([pattern_face(), np.fliplr(pattern_face())])
    bright = method(model, faces, MEAN, STD, target=[BRIGHT, BRIGHT])
    dark = method(model, faces, MEAN, STD, target=DARK)  # one class for every face
    near_bright, near_dark = (slice(0, 18), slice(2, 20)), (slice(28, 46), slice(26, 44))
    assert mass_in(bright[0], *near_bright) > 0.6, name
    assert mass_in(dark[0], *near_dark) > 0.6, name
    # the mirrored face moves the bright square to the top right: the map follows it
    assert mass_in(bright[1], slice(0, 18), slice(28, 46)) > 0.6, name
    rows, cols = np.mgrid[0:48, 0:48]
    centre = [(bright[0] * axis).sum() / bright[0].sum() for axis in (rows, cols)]
    assert abs(centre[0] - 8.5) < 4 and abs(centre[1] - 10.5) < 4, (name, centre)


@pytest.mark.parametrize("name", METHODS)
def test_maps_have_the_faces_shape_and_lie_in_0_1(name):
    method = METHODS[name]
    torch.manual_seed(0)
    model = build_model("small", width=4).eval()
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    cams = method(model, faces, MEAN, STD)
    assert cams.shape == (3, 48, 48) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    peaks = cams.reshape(3, -1).max(1)  # each map scaled to its peak (0: nothing raised the class)
    assert peaks.any() and np.all(np.isclose(peaks, 1.0) | (peaks == 0)), peaks
    assert method(model, faces[:0], MEAN, STD).shape == (0, 48, 48)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_gets_a_map(arch):
    """Sequential features of any kind (pools, strided blocks, unpadded convs, grouped branches)
    give a 12x12 map to read, or the last one."""
    torch.manual_seed(0)
    model = build_model(arch, **({"width": 8} if arch.startswith(("fer_", "small")) else {}))
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    cams = saliency_map(model.eval(), faces, MEAN, STD)
    assert cams.shape == (2, 48, 48) and np.isfinite(cams).all() and cams.max() == 1.0


def test_a_face_without_evidence_gives_an_empty_map_not_nan():
    flat = np.full((1, 48, 48), 128, np.uint8)  # the pattern model sees nothing in plain grey
    for name, method in METHODS.items():
        cam = method(pattern_model(), flat, MEAN, STD, target=BRIGHT)
        assert np.isfinite(cam).all() and cam.max() == 0, name


def test_default_target_is_the_predicted_class():
    torch.manual_seed(0)
    model = build_model("small", width=4).eval()
    faces = np.random.default_rng(1).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    with torch.no_grad():
        predicted = model(to_input(torch.from_numpy(faces), MEAN, STD)).argmax(1).numpy()
    np.testing.assert_allclose(
        grad_cam(model, faces, MEAN, STD), grad_cam(model, faces, MEAN, STD, predicted)
    )
    other = (predicted + 1) % 7
    assert not np.allclose(
        grad_cam(model, faces, MEAN, STD), grad_cam(model, faces, MEAN, STD, other)
    )


@pytest.mark.parametrize("training", [False, True])
def test_saliency_leaves_the_model_as_it_was(training):
    """No mode switch, no BatchNorm statistics updated, nothing accumulated into a parameter's
    gradient: what another thread computes on a shared model cannot change."""
    torch.manual_seed(0)
    model = build_model("small", width=4).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    accumulated = []
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda p: accumulated.append(p))
    faces = np.random.default_rng(2).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    for method in METHODS.values():
        method(model, faces, MEAN, STD)
    assert model.training is training
    assert not accumulated and all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# ----------------------------------------------------------------------------- shipped model


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def faces(csv_data) -> np.ndarray:
    return csv_data.split("public_test").images[:16]


def test_shipped_model_maps_differ_from_face_to_face(predictor, faces):
    """The 6x6 last map gave nearly the same blob on every face; the default map follows each."""
    cams = predictor.saliency(faces).reshape(len(faces), -1)
    corr = np.corrcoef(cams)[~np.eye(len(faces), dtype=bool)]
    assert corr.mean() < 0.6, corr.mean()


def test_greying_the_salient_square_costs_more_than_a_random_one(predictor, faces):
    """The deletion check of bench/saliency.py: the 12x12 square of most saliency carries more
    of the predicted class than random 12x12 squares."""
    probs = predictor.probabilities(faces, tta="none", calibrated=False)
    classes = probs.argmax(1)
    cams = torch.from_numpy(predictor.saliency(faces, classes))[:, None]
    window = torch.nn.functional.avg_pool2d(cams, 12, stride=1)[:, 0]  # (N, 37, 37)
    peaks = np.stack(np.divmod(window.flatten(1).argmax(1).numpy(), 37), axis=1)
    rng = np.random.default_rng(0)

    def drop(corners: np.ndarray) -> np.ndarray:
        edited = faces.copy()
        for face, (r, c) in zip(edited, corners):
            face[r : r + 12, c : c + 12] = 128
        after = predictor.probabilities(edited, tta="none", calibrated=False)
        return probs[np.arange(len(faces)), classes] - after[np.arange(len(faces)), classes]

    salient = drop(peaks)
    random = np.mean([drop(rng.integers(0, 37, (len(faces), 2))) for _ in range(4)], axis=0)
    assert salient.mean() > 1.5 * random.mean(), (salient.mean(), random.mean())


def test_saliency_beside_predictions_from_many_threads(predictor, faces):
    """Saliency (through the predictor, and straight on its shared model) from several threads
    at once beside predictions: no error, and every result equals the single-threaded one."""
    crops = faces[:8]
    want_maps = predictor.saliency(crops)
    want_probs = predictor.probabilities(crops)
    model, ckpt = predictor.ckpt.model, predictor.ckpt
    jobs = (
        [("maps", lambda: predictor.saliency(crops))] * 4
        + [("maps", lambda: saliency_map(model, crops, ckpt.mean, ckpt.std))] * 2
        + [("probs", lambda: predictor.probabilities(crops))] * 2
    )
    start = threading.Barrier(len(jobs))
    results, errors = [], []

    def work(kind, job) -> None:
        start.wait()
        try:
            for _ in range(3):
                results.append((kind, job()))
        except Exception as exc:  # reported by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(results) == 3 * len(jobs)
    for kind, got in results:
        want = want_maps if kind == "maps" else want_probs
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=kind)
