"""scripts/deploy_reward_api.sh (the seed's Phase 3), on its failure paths.

A real deploy needs a Modal account and network access to Modal, neither of which this
machine has. What can be checked here: each missing prerequisite is named with its fix, an
unreachable Modal stops the script at its first call with the real CLI, and, with a stand-in
``modal`` command (the paid service's CLI, not ours), the script passes the token through a
file, finds the endpoint in the deploy output and refuses one whose ``/healthz`` does not
answer.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "deploy_reward_api.sh"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def run(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODAL_", "LLM3D_")) and k not in {"PATH", "VIRTUAL_ENV"}
    }
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_every_missing_prerequisite_is_named_with_its_fix(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # python but no modal CLI on the PATH
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    result = run({"PATH": f"{bare}:/usr/bin:/bin"})
    assert result.returncode == 1
    err = result.stderr
    assert "the modal CLI is not on PATH: pip install 'llm3d[modal]'" in err
    assert "MODAL_TOKEN_ID is not set" in err and "MODAL_TOKEN_SECRET is not set" in err
    assert "https://modal.com/settings/tokens" in err
    assert "export MODAL_ENDPOINT" not in result.stdout


@pytest.mark.parametrize("given", ["MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"])
def test_one_missing_credential_is_named_alone(given: str) -> None:
    result = run({"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", given: "x"})
    assert result.returncode == 1
    missing = ({"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"} - {given}).pop()
    assert f"{missing} is not set" in result.stderr
    assert f"{given} is not set" not in result.stderr
    assert "modal CLI" not in result.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_an_unreachable_modal_stops_at_the_secret_and_leaks_no_token() -> None:
    """The real modal CLI with credentials it cannot check (~1 min of its own retries)."""
    result = run(
        {
            "PATH": f"{VENV_BIN}:{SYSTEM_PATH}",
            "MODAL_TOKEN_ID": "ak-not-a-token",
            "MODAL_TOKEN_SECRET": "as-not-a-secret",
            "MODAL_SERVER_URL": f"http://127.0.0.1:{_closed_port()}",
            "MODAL_TOKEN": "bearer-never-printed",
        },
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "modal secret create llm3d-reward-api failed" in result.stderr
    assert "check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET" in result.stderr
    assert "modal deploy" not in result.stdout.replace("==> modal.Secret", "")
    assert "bearer-never-printed" not in result.stdout + result.stderr
    assert "export MODAL_ENDPOINT" not in result.stdout


def stand_in_modal(tmp_path: Path, url: str) -> Path:
    """A ``modal`` command that records its calls and deploys to ``url`` (the paid service)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "modal-calls.log"
    modal = bin_dir / "modal"
    modal.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >>{log}\n'
        'if [ "$1 $2" = "secret create" ]; then\n'
        '  for a in "$@"; do case "$prev" in --from-dotenv) cat "$a" >>' + str(log) + ";; esac; "
        'prev="$a"; done\n'
        "  exit 0\nfi\n"
        'if [ "$1" = deploy ]; then\n'
        "  echo '✓ Created objects.'\n"
        f"  echo '├── 🔨 Created web function web => {url.replace('http://', 'https://')}.modal.run'\n"
        "  exit 0\nfi\nexit 2\n"
    )
    modal.chmod(modal.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_the_deployed_endpoint_must_answer_healthz(tmp_path: Path) -> None:
    bin_dir = stand_in_modal(tmp_path, "http://llm3d-test--llm3d-reward")
    # the deploy output names a URL that resolves nowhere: /healthz never answers
    result = run(
        {
            "PATH": f"{bin_dir}:{VENV_BIN}:{SYSTEM_PATH}",
            "MODAL_TOKEN_ID": "ak-x",
            "MODAL_TOKEN_SECRET": "as-y",
            "MODAL_TOKEN": "bearer-1",
            "HEALTH_TIMEOUT_S": "2",
        }
    )
    assert result.returncode == 1
    assert "https://llm3d-test--llm3d-reward.modal.run/healthz did not answer within 2s" in (
        result.stderr
    )
    assert "modal app logs llm3d-reward" in result.stderr
    calls = (tmp_path / "modal-calls.log").read_text()
    assert "secret create --force llm3d-reward-api --from-dotenv" in calls
    assert "LLM3D_API_TOKEN=bearer-1" in calls, "the token travels in the secret's file"
    assert "deploy -m api.modal_web" in calls
    assert "export MODAL_ENDPOINT" not in result.stdout


def test_the_trainers_read_the_seeds_phase_5_names() -> None:
    """``MODAL_ENDPOINT`` / ``MODAL_TOKEN`` (what the deploy prints) reach the trainers'
    settings, ``training.reward_url`` and ``api.token``; the LLM3D_ names win over them."""
    import json

    env = {
        "PATH": f"{VENV_BIN}:{SYSTEM_PATH}",
        "MODAL_ENDPOINT": "https://ws--llm3d-reward.modal.run",
        "MODAL_TOKEN": "bearer-from-deploy",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "LLM3D_"))}
    show = [str(VENV_BIN / "llm3d"), "config", "show", "--json"]

    def effective(extra: dict[str, str]) -> dict[str, object]:
        out = subprocess.run(
            show,
            env={**base, **env, **extra, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        config: dict[str, object] = json.loads(out.stdout)["config"]
        return config

    config = effective({})
    assert config["training"]["reward_url"] == "https://ws--llm3d-reward.modal.run"  # type: ignore[index]
    assert config["api"]["token"] == "**********"  # type: ignore[index]
    from llm3d.config import load_config

    token = load_config(environ=env).api.token
    assert token is not None and token.get_secret_value() == "bearer-from-deploy"
    mine = load_config(environ={**env, "LLM3D_API_TOKEN": "mine"}).api.token
    assert mine is not None and mine.get_secret_value() == "mine"
    url = effective({"LLM3D_TRAINING__REWARD_URL": "http://127.0.0.1:9000"})
    assert url["training"]["reward_url"] == "http://127.0.0.1:9000"  # type: ignore[index]
