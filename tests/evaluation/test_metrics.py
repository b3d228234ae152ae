from __future__ import annotations

import math

import numpy as np
import pytest

from igtv.evaluation.metrics import (
    balanced_accuracy,
    counts,
    dice,
    hd95,
    iou,
    overlap_volumes_cc,
    pixel_accuracy,
    surface_dice,
)


def _masks():
    truth = np.zeros((6, 6), dtype=bool)
    truth[1:4, 1:4] = True  # 9 pixels
    pred = np.zeros((6, 6), dtype=bool)
    pred[2:5, 2:4] = True  # 6 pixels, 4 of them in truth
    return pred, truth


def test_overlap_metrics_by_hand():
    pred, truth = _masks()
    assert counts(pred, truth) == (4, 2, 5, 25)
    assert iou(pred, truth) == pytest.approx(4 / 11)
    assert dice(pred, truth) == pytest.approx(8 / 15)
    assert pixel_accuracy(pred, truth) == pytest.approx(29 / 36)
    assert balanced_accuracy(pred, truth) == pytest.approx(0.5 * (4 / 9 + 25 / 27))


def test_empty_masks():
    e = np.zeros((4, 4), dtype=bool)
    full = np.ones((4, 4), dtype=bool)
    assert iou(e, e) == 1.0 and dice(e, e) == 1.0 and iou(e, e, empty=0.0) == 0.0
    assert iou(e, full) == 0.0 and dice(full, e) == 0.0
    assert hd95(e, e, (1.0, 1.0)) == 0.0
    assert math.isnan(hd95(e, full, (1.0, 1.0)))
    assert hd95(full, e, (1.0, 1.0), one_empty=99.0) == 99.0
    assert surface_dice(e, e, (1.0, 1.0)) == 1.0 and surface_dice(full, e, (1.0, 1.0)) == 0.0


def test_hd95_anisotropic_by_hand():
    # two single-slice squares shifted by 2 rows: every border point of one is 2 rows from the other's border
    a = np.zeros((1, 10, 10), dtype=bool)
    b = np.zeros((1, 10, 10), dtype=bool)
    a[0, 2:5, 2:5] = True
    b[0, 4:7, 2:5] = True
    assert hd95(a, b, (5.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert hd95(a, b, (5.0, 3.0, 1.0)) == pytest.approx(6.0)  # rows are 3 mm apart now
    # a shift through slices: one slice of 5 mm
    c = np.zeros((3, 10, 10), dtype=bool)
    d = np.zeros((3, 10, 10), dtype=bool)
    c[0, 2:5, 2:5] = True
    d[1, 2:5, 2:5] = True
    assert hd95(c, d, (5.0, 1.0, 1.0)) == pytest.approx(5.0)
    assert hd95(a, a, (5.0, 1.0, 1.0)) == 0.0


def test_surface_dice_tolerance():
    a = np.zeros((1, 12, 12), dtype=bool)
    b = np.zeros((1, 12, 12), dtype=bool)
    a[0, 2:8, 2:8] = True
    b[0, 3:9, 2:8] = True  # shifted by one 1.5 mm row
    assert surface_dice(a, b, (3.0, 1.5, 1.5), tolerance_mm=2.0) == pytest.approx(1.0)
    assert surface_dice(a, b, (3.0, 1.5, 1.5), tolerance_mm=1.0) < 1.0


def test_volumes():
    pred = np.zeros((2, 4, 4), dtype=bool)
    truth = np.zeros((2, 4, 4), dtype=bool)
    pred[0, :2, :2] = True  # 4 voxels
    truth[0, :2, :] = True  # 8 voxels, 4 shared
    v = overlap_volumes_cc(pred, truth, (2.0, 5.0, 10.0))  # 100 mm^3 = 0.1 cc per voxel
    assert v == pytest.approx(
        {
            "pred_cc": 0.4,
            "truth_cc": 0.8,
            "false_positive_cc": 0.0,
            "false_negative_cc": 0.4,
            "volume_difference_cc": -0.4,
        }
    )


def test_shape_and_spacing_errors():
    with pytest.raises(ValueError, match="differs"):
        dice(np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="spacing_mm"):
        hd95(np.ones((2, 2)), np.ones((2, 2)), (1.0, 1.0, 1.0))


def test_label_lesions_in_the_bounding_box_equals_labelling_the_whole_volume():
    from scipy import ndimage

    from igtv.evaluation.metrics import CONNECTIVITY, label_lesions, label_lesions_boxed
    from igtv.geometry import bounding_box

    rng = np.random.default_rng(0)
    for trial in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 24, 3))
        mask = rng.random(shape) < [0.0, 0.002, 0.05, 0.4][trial % 4]
        want, n = ndimage.label(mask, structure=CONNECTIVITY)
        got, m = label_lesions(mask)
        assert m == n and got.dtype == np.int32 and np.array_equal(got, want), trial
        # the boxes, read on the mask's box, are the whole volume's: what find_objects gives
        got_b, boxes = label_lesions_boxed(mask)
        assert np.array_equal(got_b, want) and boxes == ndimage.find_objects(want), trial
    mask = np.zeros((9, 30, 40), bool)
    mask[2, 5, 7] = mask[6, 20, 33] = True
    assert bounding_box(mask) == (slice(2, 7), slice(5, 21), slice(7, 34))
    assert bounding_box(np.zeros((4, 4), bool)) is None


def test_hd95_on_the_masks_box_equals_monai_on_the_whole_volume():
    """hd95 cuts both masks to their union's box first; MONAI on the uncut volumes gives the same value, for masks
    in the middle and against every edge of the volume, 2D and 3D, with anisotropic spacing."""
    import warnings

    import torch
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(1)
    for trial in range(24):
        shape = (9, 40, 36) if trial % 3 else (30, 28)
        spacing = (3.0, 0.9, 1.1)[-len(shape) :]
        p, t = np.zeros(shape, bool), np.zeros(shape, bool)
        for m in (p, t):
            lo = [int(rng.integers(0, n - 2)) if trial % 4 else 0 for n in shape]  # every 4th: at the volume's edge
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            m[box] = rng.random([s.stop - s.start for s in box]) < 0.7
        if not (p.any() and t.any()):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            want = compute_hausdorff_distance(
                torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None], include_background=True,
                percentile=95, directed=False, spacing=list(spacing),
            )  # fmt: skip
        assert hd95(p, t, spacing) == float(want.reshape(-1)[0]), trial
