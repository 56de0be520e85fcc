"""Where worker processes come from: a forkserver that imports torch and the worker modules once,
started as early as the command line allows so that its imports overlap the driver's own.

Standard library only: importing this module must not delay the start it exists for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

#: what a worker process imports before its first unit (torch above all, ~1.4 CPU-s): imported once
#: in the forkserver, whose forks start with it
WORKER_PRELOAD = ["torch", "cv2", "pydicom", "sagittal.batch.worker", "sagittal.batch.radiograph", "sagittal.api",
                  "sagittal.landmarks.infer", "sagittal.io.decode", "sagittal.report.analysis", "sagittal.report.overlay"]

_FORKSERVER_ENV: dict[str, str] | None = None  # the environment the forkserver started with


def _environment() -> dict[str, str]:
    """``os.environ`` but for what imports set themselves (OpenCV's loader sets LD_LIBRARY_PATH)."""
    return {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}


def worker_context(extra_preload: Sequence[str] = ()) -> Any:
    """The multiprocessing context for worker processes, started now so that it warms up while
    the driver imports and plans: a forkserver that imports ``WORKER_PRELOAD`` once (then every
    worker is a cheap fork of it, not a fresh interpreter importing torch again), or spawn where
    there is no forkserver or where the environment changed since the forkserver started (its
    forks would not see the change). Nothing of the driver's state reaches the workers either way."""
    import multiprocessing as mp

    global _FORKSERVER_ENV
    if "forkserver" not in mp.get_all_start_methods() or _FORKSERVER_ENV not in (None, _environment()):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    if _FORKSERVER_ENV is None:
        ctx.set_forkserver_preload([*extra_preload, *WORKER_PRELOAD])
        from multiprocessing import forkserver

        forkserver.ensure_running()  # it imports the preload while the driver goes on
        _FORKSERVER_ENV = _environment()
    return ctx
