"""Secrets: the example documents every key the app reads, and no real secret is tracked."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from conftest import REPO

EXAMPLE = REPO / ".streamlit" / "secrets.toml.example"

# Shapes of real credentials for the services the app can use, and generic private keys.
SECRET_PATTERNS = {
    "Twilio account SID": r"\bAC[0-9a-f]{32}\b",
    "Hugging Face token": r"\bhf_[A-Za-z0-9]{30,}\b",
    "Kaggle key": r"(?i)kaggle_?key\W{0,5}[\"'][0-9a-f]{32}[\"']",
    "Cloudflare API token": r"(?i)api_token\W{0,5}[\"'][A-Za-z0-9_-]{40}[\"']",
    "AWS access key": r"\bAKIA[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
}


def _tracked() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.decode().split("\0") if p]


def test_no_secrets_file_is_tracked():
    tracked = _tracked()
    assert ".streamlit/secrets.toml" not in tracked
    assert not [p for p in tracked if p.endswith("secrets.toml") or p.endswith("kaggle.json")]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=REPO
    ).returncode
    assert ignored == 0, ".streamlit/secrets.toml must be git-ignored"


def test_no_credential_in_any_tracked_text_file():
    found = []
    for name in _tracked():
        path = REPO / name
        if path.suffix in (".pt", ".png", ".jpg", ".onnx") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        found += [(name, what) for what, rx in SECRET_PATTERNS.items() if re.search(rx, text)]
    assert found == []


def test_patterns_catch_real_shaped_credentials():
    """The scan above can fail: each pattern matches a made-up credential of its shape."""
    samples = {
        "Twilio account SID": 'TWILIO_ACCOUNT_SID = "AC' + "0123456789abcdef" * 2 + '"',
        "Hugging Face token": 'HF_TOKEN = "hf_' + "aB3" * 12 + '"',
        "Kaggle key": 'KAGGLE_KEY = "' + "0123456789abcdef" * 2 + '"',
        "Cloudflare API token": 'CLOUDFLARE_TURN_KEY_API_TOKEN = "' + "aB3_" * 10 + '"',
        "AWS access key": "AKIA" + "ABCDEFGHIJKLMNOP",
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",  # split: this file is scanned too
    }
    for what, sample in samples.items():
        assert re.search(SECRET_PATTERNS[what], sample), what


def test_example_is_valid_toml_and_names_every_key_the_app_reads():
    from ui.webcam import TURN_SECRETS

    text = EXAMPLE.read_text()
    assert tomllib.loads(text) == {}  # everything is commented out: copying it changes nothing
    settings = [line for line in text.splitlines() if re.match(r"#\s*[A-Za-z_]+\s*=", line)]
    uncommented = "\n".join(line.lstrip("# ") for line in settings)
    values = tomllib.loads(uncommented)
    for key in (*TURN_SECRETS, "ice_servers", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        assert key in values, key
    assert values["ice_servers"].startswith("[")  # JSON, as ui.webcam.rtc_configuration parses


def test_secrets_reach_the_environment(tmp_path, monkeypatch):
    """A root-level secret becomes the environment variable kagglehub / streamlit-webrtc read."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    script = tmp_path / "app.py"
    script.write_text(
        "import os\nfrom ui import state\nimport streamlit as st\n"
        "state.export_secrets(['KAGGLE_USERNAME'])\nst.write(os.environ.get('KAGGLE_USERNAME'))\n"
    )
    monkeypatch.syspath_prepend(str(REPO))
    at = AppTest.from_file(str(script))
    at.secrets["KAGGLE_USERNAME"] = "someone"
    at.run()
    assert at.markdown[0].value == "someone"
