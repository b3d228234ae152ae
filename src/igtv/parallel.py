"""The one worker pool: a function over jobs, in order, in processes (or threads) when there are several workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")


def map_jobs(
    fn: Callable[[Any], R],
    jobs: Sequence[Any],
    workers: int,
    desc: str,
    unit: str = "job",
    progress: bool = True,
    threads: bool = False,
) -> list[R]:
    """``[fn(j) for j in jobs]``, in a process pool of ``workers`` when there are more than one worker and job
    (``fn`` and the jobs must then pickle), with a progress bar. Results come back in job order. ``threads``: a
    thread pool instead, for work that releases the GIL (nothing is pickled; results stay shared objects)."""
    from tqdm import tqdm

    out: list[R] = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            pool_cls = ThreadPoolExecutor if threads else ProcessPoolExecutor
            with pool_cls(max_workers=workers) as pool:
                for result in pool.map(fn, jobs):
                    out.append(result)
                    bar.update()
        else:
            for job in jobs:
                out.append(fn(job))
                bar.update()
    return out
