"""The wheel works on its own: built from the sources, installed into a fresh virtual
environment without network, its ``sagittal analyze`` analyses a sample radiograph from another
directory with the weights the wheel ships (docs/development.md, "Packaging").

The fresh environment borrows the third-party dependencies of the running one through a ``.pth``
line (so nothing is downloaded), but not its editable sagittal: a path listed in a ``.pth`` file
is added to ``sys.path`` without its own ``.pth`` files being processed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_dicom" / "PHA" / "study1" / "lumbar_cr"

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources (so the checkout gets no build/ or egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(tree)], cwd=tmp)
    (whl,) = (tmp / "dist").glob("sagittal-*.whl")
    return whl


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("sagittal/__init__.py", "sagittal/py.typed", "sagittal/contract/analysis.schema.json",
                   "sagittal/weights/landmarks.pt", "sagittal/weights/landmarks.pt.sha256"):
        assert needed in names, f"{needed} is missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "sample_dicom/", "models/")) for n in names)


def test_installed_wheel_analyses_a_sample_image(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).stdout.strip())
    # third-party dependencies from the running environment (no network), after the venv's own
    (purelib / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAGITTAL_WEIGHTS", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import sagittal, sagittal.landmarks.weights as w; print(sagittal.__file__); "
                  "print(w.packaged())"], cwd=work, env=env).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), f"sagittal came from {path}, not the fresh venv"

    out = work / "out"
    _run([str(venv / "bin" / "sagittal"), "analyze", str(SAMPLE), "-o", str(out), "--device", "cpu"], cwd=work, env=env)
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    docs = [d for d in docs if isinstance(d, dict) and d.get("schema") == "sagittal.analysis/1"]
    assert len(docs) == 1, f"expected one analysis document, found {len(docs)}"
    assert docs[0]["status"] in ("ok", "partial"), docs[0].get("warnings")
    assert len(docs[0]["landmarks"]["vertebrae"]) >= 3
