"""Numba kernels for the phantom's hot spots, bitwise equal to the NumPy reference they replace.

Imported only when numba is installed (``pip install igtv[fast]``, :func:`igtv.phantom.kernels.fast`); the lesion
fields, the Gaussian filters and the tube painting fall back to their NumPy / scipy code otherwise, and
``tests/phantom/test_fast.py`` checks that both give identical bits. What keeps them identical: the same operations
in the same order (float64 for the lesions and filters' sums, float32 for the tubes; no fastmath, so no fused
multiply-adds or reordered sums), ``cos`` and ``sqrt`` that round as NumPy's do on x86_64 (checked by the test),
and the one function that does not (NumPy's vectorised ``exp`` of the necrotic core) left to NumPy on the lesion's
own voxels.

Why it is faster: the reference evaluates every lobe, spike and heterogeneity wave on every voxel of the
lesion's box, through full-size temporaries; the kernel skips the lobes of every voxel whose ellipsoid radius
already lies beyond the largest the lobes can reach, and computes the uptake only inside.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def lesion_fields_kernel(
    dx, dy, dz, r, axes, lobes, lobe_phase, bound, sats, spikes, r_mean, hetero, suv_peak, uptake, inside, suv, rho
):  # pragma: no cover - compiled
    """Fill ``inside`` (bool), and where inside ``suv`` (before necrosis and cavity) and ``rho``, over the box
    ``dz x dy x dx`` of offsets from the lesion centre (float64, mm)."""
    n_lobes, n_sats, n_spikes, n_het = lobes.shape[0], sats.shape[0], spikes.shape[0], hetero.shape[0]
    het_div = float(max(n_het, 1))
    for k in range(dz.shape[0]):
        for j in range(dy.shape[0]):
            for i in range(dx.shape[0]):
                x, y, z = dx[i], dy[j], dz[k]
                q0 = r[0, 0] * x + r[1, 0] * y + r[2, 0] * z  # body-fixed coordinates
                q1 = r[0, 1] * x + r[1, 1] * y + r[2, 1] * z
                q2 = r[0, 2] * x + r[1, 2] * y + r[2, 2] * z
                a, b, c = q0 / axes[0], q1 / axes[1], q2 / axes[2]
                rh = math.sqrt(a * a + b * b + c * c)
                n2 = q0 * q0 + q1 * q1 + q2 * q2
                hit = False
                if rh <= bound:  # beyond it no lobe can reach: 1 + bump <= 1 + sum |amplitude|
                    norm = math.sqrt(n2) + 1e-6
                    bump = 0.0
                    for m in range(n_lobes):
                        proj = q0 * lobes[m, 0] + q1 * lobes[m, 1] + q2 * lobes[m, 2]
                        bump = bump + lobes[m, 4] * math.cos(lobes[m, 3] * proj / norm + lobe_phase[m])
                    hit = rh <= 1.0 + bump
                for m in range(n_sats):
                    if hit:
                        break
                    e0, e1, e2 = q0 - sats[m, 0], q1 - sats[m, 1], q2 - sats[m, 2]
                    hit = e0 * e0 + e1 * e1 + e2 * e2 <= sats[m, 3] * sats[m, 3]
                for m in range(n_spikes):
                    if hit:
                        break
                    t = q0 * spikes[m, 0] + q1 * spikes[m, 1] + q2 * spikes[m, 2]
                    d2 = max(n2 - t * t, 0.0)
                    length = spikes[m, 3]
                    tip = r_mean + length
                    w = spikes[m, 4] * min(max((tip - t) / length, 0.0), 1.0)
                    hit = t > 0 and t <= tip and d2 <= w * w
                inside[k, j, i] = hit
                if hit and uptake:
                    het = 0.0
                    for m in range(n_het):
                        het = het + math.cos(hetero[m, 0] * q0 + hetero[m, 1] * q1 + hetero[m, 2] * q2 + hetero[m, 3])
                    suv[k, j, i] = suv_peak * (0.82 + 0.18 * (het / het_div))
                    rho[k, j, i] = rh


def lesion_fields_fast(les, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, uptake: bool):
    """:func:`igtv.phantom.lesion.lesion_fields` from the 1D offsets of the box's columns, rows and slices (the
    differences the reference forms, in its dtypes)."""
    f64 = np.float64
    dx, dy, dz = (np.ascontiguousarray(v.ravel(), dtype=f64) for v in (dx, dy, dz))
    shape = (dz.size, dy.size, dx.size)
    lobes = np.array(les.lobes, dtype=f64).reshape(-1, 5)
    bound = 1.0 + float(np.abs(lobes[:, 4]).sum()) * (1.0 + 1e-9) + 1e-9
    inside = np.zeros(shape, dtype=np.bool_)
    suv = np.zeros(shape if uptake else (0, 0, 0), dtype=f64)
    rho = np.zeros(shape if uptake else (0, 0, 0), dtype=f64)
    lesion_fields_kernel(
        dx,
        dy,
        dz,
        np.asarray(les.rotation, dtype=f64).reshape(3, 3),
        np.asarray(les.axes, dtype=f64),
        lobes,
        np.array(les.lobe_phase, dtype=f64).reshape(-1),
        bound,
        np.array(les.satellites, dtype=f64).reshape(-1, 4),
        np.array(les.spikes, dtype=f64).reshape(-1, 5),
        float(np.mean(les.axes)),
        np.array(les.hetero, dtype=f64).reshape(-1, 4),
        float(les.suv_peak),
        uptake,
        inside,
        suv,
        rho,
    )
    if not uptake:
        return inside, None
    if les.necrosis > 0 or les.cavity > 0:  # on the lesion's voxels only, with NumPy's own exp (see module notes)
        s, rh = suv[inside], rho[inside]
        if les.necrosis > 0:
            s = s * (1.0 - les.necrosis * np.exp(-((rh / 0.5) ** 4)))
        if les.cavity > 0:
            s = np.where(rh <= les.cavity, 0.0, s)
        suv[inside] = s
    return inside, suv


@numba.njit(cache=True, nogil=True)
def blur_middle_axis_kernel(src, weights, reflect, out):  # pragma: no cover - compiled
    """``scipy.ndimage.correlate1d`` of a symmetric filter along the middle axis of ``src`` (a, n, b), float32 in
    and out, with its arithmetic: each output is ``w0 x0 + sum_j (x_-j + x_j) w_j`` in float64, j from the edge of
    the filter inwards; outside the axis ``reflect`` mirrors (d c b a | a b c d), otherwise zeros. The inner loop
    runs along the contiguous last axis, where scipy's walks the strided one."""
    na, n, nb = src.shape
    r = (weights.shape[0] - 1) // 2
    acc = np.empty(nb, dtype=np.float64)
    # inner loops over row views from index 0, so numba knows no index is negative and vectorises them
    for a in range(na):
        for i in range(n):
            w0, row = weights[r], src[a, i]
            for b in range(nb):
                acc[b] = np.float64(row[b]) * w0
            for jj in range(r, 0, -1):
                lo, hi = i - jj, i + jj
                lo_in, hi_in = True, True
                if reflect:
                    while lo < 0 or lo >= n:
                        lo = -lo - 1 if lo < 0 else 2 * n - lo - 1
                    while hi < 0 or hi >= n:
                        hi = -hi - 1 if hi < 0 else 2 * n - hi - 1
                else:
                    lo_in, hi_in = lo >= 0, hi < n
                w = weights[r - jj]
                if lo_in and hi_in:
                    rl, rh = src[a, lo], src[a, hi]
                    for b in range(nb):
                        acc[b] += (np.float64(rl[b]) + np.float64(rh[b])) * w
                elif lo_in:
                    rl = src[a, lo]
                    for b in range(nb):
                        acc[b] += (np.float64(rl[b]) + 0.0) * w
                elif hi_in:
                    rh = src[a, hi]
                    for b in range(nb):
                        acc[b] += (0.0 + np.float64(rh[b])) * w
                else:
                    for b in range(nb):
                        acc[b] += 0.0 * w
            dst = out[a, i]
            for b in range(nb):
                dst[b] = np.float32(acc[b])


