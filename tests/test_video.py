"""Video files: the tracker, the analysis on generated clips, bad files, the CLI, the app's jobs.

Clips are generated into tmp_path (tests/clips.py): FER2013 faces (read at run time) moving over a
drawn background, with known ground truth.
"""

from __future__ import annotations

import csv
import gc
import json
from pathlib import Path

import av
import numpy as np
import pytest
from clips import Actor, Clip, crossing, detectable_faces, leave_and_return, score_tracking
from clips import write_clip as write
from conftest import REPO, cli

from fer_core.__main__ import main
from fer_core.errors import VideoError
from fer_core.labels import CLASSES
from fer_core.models.checkpoint import FAST_CHECKPOINT
from fer_core.predict import FacePrediction, FaceSmoother
from fer_core.vision.faces import Box
from fer_core.vision.track import FaceTracker, TrackerConfig
from fer_core.vision.video import (
    CSV_NAME,
    SUMMARY_NAME,
    VIDEO_NAME,
    FrameFaces,
    SummaryBuilder,
    VideoOptions,
    analyse_video,
    csv_header,
    load_faces,
    video_predictor,
)

# ----------------------------------------------------------------------------- the tracker


def face(x: float, y: float, size: int = 100, label: str = "happy") -> FacePrediction:
    probs = {c: float(c == label) for c in CLASSES}
    return FacePrediction(Box(round(x), round(y), size, size), probs, label, np.zeros((48, 48)))


def test_faces_crossing_keep_their_ids_whatever_the_detection_order():
    tracker, rng = FaceTracker(), np.random.default_rng(0)
    for step in range(40):  # A goes right, B left, 20 px apart vertically: they overlap midway
        a, b = face(10 + 5 * step, 50), face(210 - 5 * step, 70)
        order = [(0, a), (1, b)] if step == 0 or rng.random() < 0.5 else [(1, b), (0, a)]
        tracked = tracker.update([f for _, f in order], step / 30)
        ids = {who: t.face_id for (who, _), t in zip(order, tracked)}
        assert ids == {0: 1, 1: 2}, step


def test_hidden_face_is_found_where_it_was_heading():
    tracker = FaceTracker()
    for step in range(30):  # B, moving left, is hidden behind A for frames 10-19
        faces = [face(100, 60)] + ([] if 10 <= step < 20 else [face(300 - 8 * step, 60)])
        ids = [t.face_id for t in tracker.update(faces, step / 30)]
        assert ids == ([1] if 10 <= step < 20 else [1, 2]), step


def test_a_track_survives_a_few_misses_then_ends():
    config = TrackerConfig(max_missed=3, max_gap_s=0.2)
    tracker = FaceTracker(config)
    assert tracker.update([face(50, 50)], 0.0)[0].face_id == 1
    for step in range(1, 4):  # three frames without it: still tracked
        tracker.update([], step / 30)
    assert tracker.update([face(52, 50)], 4 / 30)[0].face_id == 1
    for step in range(5, 15):  # then gone for 10 frames (0.33 s): the track ends
        tracker.update([], step / 30)
    assert tracker.active_ids == []
    assert tracker.update([face(52, 50)], 15 / 30)[0].face_id == 2


def test_smoothing_follows_time_not_frames():
    tracker = FaceTracker(TrackerConfig(smoothing_s=1.0))
    tracker.update([face(50, 50, label="happy")], 0.0)
    later = tracker.update([face(50, 50, label="sad")], 1.0)[0].face
    assert later.probs["sad"] == pytest.approx(1 - np.exp(-1.0))
    assert later.label == "sad" and later.box == Box(50, 50, 100, 100)
    raw = FaceTracker(TrackerConfig(smoothing_s=0)).update([face(0, 0, label="fear")], 0)[0]
    assert raw.face.probs["fear"] == 1.0


def test_face_smoother_keeps_its_per_frame_weight():
    smoother = FaceSmoother(alpha=0.25)
    smoother([face(50, 50, label="happy")])
    assert smoother([face(52, 50, label="sad")])[0].probs["sad"] == pytest.approx(0.25)


