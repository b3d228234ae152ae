"""SS2D's cross-scan and cross-merge (VMamba), and the block around them."""

from __future__ import annotations

import torch

from igtv.models.ss2d import SS2D, cross_merge, cross_scan


def test_cross_scan_orders_on_a_2x3_grid():
    x = torch.arange(6.0).view(1, 1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    orders = cross_scan(x)[0, :, 0]  # (4, 6)
    assert orders[0].tolist() == [0, 1, 2, 3, 4, 5]  # rows
    assert orders[1].tolist() == [0, 3, 1, 4, 2, 5]  # columns
    assert orders[2].tolist() == [5, 4, 3, 2, 1, 0]  # rows reversed
    assert orders[3].tolist() == [5, 2, 4, 1, 3, 0]  # columns reversed


def test_cross_merge_inverts_cross_scan_for_each_order():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5)
    # each order read back to row-major positions is x itself, so the merge of an unchanged scan is 4 x
    torch.testing.assert_close(cross_merge(cross_scan(x), 4, 5), 4 * x.flatten(2))
    one = torch.zeros_like(cross_scan(x))
    one[:, 1] = cross_scan(x)[:, 1]  # the column order alone merges back to x, not to its transpose
    torch.testing.assert_close(cross_merge(one, 4, 5), x.flatten(2))


def test_ss2d_shape_and_reach():
    """(B, H, W, C) in and out; the four scan orders carry a change at one pixel to every other pixel."""
    torch.manual_seed(0)
    block = SS2D(8, d_state=4, scan_impl="ref").eval()
    x = torch.randn(1, 5, 6, 8)
    with torch.no_grad():
        y = block(x)
        x2 = x.clone()
        x2[0, 2, 3] += 5.0
        y2 = block(x2)
    assert y.shape == x.shape
    changed = (y2 - y).abs().amax(-1)[0]  # (H, W)
    assert (changed > 0).all()  # the depthwise conv reaches 3x3; the scans reach the rest
