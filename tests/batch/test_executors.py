"""Worker processes start as forks of a forkserver that imported torch once, unless the
environment changed since it started (its forks would not see the change)."""

from __future__ import annotations

import multiprocessing as mp

from sagittal.batch import executors


def test_forkserver_is_kept_when_only_imports_changed_the_environment(monkeypatch):
    monkeypatch.setattr(executors, "_FORKSERVER_ENV", executors._environment())  # as if it had started now
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/elsewhere")  # what importing OpenCV does
    expected = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    assert executors.worker_context().get_start_method() == expected
    monkeypatch.setenv("SAGITTAL_WEIGHTS", "/another/model.pt")  # a real change: workers must see it
    assert executors.worker_context().get_start_method() == "spawn"