def test_summary_weighs_frames_by_the_time_they_stand_for():
    summary = SummaryBuilder(CLASSES)
    tracker = FaceTracker(TrackerConfig(smoothing_s=0))
    for time_s, label in [(0.0, "happy"), (0.1, "sad"), (1.0, "sad"), (1.1, "happy")]:
        frame = FrameFaces(_frame(time_s), tracker.update([face(50, 50, label=label)], time_s))
        summary.add(frame)
    (record,) = summary.faces(end_s=1.2)
    assert record["share"]["sad"] == pytest.approx(1.0 / 1.2, abs=1e-3)
    assert record["dominant"] == "sad" and record["frames_seen"] == 4
    assert (record["first_s"], record["last_s"]) == (0.0, 1.1)


def _frame(time_s: float):
    from fer_core.vision.video import Frame

    return Frame(round(time_s * 10), time_s, np.zeros((8, 8, 3), np.uint8))


# ----------------------------------------------------------------------------- generated clips


@pytest.fixture(scope="module")
def faces(csv_data) -> np.ndarray:
    return detectable_faces(csv_data.split("public_test").images, 3)


@pytest.fixture(scope="module")
def predictor():
    return video_predictor(FAST_CHECKPOINT)


def tracked_rows(out: Path) -> list:
    rows = load_faces(out / CSV_NAME)
    return [(r.time_s, r.face_id, (r.box_x, r.box_y, r.box_w, r.box_h)) for r in rows.itertuples()]


def decoded(path: Path) -> tuple[list[float], av.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [frame.time for frame in container.decode(stream)]
        return times, stream


@pytest.mark.parametrize("offset", [0, 40], ids=["hidden", "overlapping"])
def test_two_faces_crossing_keep_their_ids(faces, predictor, tmp_path, offset):
    clip = crossing(faces, offset=offset)
    summary = analyse_video(write(tmp_path / "cross.mp4", clip), tmp_path, predictor)
    score = score_tracking(clip, tracked_rows(tmp_path))
    assert score["id_switches"] == 0, score
    assert score["missed"] <= 0.2 * score["true_boxes"], score  # Haar misses covered faces
    long_tracks = [f for f in summary["faces"] if f["frames_seen"] > 5]
    assert [f["face_id"] for f in long_tracks] == [1, 2]


def test_a_face_leaving_briefly_keeps_its_id_and_a_long_absence_ends_it(faces, predictor, tmp_path):
    brief = leave_and_return(faces[0], away=(1.0, 1.4))
    summary = analyse_video(write(tmp_path / "brief.mp4", brief), tmp_path / "b", predictor)
    assert [f["face_id"] for f in summary["faces"]] == [1]
    away = leave_and_return(faces[0], away=(1.0, 2.5))
    summary = analyse_video(write(tmp_path / "away.mp4", away), tmp_path / "a", predictor)
    first, second = summary["faces"]
    assert first["first_s"] == 0 and first["last_s"] == pytest.approx(1.0, abs=0.07)
    assert second["first_s"] == pytest.approx(2.5, abs=0.07)
    assert second["last_s"] == pytest.approx(away.frame_times()[-1], abs=1e-3)


def test_no_face_at_all(predictor, tmp_path):
    clip = Clip([], seconds=1)
    summary = analyse_video(write(tmp_path / "empty.mp4", clip), tmp_path, predictor)
    assert summary["faces"] == [] and summary["complete"]
    assert (tmp_path / CSV_NAME).read_text().strip() == ",".join(csv_header(CLASSES))
    assert len(decoded(tmp_path / VIDEO_NAME)[0]) == 15


def test_variable_frame_rate_keeps_the_source_times(faces, predictor, tmp_path):
    times = [0.0, 0.05, 0.1, 0.4, 0.45, 1.3, 1.35, 1.4, 2.0]
    clip = Clip([Actor(faces[0], [(0, 40, 40), (2, 180, 100)])], times=times)
    summary = analyse_video(write(tmp_path / "vfr.mkv", clip), tmp_path, predictor)
    rows = load_faces(tmp_path / CSV_NAME)
    assert rows["time_s"].tolist() == times and rows["face_id"].unique().tolist() == [1]
    assert decoded(tmp_path / VIDEO_NAME)[0] == pytest.approx(times, abs=1e-3)
    assert summary["video"]["frames"] == len(times)


def test_annotated_video_is_h264_for_browsers(faces, predictor, tmp_path):
    """Odd input dimensions and an audio track: even H.264 yuv420p frames, no audio, one frame
    per input frame (or per stride)."""
    clip = Clip([Actor(faces[0], [(0, 30, 30), (2, 150, 100)])], width=321, height=241, seconds=2)
    source = write(tmp_path / "odd.mkv", clip, codec="ffv1", audio=True)  # x264 needs even sizes
    for every, expected in [(1, 30), (4, 8)]:
        out = tmp_path / f"every{every}"
        summary = analyse_video(source, out, predictor, VideoOptions(every=every))
        times, stream = decoded(out / VIDEO_NAME)
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.width, stream.height) == (320, 240)
        assert len(times) == summary["video"]["frames_processed"] == expected
        with av.open(str(out / VIDEO_NAME)) as container:
            assert not container.streams.audio
        frames = load_faces(out / CSV_NAME)["frame"]
        assert (frames % every == 0).all()


