"""``sagittal analyze`` on Dask and on local processes: the same documents as a serial run, and
against a real ``dask scheduler`` with two ``dask worker`` processes (loopback only), one of
them killed mid-batch, every image is analysed exactly once."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed
import pytest

from sagittal.batch.analyze import run_analyze
from sagittal.cli import main

pytestmark = pytest.mark.slow
DASK = str(Path(sys.executable).with_name("dask"))
N_IMAGES = 6


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dask") / "export"
    assert main(["phantom", str(root), "--n", str(N_IMAGES), "--seed", "8", "--pixel-spacing", "0.6"]) == 0
    return root


def _documents(out: Path) -> dict[str, dict]:
    docs: dict[str, dict] = {}
    for p in sorted(out.rglob("*.json")):
        d = json.loads(p.read_text())
        if d.get("schema") == "sagittal.analysis/1":
            assert d["source"]["path"] not in docs, "an image analysed twice"
            docs[d["source"]["path"]] = d
    return docs


def _errors(out: Path) -> list[dict]:
    with open(out / "errors.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_serial_processes_and_dask_give_identical_documents(export, tmp_path):
    runs = {"serial": [], "processes": ["--workers", "2"], "dask": ["--dask", "local:2"]}
    docs = {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["analyze", str(export), "-o", str(out), "--device", "cpu", *extra]) == 0
        docs[name] = _documents(out)
        errors = _errors(out)
        assert [r["path"] for r in errors] == [str(export / "truth.json")], (name, errors)
        with open(out / "summary.csv", newline="") as fh:
            assert len(list(csv.DictReader(fh))) == N_IMAGES
    assert len(docs["serial"]) == N_IMAGES
    assert docs["processes"] == docs["serial"]
    assert docs["dask"] == docs["serial"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """``dask ARGS`` as a user would start it, in its own process group (so that killing it kills all of it)."""
    with open(log, "wb") as out:
        return subprocess.Popen([DASK, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(export, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = {"scheduler": _start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 tmp_path / "scheduler.log")}
    try:
        for name in ("w0", "w1"):
            procs[name] = _start(["worker", address, "--nworkers", "1", "--nthreads", "1", "--name", name, "--host",
                                  "127.0.0.1", "--no-dashboard"], tmp_path / f"{name}.log")
        watcher = distributed.Client(address, timeout="30s")
        watcher.wait_for_workers(2, timeout=60)
        killed: list[str] = []

        def kill_a_busy_worker(outcome) -> None:
            if killed:
                return
            info = watcher.scheduler_info()["workers"]
            busy = [addr for addr, keys in watcher.processing().items() if keys]
            if busy:  # the first result is in and another task is running: kill the worker running it
                name = str(info[busy[0]]["name"]).split("-")[0]
                os.killpg(procs[name].pid, signal.SIGKILL)
                procs[name].wait(10)
                killed.append(name)

        out = tmp_path / "out"
        result = run_analyze([export], out, device="cpu", dask=address, batch_size=1, progress=False,
                             on_result=kill_a_busy_worker)
        assert killed, "no worker was busy when results came in: nothing was killed"
        assert procs[killed[0]].poll() is not None
        docs = _documents(out)
        assert len(docs) == N_IMAGES and result["analysed"] == N_IMAGES and result["documents"] == N_IMAGES
        assert [r["path"] for r in _errors(out)] == [str(export / "truth.json")]  # no image failed
        assert len(list((out).rglob("*.png"))) == N_IMAGES
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
        watcher.close()
    finally:
        for proc in procs.values():
            _stop(proc)
    time.sleep(0.1)
