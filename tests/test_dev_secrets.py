"""The built-in development secrets are public: the engine serves with them on
loopback only, unless a throwaway setup says otherwise (ALLOW_DEV_SECRETS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import Settings, is_loopback
from engine.errors import ConfigError

REAL = {"JWT_SECRET": "a" * 64, "INTERNAL_API_TOKEN": "b" * 64}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"])
def test_loopback_hosts_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.0.0.5", "example.com", "[::]"])
def test_every_other_host_is_not(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "JWT_SECRET and INTERNAL_API_TOKEN"),
        ({"JWT_SECRET": "a" * 64}, "INTERNAL_API_TOKEN"),
        ({"INTERNAL_API_TOKEN": "b" * 64}, "JWT_SECRET"),
    ],
)
def test_a_development_secret_beyond_loopback_is_refused_naming_it(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env).check_secrets_for("0.0.0.0")
    message = str(raised.value)
    assert f"built-in development value of {named}," in message
    assert "ALLOW_DEV_SECRETS" in message


def test_development_secrets_on_loopback_are_allowed() -> None:
    Settings.from_env({}).check_secrets_for("127.0.0.1")


def test_real_secrets_serve_anywhere() -> None:
    Settings.from_env(REAL).check_secrets_for("0.0.0.0")


def test_allow_dev_secrets_is_the_explicit_opt_out() -> None:
    Settings.from_env({"ALLOW_DEV_SECRETS": "1"}).check_secrets_for("0.0.0.0")
    with pytest.raises(ConfigError, match="ALLOW_DEV_SECRETS='maybe'"):
        Settings.from_env({"ALLOW_DEV_SECRETS": "maybe"})


def test_serve_on_every_address_with_development_secrets_exits_before_starting(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("JWT_SECRET", "INTERNAL_API_TOKEN", "ALLOW_DEV_SECRETS", "DATABASE_URL")
    }
    env["ENGINE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to serve on '0.0.0.0'" in done.stderr
    assert "JWT_SECRET and INTERNAL_API_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