@numba.njit(cache=True, nogil=True)
def _line_sums(row, weights, reflect, line, acc):  # pragma: no cover - compiled
    """scipy's correlate1d sums of one row into ``acc`` (float64): ``row`` copied into the line buffer ``line``
    (float32, len(row) + 2r) extended by ``reflect`` (more than once on a row shorter than the filter) or zeros, then
    ``w0 x0 + sum_j (x_-j + x_j) w_j``, j from the edge of the filter inwards. Every inner loop runs over a view
    from index 0: numba then knows no index is negative, and vectorises it."""
    n = row.shape[0]
    r = (weights.shape[0] - 1) // 2
    mid = line[r : r + n]
    for i in range(n):
        mid[i] = row[i]
    for i in range(1, r + 1):
        line[r - i] = row[_reflect(-i, n)] if reflect else np.float32(0.0)
        line[r + n - 1 + i] = row[_reflect(n - 1 + i, n)] if reflect else np.float32(0.0)
    w0 = weights[r]
    for i in range(n):
        acc[i] = np.float64(mid[i]) * w0
    for jj in range(r, 0, -1):
        lo, hi, w = line[r - jj : r - jj + n], line[r + jj : r + jj + n], weights[r - jj]
        for i in range(n):
            acc[i] += (np.float64(lo[i]) + np.float64(hi[i])) * w


