"""The one worker pool."""

from __future__ import annotations

import os

from igtv.parallel import map_jobs


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_results_come_back_in_job_order_in_processes_and_inline():
    jobs = list(range(7))
    pooled = map_jobs(_square_and_pid, jobs, workers=2, desc="t", progress=False)
    inline = map_jobs(_square_and_pid, jobs, workers=1, desc="t", progress=False)
    assert [r for r, _ in pooled] == [r for r, _ in inline] == [x * x for x in jobs]
    assert all(pid != os.getpid() for _, pid in pooled) and all(pid == os.getpid() for _, pid in inline)


def test_threads_give_the_jobs_in_order_in_this_process():
    import os

    jobs = list(range(6))
    out = map_jobs(lambda j: (j * j, os.getpid()), jobs, workers=3, desc="t", progress=False, threads=True)
    assert [o[0] for o in out] == [j * j for j in jobs]
    assert {o[1] for o in out} == {os.getpid()}  # no process pool: the work ran here
