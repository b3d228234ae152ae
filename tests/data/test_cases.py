"""Prepared patients read as cases: in threads they are the same cases, in the same order, as one by one."""

from __future__ import annotations

import numpy as np

from igtv.data import cases


def _same(a, b) -> None:
    assert a.name == b.name and a.spacing_mm == b.spacing_mm
    for field in ("ct_hu", "pet_suv", "target", "body"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for ra, rb in zip(a.lesions + a.hot, b.lesions + b.hot, strict=True):
        np.testing.assert_array_equal(ra.voxels, rb.voxels)
        assert (ra.suv_max, ra.size) == (rb.suv_max, rb.size)


def test_a_split_read_in_threads_gives_the_cases_read_one_by_one(prepared, monkeypatch):
    root = prepared[1].out_dir
    monkeypatch.setattr(cases, "_CACHE", {})
    one = cases.load_split_cases(root, "all", 5.0, threads=1)
    monkeypatch.setattr(cases, "_CACHE", {})  # read everything again
    many = cases.load_split_cases(root, "all", 5.0, threads=3)
    assert len(one) >= 3
    assert [c.name for c in many] == [c.name for c in one] == sorted(c.name for c in one)
    assert sum(len(c.lesions) for c in one) >= 3 and any(c.hot for c in one)  # a check with something to compare
    for a, b in zip(one, many, strict=True):
        assert a is not b
        _same(a, b)
    assert cases.load_split_cases(root, "all", 5.0, threads=2)[0] is many[0]  # the per-process cache
