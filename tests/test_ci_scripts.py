"""``scripts/test`` and ``.ci/run`` (docs/development.md): lint and types before pytest, arguments
passed through, every failure (a pytest run that collects nothing included) a non-zero exit,
the 15 slowest tests under CI.

The scripts run in a scratch copy of the repository layout whose set-up, ruff, mypy, Python and
system tools are stubs that log their arguments and exit with the status a test asks for; ``id``
answers a non-root user, so the scripts never try to install system packages here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

STUB = """#!/usr/bin/env bash
echo "{name} $*" >> "$STUB_LOG"
exit "${{{var}:-0}}"
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / ".ci").mkdir()
    shutil.copy2(REPO / "scripts" / "test", root / "scripts" / "test")
    shutil.copy2(REPO / ".ci" / "run", root / ".ci" / "run")
    stubs = {root / "scripts" / "setup": ("setup", "RC_SETUP"), root / ".venv" / "bin" / "ruff": ("ruff", "RC_RUFF"),
             root / ".venv" / "bin" / "mypy": ("mypy", "RC_MYPY"), root / ".venv" / "bin" / "python": ("python", "RC_PYTEST"),
             tmp_path / "bin" / "dciodvfy": ("dciodvfy", "RC_DCIODVFY")}
    for tool in ("Orthanc", "chromium", "apt-get", "systemctl"):
        stubs[tmp_path / "bin" / tool] = (tool, "RC_" + tool.upper().replace("-", "_"))
    for path, (name, var) in stubs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STUB.format(name=name, var=var))
        path.chmod(0o755)
    (tmp_path / "bin" / "id").write_text("#!/usr/bin/env bash\necho 1000\n")
    (tmp_path / "bin" / "id").chmod(0o755)
    return root


def _run(tree: Path, cmd: list[str], **rcs: int) -> tuple[int, list[str], str]:
    log = tree.parent / "calls.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({k: str(v) for k, v in rcs.items()}, STUB_LOG=str(log), PATH=f"{tree.parent / 'bin'}:{env['PATH']}")
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, calls, proc.stderr


def test_checks_run_before_pytest_and_arguments_pass_through(tree: Path) -> None:
    rc, calls, _ = _run(tree, ["bash", "scripts/test", "-m", "not slow", "-q"])
    assert rc == 0
    assert [c.split()[0] for c in calls] == ["setup", "ruff", "mypy", "python"]  # nothing installed as non-root
    assert calls[0] == "setup dev"
    assert calls[1] == "ruff check src tests scripts benchmarks"
    assert calls[3] == "python -m pytest -m not slow -q"


@pytest.mark.parametrize("failing", ["RC_RUFF", "RC_MYPY", "RC_PYTEST"])
def test_any_failing_step_fails_the_run_and_pytest_still_runs(tree: Path, failing: str) -> None:
    rc, calls, err = _run(tree, ["bash", "scripts/test"], **{failing: 1})
    assert rc != 0 and "FAILED" in err
    assert calls[-1].startswith("python -m pytest")


def test_no_tests_collected_is_a_failure(tree: Path) -> None:
    rc, _, err = _run(tree, ["bash", "scripts/test", "-k", "nothing"], RC_PYTEST=5)
    assert rc != 0 and "no tests collected" in err


def test_ci_runs_everything_with_the_slowest_tests_and_fails_loudly(tree: Path) -> None:
    rc, calls, _ = _run(tree, ["bash", ".ci/run"])
    assert rc == 0
    assert calls[-1] == "python -m pytest --durations=15"
    rc, _, err = _run(tree, ["bash", ".ci/run"], RC_PYTEST=5)
    assert rc != 0 and "ci: FAILED" in err
