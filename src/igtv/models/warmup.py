"""Compiling the CPU scan kernels a model needs before its first training step, in a background process.

numba compiles the fused scan (:mod:`igtv.models.scan.numba_cpu`) the first time a state count is used, on one core:
forward, backward and the four-order inference kernel for each of a model's state counts, ~40 s for the demo's
models on a 2-core CPU (docs/performance.md, session 40). Compiled kernels go to numba's on-disk cache, so a
process that runs a model afterwards loads them in well under a second. :func:`start_warm_up` does that compiling
in a spawned process while the caller makes data, so the first step of training no longer waits for it. The
kernels loaded from the cache compute the same bits as kernels compiled in the training process (no ``reassoc`` in
their fastmath flags, issue 19).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence


def warm_up(model_names: Sequence[str], side: int = 32) -> float:
    """Run each registered model once in training mode (forward and backward) and once without gradients, on a
    ``side`` px input, so that numba compiles and caches every scan kernel they use. Returns the seconds taken
    (0 without numba: then there is nothing to compile)."""
    import torch

    from igtv.models import create_model
    from igtv.models.scan import numba_available

    if not numba_available():
        return 0.0
    t0 = time.perf_counter()
    for name in model_names:
        model = create_model(name)
        x = torch.rand(2, model.in_channels, side, side)  # two samples: BatchNorm needs more than one value
        model.train()
        model(x).sum().backward()
        model.eval()
        with torch.no_grad():
            model(x)
    return time.perf_counter() - t0


def _child(model_names: list[str], side: int) -> None:  # pragma: no cover - runs in the spawned process
    import torch

    torch.set_num_threads(1)  # compiling is single-threaded; leave the other cores to the caller's work
    warm_up(model_names, side)


def start_warm_up(model_names: Sequence[str], side: int = 32) -> multiprocessing.Process | None:
    """:func:`warm_up` in a spawned background process (started, not joined; ``join()`` it before training).
    ``None`` without numba. A failure there costs nothing but the time: training then compiles as it always did."""
    from igtv.models.scan import numba_available

    if not numba_available():
        return None
    proc = multiprocessing.get_context("spawn").Process(target=_child, args=(list(model_names), side), daemon=True)
    proc.start()
    return proc
