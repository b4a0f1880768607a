"""`bench/train_phases.py` against the library it times: every stage it wraps exists, and a real
run of the CLI on the CPU (256 faces of the real archive) comes back with each stage timed, in the
order they ran, adding up to no more than the run's wall time."""

from __future__ import annotations

from conftest import ZIP_PATH

from bench import train_phases


def test_every_timed_stage_is_in_the_library():
    for module, attribute, *_ in train_phases.STAGES:
        owner, name = train_phases.stage_owner(module, attribute)  # a renamed stage fails here
        assert callable(getattr(owner, name))


def test_a_cpu_run_times_every_stage_in_order():
    args = ["--data", str(ZIP_PATH), "--recipe", "cpu_default", "--epochs", "2", "--quiet",
            "--half", "--device", "cpu", "--limit", "256"]  # fmt: skip
    result = train_phases.run_once(args, {"FER_BENCH_VARIANT": "a"}, cold=True)
    assert "error" not in result, result.get("error")
    assert result["env"] == {"FER_BENCH_VARIANT": "a"}
    phases = result["phases"]
    top_level = ["interpreter_start", "import_torch", "import_fer_core", "load_dataset",
                 "build_model", "trainer_init", "train_epoch0", "validate0", "epoch_files",
                 "train_epoch1", "validate1", "run_files", "half_resave", "exit"]  # fmt: skip
    assert [p for p in phases if p in top_level] == top_level
    assert list(phases).index("first_step") < list(phases).index("train_epoch0")  # nested in it
    assert 0 < phases["first_step"] <= phases["train_epoch0"]
    assert "epoch_files (median of 1)" in phases  # the second epoch's files
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases[p] for p in top_level) <= result["wall_s"] + 0.1  # rounding
