"""The one worker pool: a function over jobs, in order, in processes when there are several workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")


def map_jobs(
    fn: Callable[[Any], R], jobs: Sequence[Any], workers: int, desc: str, unit: str = "job", progress: bool = True
) -> list[R]:
    """``[fn(j) for j in jobs]``, in a process pool of ``workers`` when there are more than one worker and job
    (``fn`` and the jobs must then pickle), with a progress bar. Results come back in job order."""
    from tqdm import tqdm

    out: list[R] = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(fn, jobs):
                    out.append(result)
                    bar.update()
        else:
            for job in jobs:
                out.append(fn(job))
                bar.update()
    return out
