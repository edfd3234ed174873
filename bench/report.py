"""What every scenario shares for output: progress lines, the run's environment,
and the result as a small table or as one JSON line (the last line on stdout)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: A scenario's result: JSON-ready values (numbers, strings, bools, None, dicts of them).
Result = dict[str, object]

REPO = Path(__file__).resolve().parent.parent
_STARTED = time.perf_counter()
# Other work on the machine shows in the figures; this says how busy it was.
_LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def progress(message: str) -> None:
    """One line on stderr, stamped with the seconds since the run began."""
    print(f"[{time.perf_counter() - _STARTED:7.2f}s] {message}", file=sys.stderr, flush=True)


def environment() -> Result:
    """Where the figures were measured."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": _LOAD_AT_START,
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The checkout's HEAD (with ``+dirty`` if the tree has changes), or None."""
    try:
        head = _git("rev-parse", "HEAD")
        # --no-optional-locks: only read; plain `git status` may rewrite the index.
        dirty = _git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout, no git, or no commit yet
    return head + ("+dirty" if dirty else "")


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout.strip()


def emit(result: Mapping[str, object], as_json: bool) -> None:
    """The result on stdout: one JSON object on the last line, or a readable table."""
    if as_json:
        print(json.dumps(result, separators=(",", ":")), flush=True)
        return
    rows = list(_flatten(result))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {_format(value)}")


def _flatten(result: Mapping[str, object], prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in result.items():
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + key, value))
    return rows


def _format(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)