@numba.njit(cache=True, nogil=True)
def blur_last_axis_kernel(src, weights, reflect, out):  # pragma: no cover - compiled
    """``scipy.ndimage.correlate1d`` of a symmetric filter along the last axis of ``src`` (rows, n), float32 in and
    out, as scipy does it: each row copied into a line buffer extended by ``reflect`` or zeros, then
    ``w0 x0 + sum_j (x_-j + x_j) w_j`` in float64, j from the edge of the filter inwards."""
    rows, n = src.shape
    line = np.empty(n + weights.shape[0] - 1, dtype=np.float32)  # float32 holds the values exactly
    acc = np.empty(n, dtype=np.float64)
    for k in range(rows):
        _line_sums(src[k], weights, reflect, line, acc)
        dst = out[k]
        for i in range(n):
            dst[i] = np.float32(acc[i])


@numba.njit(cache=True, nogil=True)
def paint_tubes_kernel(lab, xs, ys, zs, boxes, p0, d, dd, r0, dr, grow, allowed, value):  # pragma: no cover
    """:func:`igtv.phantom.shapes.tube_inside` and :func:`~igtv.phantom.shapes.paint` of each tube in order, in
    the float32 arithmetic NumPy does there: ``boxes`` (n, 6) are the grid index ranges (z0, z1, y0, y1, x0, x1),
    ``p0``, ``d`` (n, 3) float32, ``dd``, ``r0``, ``dr`` (n,) float32, ``allowed`` a 256-entry table (all True
    when the paint has no ``where``)."""
    one, zero = np.float32(1.0), np.float32(0.0)
    for t in range(boxes.shape[0]):
        z0, z1, y0, y1, x0, x1 = boxes[t, 0], boxes[t, 1], boxes[t, 2], boxes[t, 3], boxes[t, 4], boxes[t, 5]
        d0, d1, d2, q, a0, slope = d[t, 0], d[t, 1], d[t, 2], dd[t], r0[t], dr[t]
        for k in range(z0, z1):
            dz = zs[k] - p0[t, 2]
            for j in range(y0, y1):
                dy = ys[j] - p0[t, 1]
                for i in range(x0, x1):
                    dx = xs[i] - p0[t, 0]
                    s = (dx * d0 + dy * d1 + dz * d2) / q
                    s = min(max(s, zero), one)
                    r = a0 + slope * s + grow
                    ex, ey, ez = dx - s * d0, dy - s * d1, dz - s * d2
                    if ex * ex + ey * ey + ez * ez <= r * r and allowed[lab[k, j, i]]:
                        lab[k, j, i] = value


@numba.njit(cache=True, nogil=True)
def _reflect(k, n):  # pragma: no cover - compiled
    """scipy's 'reflect' extension of index ``k`` on an axis of ``n`` (d c b a | a b c d | d c b a)."""
    while k < 0 or k >= n:
        k = -k - 1 if k < 0 else 2 * n - k - 1
    return k


@numba.njit(cache=True, nogil=True)
def ct_slice_kernel(ct, noise, scale, weights, out):  # pragma: no cover - compiled
    """One CT slice's finish, in the order and arithmetic of :func:`igtv.phantom.imaging.finish_ct`'s NumPy path:
    ``ct + noise * scale`` in float32, scipy's reflect-mode Gaussian along y and then x (float64 sums of
    ``w0 x0 + sum_j (x_-j + x_j) w_j``, j from the edge inwards, float32 between the passes), ``rint``, clipped to
    [-1024, 3071], int16. One slice (1 MB) stays in cache through every step, where the NumPy path streams the
    volume through memory six times."""
    ny, nx = ct.shape
    r = (weights.shape[0] - 1) // 2
    w0 = weights[r]
    # every inner loop runs over a row view from index 0: numba then knows no index is negative, and vectorises
    a = np.empty((ny, nx), dtype=np.float32)
    for j in range(ny):
        src, nse, dst = ct[j], noise[j], a[j]
        for i in range(nx):
            dst[i] = src[i] + nse[i] * scale
    b = np.empty((ny, nx), dtype=np.float32)
    acc = np.empty(nx, dtype=np.float64)
    for j in range(ny):  # y pass: rows in, rows out, x innermost
        src = a[j]
        for i in range(nx):
            acc[i] = np.float64(src[i]) * w0
        for jj in range(r, 0, -1):
            lo, hi, w = a[_reflect(j - jj, ny)], a[_reflect(j + jj, ny)], weights[r - jj]
            for i in range(nx):
                acc[i] += (np.float64(lo[i]) + np.float64(hi[i])) * w
        dst = b[j]
        for i in range(nx):
            dst[i] = np.float32(acc[i])
    line = np.empty(nx + 2 * r, dtype=np.float32)  # float32 holds b's values exactly; the sums convert them
    for j in range(ny):  # x pass: scipy's line buffer, the row extended by reflection
        _line_sums(b[j], weights, True, line, acc)
        dst = out[j]
        for i in range(nx):
            v = np.rint(np.float32(acc[i]))
            dst[i] = np.int16(min(max(v, np.float32(-1024.0)), np.float32(3071.0)))
