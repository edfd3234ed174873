"""The architecture's layers hold, and the import contracts that keep them
would catch each arrow that once broke them: run import-linter on a copy of
the tree with one offending import added, and it must fail naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "web", "jobs", "server", "bench", "tests")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_contracts_hold_on_the_tree_as_it_is(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "named"),
    [
        ("engine/users.py", "import web.messages", "engine.users -> web.messages"),
        ("engine/auctions.py", "import aiohttp", "engine.auctions -> aiohttp"),
        ("engine/ledger.py", "import jobs.lifecycle", "engine.ledger -> jobs.lifecycle"),
        ("jobs/scheduler.py", "import web.rooms", "jobs.scheduler -> web.rooms"),
        ("web/admin_api.py", "import jobs.lifecycle", "web.admin_api -> jobs.lifecycle"),
        ("web/ws.py", "import server.app", "web.ws -> server.app"),
        ("bench/core.py", "import tests.conftest", "bench.core -> tests.conftest"),
        ("web/keys.py", "import web.ws", "No cycles are allowed in web"),  # ws imports keys
    ],
)
def test_each_forbidden_arrow_breaks_a_contract_naming_the_import(
    tree: Path, module: str, line: str, named: str
) -> None:
    path = tree / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # the arrow under test\n")
    try:
        done = lint_imports(tree)
    finally:
        path.write_text(original)
    assert done.returncode != 0, f"{module} importing `{line}` broke no contract"
    assert named in done.stdout, done.stdout[-3000:]
