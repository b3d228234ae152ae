"""The switch for the phantom's numba kernels: :func:`fast` is :mod:`igtv.phantom.fast` when numba is installed
(``pip install igtv[fast]``), else None, and every caller then runs its NumPy code, which gives the same bits
(``tests/phantom/test_fast.py`` checks both ways by patching this function)."""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def fast():
    """The numba kernel module, or None without numba."""
    if importlib.util.find_spec("numba") is None:
        return None
    from igtv.phantom import fast as module

    return module
