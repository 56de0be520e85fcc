"""Worker processes start as forks of a forkserver that imported torch once, unless the
environment changed since it started (its forks would not see the change)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from sagittal.batch import forkserver as executors


def test_forkserver_is_kept_when_only_imports_changed_the_environment(monkeypatch):
    monkeypatch.setattr(executors, "_FORKSERVER_ENV", executors._environment())  # as if it had started now
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/elsewhere")  # what importing OpenCV does
    expected = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    assert executors.worker_context().get_start_method() == expected
    monkeypatch.setenv("SAGITTAL_WEIGHTS", "/another/model.pt")  # a real change: workers must see it
    assert executors.worker_context().get_start_method() == "spawn"


def test_the_forkserver_module_starts_before_pydicom_or_torch_are_imported():
    """``sagittal analyze --workers`` asks for the forkserver first, so that torch loads there while
    the driver imports the rest: the module it asks must not import either itself."""
    import subprocess
    import sys

    code = ("import sys, sagittal.batch.forkserver, sagittal.batch; "
            "print(sorted(m for m in ('pydicom', 'torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_our_local_dask_workers_run_without_the_statistical_profiler():
    from sagittal.batch.executors import dask_client

    client, cluster, threads = dask_client("local:1")
    try:
        import dask

        assert threads == 1
        assert set(client.run(lambda: dask.config.get("distributed.worker.profile.enabled")).values()) == {False}
    finally:
        client.close()
        cluster.close()


def test_analyze_asks_for_the_forkserver_before_importing_the_batch_driver(tmp_path):
    """``sagittal analyze --workers 2`` starts the workers' forkserver first, so that torch loads
    there while the command imports pydicom and the driver (the call is intercepted here)."""
    import subprocess
    import sys

    code = (
        "import sys, sagittal.batch.forkserver as fs\n"
        "def asked(extra=()):\n"
        "    print('pydicom' in sys.modules, 'sagittal.batch.analyze' in sys.modules); raise SystemExit(0)\n"
        "fs.worker_context = asked\n"
        "from sagittal.cli import main\n"
        f"main(['analyze', {str(tmp_path)!r}, '-o', {str(tmp_path / 'out')!r}, '--workers', '2'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
