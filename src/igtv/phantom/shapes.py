"""Painting primitives for the phantom's label maps: tubes (capsules with a tapering radius), ellipsoids and
boxes, evaluated on a regular grid (three broadcast axes) or on scattered points.

On a grid each primitive only touches the sub-grid of its bounding box (a lung vessel tree of ~200 branches costs
about as much as one organ); on scattered points (lesion placement) it is evaluated everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from igtv.phantom import kernels as switch

RIB_P = 2.3  # superellipse exponent of the rib cage


def superellipse(x, y, ax, ay_ant, ay_post, p):
    """Superellipse 'radius' (<= 1 inside) with different anterior (y < 0) and posterior half-depths."""
    ay = np.where(y < 0, ay_ant, ay_post)
    return np.abs(x / ax) ** p + np.abs(y / ay) ** p


@dataclass(frozen=True)
class Tube:
    """A straight tube from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``), mm in the anatomical frame."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    r0: float
    r1: float

    def bounds(self, pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.r0, self.r1) + pad
        a, b = np.asarray(self.p0), np.asarray(self.p1)
        return np.minimum(a, b) - r, np.maximum(a, b) + r


class Points:
    """Where labels are evaluated: ``x, y, z`` broadcast together (mm).

    A *grid* is x of shape (1, 1, nx), y (1, ny, 1) and z (nz, 1, 1), each ascending; anything else (e.g. three
    (n,) arrays of scattered points) is evaluated without bounding boxes.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        self.x, self.y, self.z = (np.asarray(a, dtype=np.float32) for a in (x, y, z))
        self.shape = np.broadcast_shapes(self.x.shape, self.y.shape, self.z.shape)
        self.grid = (
            self.x.ndim == 3
            and self.x.shape[:2] == (1, 1)
            and self.y.shape[0] == 1
            and self.y.shape[2] == 1
            and self.z.shape[1:] == (1, 1)
            and all(np.all(np.diff(a.ravel()) > 0) for a in (self.x, self.y, self.z))
        )
        if self.grid:
            self._axes = (self.z.ravel(), self.y.ravel(), self.x.ravel())

    def box(self, lo, hi) -> tuple[tuple, np.ndarray, np.ndarray, np.ndarray] | None:
        """(index, x, y, z) of the points inside the box [lo, hi] (x, y, z order); None when there are none."""
        if not self.grid:
            return (Ellipsis, self.x, self.y, self.z)
        idx = []
        for a, lo_k, hi_k in zip(self._axes, (lo[2], lo[1], lo[0]), (hi[2], hi[1], hi[0]), strict=True):
            i0, i1 = int(np.searchsorted(a, lo_k, "left")), int(np.searchsorted(a, hi_k, "right"))
            if i1 <= i0:
                return None
            idx.append(slice(i0, i1))
        iz, iy, ix = idx
        return (iz, iy, ix), self.x[:, :, ix], self.y[:, iy, :], self.z[iz]


def paint(
    lab: np.ndarray,
    pts: Points,
    lo,
    hi,
    inside: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    value: int,
    where: tuple[int, ...] | None = None,
) -> None:
    """Set ``lab`` to ``value`` where ``inside(x, y, z)`` holds within the box [lo, hi] (and, if given, where the
    label is one of ``where``)."""
    got = pts.box(lo, hi)
    if got is None:
        return
    idx, x, y, z = got
    sub = lab[idx]
    m = np.broadcast_to(inside(x, y, z), sub.shape)
    if where is not None:
        m = m & _allowed(where)[sub]  # a lookup table: np.isin's sort costs more on these small boxes
    sub[m] = value


def _allowed(where: tuple[int, ...] | None) -> np.ndarray:
    """256-entry table of the labels a paint may overwrite (all of them without ``where``)."""
    table = np.full(256, where is None, dtype=bool)
    if where is not None:
        table[list(where)] = True
    return table


def tube_inside(t: Tube, grow: float = 0.0) -> Callable:
    """Inside-test of a tube whose radius is grown by ``grow`` mm."""
    p0 = np.asarray(t.p0, dtype=np.float32)
    d = np.asarray(t.p1, dtype=np.float32) - p0
    dd = float(d @ d) or 1e-6

    def f(x, y, z):
        dx, dy, dz = x - p0[0], y - p0[1], z - p0[2]
        s = np.clip((dx * d[0] + dy * d[1] + dz * d[2]) / dd, 0.0, 1.0)
        r = t.r0 + (t.r1 - t.r0) * s + grow
        return (dx - s * d[0]) ** 2 + (dy - s * d[1]) ** 2 + (dz - s * d[2]) ** 2 <= r * r

    return f


def paint_tube(lab, pts: Points, t: Tube, value: int, grow: float = 0.0, where=None) -> None:
    lo, hi = t.bounds(grow)
    paint(lab, pts, lo, hi, tube_inside(t, grow), value, where)


def paint_tubes(lab, pts: Points, tubes, value: int, grow: float = 0.0, where=None) -> None:
    """:func:`paint_tube` of each of ``tubes`` in order, after dropping (in one array test) the tubes whose box lies
    outside the grid's extent: a vessel tree of hundreds of branches mostly misses a slice or a sub-box, and those
    would paint nothing anyway."""
    if not tubes:
        return
    if pts.grid:
        ends = np.array([t.p0 + t.p1 for t in tubes], dtype=np.float64).reshape(-1, 2, 3)
        r = np.array([max(t.r0, t.r1) for t in tubes], dtype=np.float64)[:, None] + grow
        lo, hi = np.minimum(ends[:, 0], ends[:, 1]) - r, np.maximum(ends[:, 0], ends[:, 1]) + r  # as Tube.bounds
        g_lo = np.array([float(a[0]) for a in pts._axes[::-1]])  # x, y, z
        g_hi = np.array([float(a[-1]) for a in pts._axes[::-1]])
        keep = np.flatnonzero(np.all((hi + 1.0 >= g_lo) & (lo - 1.0 <= g_hi), axis=1))  # 1 mm to spare
        tubes = [tubes[i] for i in keep]
        kernels = switch.fast()
        if kernels is not None and tubes and lab.dtype == np.uint8:
            _paint_tubes_compiled(kernels, lab, pts, tubes, lo[keep], hi[keep], value, grow, where)
            return
    for t in tubes:
        paint_tube(lab, pts, t, value, grow, where)


def _paint_tubes_compiled(kernels, lab, pts: Points, tubes, lo, hi, value: int, grow: float, where) -> None:
    """paint_tube of each tube through one numba call: the same boxes (``lo``, ``hi`` as Tube.bounds; Points.box's
    searchsorted, vectorised) and the same float32 arithmetic as tube_inside."""
    boxes = np.empty((len(tubes), 6), dtype=np.int64)
    for k, a in enumerate(pts._axes):  # z, y, x: Points.box's searchsorted, one call per axis for every tube
        c = 2 - k
        boxes[:, 2 * k] = np.searchsorted(a, lo[:, c], "left")
        boxes[:, 2 * k + 1] = np.searchsorted(a, hi[:, c], "right")
    empty = np.any(boxes[:, 1::2] <= boxes[:, 0::2], axis=1)  # Points.box returns None: nothing painted
    boxes[empty, 1::2] = boxes[empty, 0::2]
    p0 = np.array([t.p0 for t in tubes], dtype=np.float32)
    d = np.array([t.p1 for t in tubes], dtype=np.float32) - p0
    dd = np.array([float(v @ v) or 1e-6 for v in d], dtype=np.float32)  # as tube_inside (an einsum rounds otherwise)
    r0 = np.array([t.r0 for t in tubes], dtype=np.float32)
    dr = np.array([t.r1 - t.r0 for t in tubes], dtype=np.float32)
    xs, ys, zs = pts._axes[2], pts._axes[1], pts._axes[0]
    kernels.paint_tubes_kernel(lab, xs, ys, zs, boxes, p0, d, dd, r0, dr, np.float32(grow), _allowed(where), value)


def ellipsoid_inside(c, r, scale: float = 1.0) -> Callable:
    c = tuple(float(v) for v in c)
    r = tuple(float(v) * scale for v in r)

    def f(x, y, z):
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0

    return f


def paint_ellipsoid(lab, pts: Points, c, r, value: int, scale: float = 1.0, where=None) -> None:
    lo = np.asarray(c) - np.asarray(r) * scale
    hi = np.asarray(c) + np.asarray(r) * scale
    paint(lab, pts, lo, hi, ellipsoid_inside(c, r, scale), value, where)


def polyline(points, radii) -> tuple[Tube, ...]:
    """Tubes joining consecutive points, radius interpolated from ``radii`` (one per point)."""
    return tuple(
        Tube(tuple(map(float, points[i])), tuple(map(float, points[i + 1])), float(radii[i]), float(radii[i + 1]))
        for i in range(len(points) - 1)
    )


def branching_tree(
    rng: np.random.Generator,
    start,
    direction,
    length: float,
    radius: float,
    depth: int,
    accept: Callable[[np.ndarray], bool],
    taper: float = 0.72,
    shrink: float = 0.78,
    spread_deg: tuple[float, float] = (22.0, 40.0),
) -> list[Tube]:
    """A dichotomous tree: each branch splits into two children turned by ``spread_deg`` either side, shorter by
    ``shrink`` and thinner by ``taper``; a branch whose end fails ``accept`` (e.g. leaves the lung) is cut short
    and not continued."""
    out: list[Tube] = []
    stack = [(np.asarray(start, float), np.asarray(direction, float) / np.linalg.norm(direction), length, radius, 0)]
    while stack:
        p, d, ln, r, g = stack.pop()
        end = p + d * ln
        ok = accept(end)
        if not ok:
            end = p + d * ln * 0.5
            if not accept(end):
                continue
        r_end = r * taper**0.5
        out.append(Tube(tuple(p), tuple(end), float(r), float(r_end)))
        if not ok or g + 1 >= depth or r_end < 0.6:
            continue
        # a random axis perpendicular to d for the branching plane
        v = rng.normal(size=3)
        v -= v.dot(d) * d
        v /= np.linalg.norm(v) + 1e-9
        for sign in (-1.0, 1.0):
            ang = np.deg2rad(rng.uniform(*spread_deg)) * sign
            nd = np.cos(ang) * d + np.sin(ang) * v
            nd += rng.normal(scale=0.08, size=3)
            nd /= np.linalg.norm(nd)
            stack.append((end, nd, ln * shrink * rng.uniform(0.85, 1.15), r_end * taper**0.5, g + 1))
    return out
