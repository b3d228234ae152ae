"""Sliding-window prediction: coverage, Gaussian weighting, no seams, regions."""

from __future__ import annotations

import numpy as np
import pytest

from igtv.inference.sliding import gaussian_weights, pad_to, sliding_window, tiles, window_starts


def test_window_starts_cover_the_slice():
    for length, patch in ((100, 32), (96, 32), (33, 32), (20, 32)):
        starts = window_starts(length, patch, 0.5)
        covered = np.zeros(max(length, patch), bool)
        for s in starts:
            covered[s : s + patch] = True
        assert covered[:length].all() and starts[-1] + patch >= length
        assert all(b > a for a, b in zip(starts, starts[1:], strict=False))


def test_gaussian_weights():
    w = gaussian_weights(32)
    assert w.shape == (32, 32) and w.max() == 1.0 and w.min() > 0
    assert w[15, 15] > w[0, 0] and np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])


def _run(forward, image, patch=32, regions=None):
    return sliding_window(forward, lambda z: image[z], [0, 1], image.shape[-2:], patch, 0.5, 5, regions)


def test_constant_model_gives_a_constant_map():
    image = np.zeros((2, 1, 90, 70), np.float32)
    out = _run(lambda x: np.full((len(x), 32, 32), 0.37, np.float32), image)
    assert out.shape == (2, 90, 70) and np.allclose(out, 0.37, atol=1e-6)


def test_any_batch_size_gives_the_same_map_and_a_batch_below_one_is_refused():
    image = np.random.default_rng(0).random((2, 1, 90, 70)).astype(np.float32)
    model = lambda x: x[:, 0] ** 2  # noqa: E731 - a pixelwise stand-in
    maps = [sliding_window(model, lambda z: image[z], [0, 1], (90, 70), 32, 0.5, b) for b in (1, 5, 64)]
    assert np.allclose(maps[0], maps[1], atol=1e-6) and np.allclose(maps[0], maps[2], atol=1e-6)
    assert np.allclose(maps[0], image[:, 0] ** 2, atol=1e-5)
    for bad in (0, -8):  # range() would step backwards over nothing: an all-zero map, silently
        with pytest.raises(ValueError, match="batch size must be >= 1"):
            sliding_window(model, lambda z: image[z], [0, 1], (90, 70), 32, 0.5, bad)


def test_seams_leave_no_trace():
    """A model that is translation-equivariant (it returns its input) must give back the input everywhere."""
    rng = np.random.default_rng(0)
    image = rng.random((2, 1, 100, 77)).astype(np.float32)
    out = _run(lambda x: x[:, 0], image)
    assert np.allclose(out, image[:, 0], atol=1e-5)


def test_regions_limit_the_tiles():
    region = np.zeros((100, 100), bool)
    region[5:10, 5:10] = True
    assert tiles((100, 100), 32, 0.5, region) == [(0, 0)]
    image = np.ones((2, 1, 100, 100), np.float32)
    out = _run(lambda x: x[:, 0], image, regions=lambda z: region)
    assert out[0, :32, :32].min() == 1.0 and out[0, 40:, 40:].max() == 0.0


def test_pad_to():
    a, shape = pad_to(np.ones((3, 10, 40)), 32, -5.0)
    assert a.shape == (3, 32, 40) and shape == (10, 40) and a[0, 20, 0] == -5.0


def test_a_region_leaves_the_probabilities_inside_it_unchanged():
    """``predict`` limits the tiles to the thorax region: every tile covering a region pixel overlaps the region, so
    inside it the blend is the full prediction's, even for a model whose output depends on the whole tile."""
    rng = np.random.default_rng(1)
    image = rng.random((2, 1, 150, 130)).astype(np.float32)

    def tile_mean(x):  # not translation-equivariant: each tile's output is its mean
        return np.broadcast_to(x[:, 0].mean(axis=(1, 2))[:, None, None], (len(x), 32, 32)).copy()

    region = np.zeros((150, 130), bool)
    region[60:75, 40:90] = True
    full = _run(tile_mean, image)
    limited = _run(tile_mean, image, regions=lambda z: region)
    assert np.array_equal(limited[:, region], full[:, region])
    assert not np.allclose(limited, full)  # fewer tiles: outside the region it differs (or is 0)
    assert len(tiles((150, 130), 32, 0.5, region)) < len(tiles((150, 130), 32, 0.5))