def test_stop_keeps_what_was_analysed(predictor, tmp_path):
    source = write(tmp_path / "long.mp4", Clip([], seconds=2))
    calls = []
    summary = analyse_video(
        source, tmp_path, predictor, on_progress=calls.append, should_stop=lambda: len(calls) == 5
    )
    assert not summary["complete"] and summary["video"]["frames_processed"] == 5
    assert len(decoded(tmp_path / VIDEO_NAME)[0]) == 5
    assert calls[-1].decoded == 5 and calls[-1].total == 30


# ----------------------------------------------------------------------------- the command line


def test_cli_writes_the_csv_the_summary_and_the_video(faces, tmp_path):
    clip = crossing(faces, seconds=1.5, offset=40)
    source = write(tmp_path / "two.mp4", clip)
    out = tmp_path / "out"
    args = ["video", source, "--out", out, "--every", 2, "--checkpoint", FAST_CHECKPOINT, "--json"]
    proc = cli(*args, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary == json.loads((out / SUMMARY_NAME).read_text())
    assert set(summary) == {"video", "model", "complete", "analysis_s", "faces"}
    assert summary["video"] | {"duration_s": 1.5, "fps": 15} == {
        "file": "two.mp4",
        "width": 320,
        "height": 240,
        "fps": 15,
        "duration_s": 1.5,
        "codec": "h264",
        "frames": 22,
        "frames_processed": 11,
        "every": 2,
    }
    for record in summary["faces"]:
        assert set(record) == {"face_id", "first_s", "last_s", "frames_seen", "dominant", "share"}
        assert list(record["share"]) == list(CLASSES)
        assert sum(record["share"].values()) == pytest.approx(1, abs=1e-3)
    with open(out / CSV_NAME) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == csv_header(CLASSES)
    assert len(rows) == sum(r["frames_seen"] for r in summary["faces"])
    assert {r["label"] for r in rows} <= set(CLASSES)
    assert len(decoded(out / VIDEO_NAME)[0]) == 11


def _bad_files(tmp: Path) -> dict[str, Path]:
    good = write(tmp / "good.mp4", Clip([], seconds=2))
    data = good.read_bytes()
    (tmp / "cut.mp4").write_bytes(data[: len(data) // 2])  # its index (moov) is at the end
    fast = tmp / "fast.mp4"
    with (
        av.open(str(good)) as src,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as dst,
    ):
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    (tmp / "fast_cut.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size * 2 // 3])
    (tmp / "text.mp4").write_text("hello, this is not a video\n")
    (tmp / "empty.mp4").write_bytes(b"")
    with av.open(str(tmp / "zero.avi"), "w") as container:  # a video stream and no frames
        stream = container.add_stream("mpeg4", rate=15)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    write(tmp / "huge.mp4", Clip([], width=4224, height=2376, seconds=0.07))
    return {p.stem: p for p in tmp.iterdir()}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return _bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("cut", [], "not a readable video"),
        ("fast_cut", [], "truncated"),
        ("text", [], "not a readable video"),
        ("empty", [], "the file is empty"),
        ("zero", [], "has no frames"),
        ("huge", [], "video is 4224x2376 pixels, more than the 9.43718 megapixels accepted"),
        ("good", ["--max-minutes", "0.01"], "minutes long, more than the 0.01 accepted"),
        ("good", ["--max-megabytes", "0"], "larger than 0 MB"),
        ("good", ["--every", "0"], "--every must be 1 or more"),
        ("missing", [], "file not found"),
    ],
)
def test_bad_video_is_one_line_exit_1(bad_files, tmp_path, capsys, name, extra, message):
    path = bad_files.get(name, tmp_path / f"{name}.mp4")
    assert main(["video", str(path), "--out", str(tmp_path / "out"), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not any((tmp_path / "out").glob("*"))  # nothing half-written is left


def test_truncated_video_in_a_subprocess_is_one_line(bad_files, tmp_path):
    proc = cli("video", bad_files["fast_cut"], "--out", tmp_path, check=False, timeout=300)
    assert (
        proc.returncode == 1
        and proc.stderr.startswith("error: ")
        and "Traceback" not in proc.stderr
    )
    assert proc.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


def test_reader_error_names_the_file(bad_files):
    from fer_core.vision.video import probe

    with pytest.raises(VideoError, match=r"^text.mp4: not a readable video"):
        probe(bad_files["text"])


# ----------------------------------------------------------------------------- the app's jobs


@pytest.fixture()
def clip_file(faces, tmp_path) -> Path:
    return write(
        tmp_path / "clip.mp4", Clip([Actor(faces[0], [(0, 40, 40), (1, 150, 90)])], seconds=1)
    )


def _job(path: Path, predictor):
    from ui.video import VideoJob

    with open(path, "rb") as f:
        return VideoJob(path.name, f, predictor, VideoOptions())


def test_job_runs_off_the_script_thread_and_clearing_deletes_its_files(clip_file, predictor):
    job = _job(clip_file, predictor)
    job.wait()
    snap = job.snapshot()
    assert snap.status == "finished" and snap.summary["faces"][0]["face_id"] == 1
    assert snap.progress.decoded == snap.progress.total == 15
    assert job.output(VIDEO_NAME).exists() and len(job.faces()) == 15
    folder = job.folder
    job.close()
    assert not folder.exists()


def test_a_dropped_job_deletes_its_files(clip_file, predictor):
    job = _job(clip_file, predictor)
    job.wait()
    folder = job.folder
    del job  # what happens when the session that held it ends
    gc.collect()
    assert not folder.exists()


def test_cancel_while_queued(clip_file, predictor):
    from ui import video

    with video._SLOT:  # another session's analysis holds the slot
        job = _job(clip_file, predictor)
        assert job.snapshot().status == "queued"
        job.cancel()
        job.wait()
    snap = job.snapshot()
    assert (snap.status, snap.summary) == ("cancelled", None)
    job.close()


def test_failed_job_says_why(bad_files, predictor):
    job = _job(bad_files["text"], predictor)
    job.wait()
    snap = job.snapshot()
    assert snap.status == "failed" and "not a readable video" in snap.message
    job.close()


def test_video_tab_analyses_an_upload(clip_file, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FER_APP_DIR", str(tmp_path / "app"))
    monkeypatch.setenv("FER_ICE_SERVERS", "[]")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/predict.py")
    at.run()
    analyse = next(b for b in at.button if "Analyse" in b.label)
    assert analyse.disabled  # nothing uploaded yet
    uploader = next(u for u in at.file_uploader if u.label.startswith("A video"))
    uploader.set_value(("clip.mp4", clip_file.read_bytes(), "video/mp4"))
    at.run()
    next(b for b in at.button if "Analyse" in b.label).click()
    at.run()
    job = at.session_state["video_job"]
    job.wait()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Done: 15 frames analysed" in s.value for s in at.success)
    assert len(at.get("video")) == 1 and len(at.dataframe) == 1
    assert len(at.get("plotly_chart")) == 2  # the focused face's timeline and the overview
    downloads = [b.label for b in at.get("download_button")]
    assert downloads == ["⬇ Faces (CSV)", "⬇ Summary (JSON)", "⬇ Annotated video (MP4)"]
    folder = job.folder
    next(b for b in at.button if "Clear" in b.label).click()
    at.run()
    assert not folder.exists() and "video_job" not in at.session_state


def test_portrait_phone_video_is_turned_upright(faces, tmp_path):
    """A display matrix of a quarter turn (as phones write) gives upright, portrait frames."""
    from dataclasses import replace

    from fer_core.vision.video import VideoReader

    clip = Clip([Actor(faces[0], [(0, 10, 20), (1, 10, 20)])], seconds=0.2)
    path = write(tmp_path / "phone.mp4", clip)
    upright = next(VideoReader(path).frames())
    phone = VideoReader(path)
    phone.info = replace(phone.info, width=240, height=320, turns=1)
    turned = next(phone.frames())
    assert turned.image.shape == (320, 240, 3)
    np.testing.assert_array_equal(turned.image, np.rot90(upright.image))
