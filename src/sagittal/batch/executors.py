"""Executors: where ``worker.run_chunk`` runs — in this process, in local worker processes, or
on a Dask cluster. Each yields ``(outcomes, timings)`` per chunk as chunks complete, and
accounts for every unit exactly once: a chunk lost with its process becomes failures (local
processes) or is recomputed elsewhere by Dask's scheduler (a worker lost mid-batch).

Chunks in flight are bounded (a few per worker), so memory does not grow with the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from .forkserver import worker_context
from .units import Failure, Outcome, Unit
from .worker import RunConfig, analyzer_for, run_chunk_timed

log = logging.getLogger(__name__)
Chunk = list[tuple[int, Unit]]
Completed = tuple[list[Outcome], dict[str, float]]
IN_FLIGHT_PER_WORKER = 2


def _lost(chunk: Chunk, reason: str) -> list[Outcome]:
    return [Outcome(i, failure=Failure(u.files, "analyse", reason)) for i, u in chunk]


def serial(chunks: Sequence[Chunk], config: RunConfig) -> Iterator[Completed]:
    """Every chunk in this process, one after the other."""
    for chunk in chunks:
        yield run_chunk_timed(chunk, config)


def _init_process(config: RunConfig) -> None:
    try:
        analyzer_for(config)  # the model, once per process, before the first chunk
    except Exception:  # run_chunk reports it per unit
        log.debug("the landmark model could not be loaded in a worker process", exc_info=True)


def _new_pool(config: RunConfig, workers: int) -> Any:
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(), initializer=_init_process,
                               initargs=(config,))


def processes(chunks: Sequence[Chunk], config: RunConfig, workers: int) -> Iterator[Completed]:
    """Chunks over ``workers`` local processes (spawned: no state shared with the driver).

    A worker process that dies (killed, out of memory, a crashing decoder) breaks the pool: a new
    pool takes over and the units that were in flight become suspects, each then run alone with
    nothing else in flight; a suspect whose lone run breaks the pool again is recorded as
    failed, so one poisonous file costs only itself."""
    from concurrent.futures import FIRST_COMPLETED, Future, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = list(reversed(chunks))
    suspects: list[Chunk] = []  # units in flight when a worker died, to be run alone
    suspected: set[int] = set()  # indices of every unit ever made a suspect
    pool = None
    running: dict[Future[Completed], Chunk] = {}
    try:
        while pending or suspects or running:
            pool = pool or _new_pool(config, workers)
            if suspects:  # one suspect at a time, alone
                if not running:
                    chunk = suspects.pop()
                    running[pool.submit(run_chunk_timed, chunk, config)] = chunk
            else:
                while pending and len(running) < IN_FLIGHT_PER_WORKER * workers:
                    chunk = pending.pop()
                    running[pool.submit(run_chunk_timed, chunk, config)] = chunk
            lone = next(iter(running.values())) if len(running) == 1 else None
            isolating = lone is not None and len(lone) == 1 and lone[0][0] in suspected
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            lost: list[Chunk] = []
            for fut in done:
                chunk = running.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    lost.append(chunk)
                except Exception as exc:  # pickling and the like: the chunk's, not the batch's
                    yield _lost(chunk, f"{type(exc).__name__}: {exc}"), {}
            if not lost:
                continue
            lost += list(running.values())  # every chunk in flight went down with the pool
            running.clear()
            pool.shutdown(wait=True, cancel_futures=True)
            pool = None
            if isolating and len(lost) == 1:
                yield _lost(lost[0], "the worker process died while analysing it alone (killed, out of memory "
                                     "or a crash in a decoder)"), {}
            else:
                suspects += [[pair] for chunk in lost for pair in chunk]
                suspected.update(i for chunk in lost for i, _ in chunk)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def dask_client(address: str) -> tuple[Any, Any, int]:
    """A ``distributed.Client`` for ``local``, ``local:N`` or ``tcp://host:port``; with the
    LocalCluster it started (or ``None``) and the number of worker threads."""
    import os

    from ..errors import InputError

    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError("--dask needs dask's distributed scheduler: pip install 'sagittal[dask]'") from exc
    cluster = None
    if address == "local" or address.startswith("local:"):
        text = address.partition(":")[2]
        if text and not (text.isdigit() and int(text) > 0):
            raise InputError(f"--dask {address}: expected local or local:N with N a positive number of workers")
        n = int(text) if text else (os.cpu_count() or 1)
        import dask

        if logging.getLogger().getEffectiveLevel() > logging.INFO:  # our cluster's start and stop are not news
            logging.getLogger("distributed").setLevel(logging.WARNING)
        method = "forkserver" if worker_context(["distributed"]).get_start_method() == "forkserver" else "spawn"
        # no statistical profiler in our own workers: it walks the stack every 10 ms (no dashboard reads it)
        with dask.config.set({"distributed.worker.multiprocessing-method": method,
                              "distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
        client = Client(cluster)
    else:
        if "://" not in address:
            raise InputError(f"--dask {address}: expected local, local:N or a scheduler address such as tcp://host:8786")
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise InputError(f"--dask {address}: cannot reach the scheduler ({exc})") from exc
    threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    return client, cluster, max(1, threads)


def dask(chunks: Sequence[Chunk], config: RunConfig, address: str) -> Iterator[Completed]:
    """Chunks as tasks on a Dask cluster. A task lost with its worker is rerun by the scheduler on
    another; one that keeps killing workers (``KilledWorker``) is split and its units rerun one
    by one, so that only a unit that kills workers on its own is recorded as failed."""
    from distributed import as_completed

    client, cluster, threads = dask_client(address)
    try:
        pending = list(reversed(chunks))
        window = max(IN_FLIGHT_PER_WORKER * threads, 4)
        futures: dict[Any, Chunk] = {}

        def submit(chunk: Chunk) -> Any:
            fut = client.submit(run_chunk_timed, chunk, config, pure=False)
            futures[fut] = chunk
            return fut

        queue = as_completed([submit(pending.pop()) for _ in range(min(window, len(pending)))])
        for fut in queue:
            chunk = futures.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # KilledWorker after repeated losses, or the task's own error
                if type(exc).__name__ == "KilledWorker" and len(chunk) > 1:
                    for pair in chunk:
                        queue.add(submit([pair]))
                    fut.release()
                    continue
                result = (_lost(chunk, f"{type(exc).__name__}: {exc}"), {})
            fut.release()
            if pending:
                queue.add(submit(pending.pop()))
            yield result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
