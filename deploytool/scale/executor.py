"""Executors: run independent jobs (deploytool.scale.jobs) and give back their reports in submission order.

`local` runs them here one after another, or with `jobs=N` in N spawned worker processes; `ray` runs each
as a Ray task on a cluster (or on a Ray instance started on this machine). The same specs give the same
reports, apart from timings, and the same artifact bytes, whichever executor runs them.

    >>> reports = executor_for("local", jobs=2).run(specs, on_done=ProgressLine(len(specs)))
    >>> [r["passed"] for r in reports]
    [True, True, False, True]
"""
from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from deploytool.errors import UsageError, import_optional
from deploytool.scale.jobs import JobSpec, report_of, run_job, verdict

EXECUTORS = ("local", "ray")
RAY_PIN = "ray==2.60.0"
# A Ray task whose worker dies (node lost, OOM-killed) is run again this often by Ray itself; a job that
# crashes its worker every time costs two more attempts before it is reported.
RAY_MAX_RETRIES = 2

Report = dict[str, Any]
OnDone = Callable[[Report], None]


def executor_for(name: str = "local", *, jobs: int = 1, ray_address: str | None = None):
    """The executor called `name`; unknown names and options that do not fit it are usage errors.

    >>> executor_for("ray", ray_address="auto")
    RayExecutor(address='auto')
    """
    if name not in EXECUTORS:
        from deploytool.errors import did_you_mean

        raise UsageError(f"Unknown executor '{name}'. {did_you_mean(name, EXECUTORS)}")
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more worker processes.")
    if name == "ray":
        if jobs != 1:
            raise UsageError("--jobs sets the local executor's worker processes; Ray schedules by the cluster's CPUs.",
                             hint="Drop --jobs, or use --executor local --jobs N.")
        import_ray()  # fail before any work when Ray is missing
        return RayExecutor(ray_address)
    if ray_address:
        raise UsageError("--ray-address needs --executor ray.")
    return LocalExecutor(jobs)


def failed_report(spec: JobSpec, error: str) -> Report:
    """The row of a job whose worker died before it could report."""
    return report_of(spec, None, error)


class LocalExecutor:
    """Sequential in this process (jobs=1), or `jobs` spawned worker processes.

    Each worker lane owns a one-process pool, so a worker that dies (segfault, OOM kill) fails exactly the
    job it was running; the lane starts a fresh worker and the other jobs go on.
    """

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def __repr__(self) -> str:
        return f"LocalExecutor(jobs={self.jobs})"

    def run(self, specs: Sequence[JobSpec], *, on_done: OnDone | None = None) -> list[Report]:
        if self.jobs == 1:
            reports = []
            for spec in specs:
                reports.append(run_job(spec))
                if on_done:
                    on_done(reports[-1])
            return reports
        return self._run_pool(specs, on_done)

    def _run_pool(self, specs: Sequence[JobSpec], on_done: OnDone | None) -> list[Report]:
        from concurrent.futures import ThreadPoolExecutor

        reports: list[Report | None] = [None] * len(specs)
        pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(specs)):
            pending.put(index)
        report_lock = threading.Lock()

        def finish(index: int, report: Report) -> None:
            with report_lock:
                reports[index] = report
                if on_done:
                    on_done(report)

        lanes = min(self.jobs, len(specs))
        with ThreadPoolExecutor(lanes, thread_name_prefix="deploytool-lane") as threads:
            for done in [threads.submit(_lane, specs, pending, finish) for _ in range(lanes)]:
                done.result()
        return reports  # every index was filled by a lane


def _lane(specs: Sequence[JobSpec], pending: queue.SimpleQueue, finish: Callable[[int, Report], None]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: torch's thread pools and locks do not survive a fork of a process that used them.
    context = multiprocessing.get_context("spawn")
    pool = None
    try:
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            # The workers keep the parent's warning filters: the CLI silences torch's noise users cannot act on.
            pool = pool or ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker,
                                               initargs=(list(warnings.filters), os.getpid()))
            try:
                report = pool.submit(run_job, specs[index]).result()
            except BrokenProcessPool:
                report = failed_report(specs[index], "the worker process died while running this job (a crash in "
                                                     "native code, or killed for memory)")
                pool.shutdown(wait=False)
                pool = None
            finish(index, report)
    finally:
        if pool is not None:
            pool.shutdown()


def _start_worker(filters: list, parent: int) -> None:
    """A worker ends with this process (a SIGTERMed deploytool left its workers running their jobs), and keeps
    its warning filters."""
    from deploytool.lifetime import end_with_parent

    end_with_parent(parent)
    warnings.filters[:] = filters


class RayExecutor:
    """Each job a Ray task. Connects to `address` (or RAY_ADDRESS, or the cluster last started on this
    machine with `ray start --head`), else starts a Ray instance here; a Ray initialised by the caller is used."""

    def __init__(self, address: str | None = None):
        self.address = address

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"

    def run(self, specs: Sequence[JobSpec], *, on_done: OnDone | None = None) -> list[Report]:
        ray = import_ray()
        from ray.exceptions import RayError

        started_here = not ray.is_initialized()
        if started_here:
            # Worker logs stay on the workers (`ray logs`); each job's error comes back in its report.
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        try:
            remote = ray.remote(max_retries=RAY_MAX_RETRIES)(run_job)
            refs = [remote.remote(spec) for spec in specs]
            index_of = {ref: i for i, ref in enumerate(refs)}
            reports: list[Report | None] = [None] * len(specs)
            waiting = list(refs)
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                index = index_of[ready[0]]
                try:
                    reports[index] = ray.get(ready[0])
                except RayError as exc:  # the worker died every attempt, or the job could not even start there
                    reports[index] = failed_report(specs[index], f"Ray: {type(exc).__name__}: "
                                                                 f"{str(exc).strip().splitlines()[0][:500]}")
                if on_done:
                    on_done(reports[index])
            return reports
        finally:
            if started_here:
                ray.shutdown()  # disconnects from a cluster; stops an instance started here


def import_ray():
    """The ray module, or a MissingDependencyError with the command that installs it."""
    return import_optional("ray", label="Ray", needed_by="--executor ray", extra="ray", pin=RAY_PIN)


def table(reports: Sequence[Report]) -> str:
    """One row per job: what it was, its verdict, its time, and the first reason it failed."""
    rows = [("job", "verdict", "time", "reason")]
    for report in reports:
        reason = (report["error"] or "; ".join(report["findings"]) or "").splitlines()
        seconds = report["timings"].get("job_s")
        rows.append((report["job"], verdict(report), f"{seconds:.1f} s" if seconds is not None else "-",
                     reason[0][:120] if reason else ""))
    from deploytool.report import columns

    return columns(rows)
