"""The phantom's skeleton: ribs attached to the spine by their necks, vertebrae (cortex, marrow, discs, canal,
transverse and spinous processes), sternum, clavicles and scapulae, painted onto a label map."""

from __future__ import annotations

import numpy as np

from igtv.phantom import config as C
from igtv.phantom.shapes import RIB_P, Points, paint, paint_tube, paint_tubes, superellipse


def paint_skeleton(lab: np.ndarray, pts: Points, anat, cage: tuple, cage_inner: tuple) -> None:
    """Paint the bones of ``anat`` (an :class:`igtv.phantom.anatomy.Anatomy`) into ``lab`` at ``pts``; ``cage`` and
    ``cage_inner`` are the rib cage's outer and inner (half-width, anterior, posterior half-depth)."""
    big = 1e4
    ra, rb_ant, rb_post = cage
    ra_i, rb_ant_i, rb_post_i = cage_inner
    cage_lo, cage_hi = (-ra, -rb_ant, -big), (ra, rb_post, big)

    def ribs(xx, yy, zz):
        shell = (superellipse(xx, yy, ra, rb_ant, rb_post, RIB_P) <= 1.0) & (
            superellipse(xx, yy, ra_i, rb_ant_i, rb_post_i, RIB_P) > 1.0
        )
        band = np.mod(zz - anat.rib_phase - 0.3 * (yy - anat.vert_y), anat.rib_period) < 9.0
        return shell & band & (yy > -0.7 * rb_ant)

    paint(lab, pts, cage_lo, cage_hi, ribs, C.RIB)

    for sgn in (-1.0, 1.0):  # rib necks: from the vertebra back and out to the posterior rib arc
        x0, y0 = sgn * 0.8 * anat.vert_r, anat.vert_y + 0.3 * anat.vert_r
        x1 = sgn * 0.3 * ra
        y1 = rb_post * (1.0 - 0.3**RIB_P) ** (1.0 / RIB_P) - 0.5 * anat.rib_mm

        def neck(xx, yy, zz, x0=x0, y0=y0, x1=x1, y1=y1):
            t = np.clip(((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
            d2 = (xx - x0 - t * (x1 - x0)) ** 2 + (yy - y0 - t * (y1 - y0)) ** 2
            return (d2 <= 4.5**2) & (np.mod(zz - anat.rib_phase, anat.rib_period) < 8.0)

        paint(
            lab,
            pts,
            (min(x0, x1) - 5, min(y0, y1) - 5, -big),
            (max(x0, x1) + 5, max(y0, y1) + 5, big),
            neck,
            C.RIB,
            where=(C.SOFT, C.MED_FAT, C.BROWN_FAT),
        )
    disc = lambda zz: np.mod(zz - anat.rib_phase, anat.rib_period) < 5.0  # noqa: E731
    vr = anat.vert_r
    vlo, vhi = (-vr, anat.vert_y - vr, -big), (vr, anat.vert_y + vr, big)
    paint(lab, pts, vlo, vhi, lambda xx, yy, zz: (xx**2 + (yy - anat.vert_y) ** 2 <= vr**2) & ~disc(zz), C.RIB)
    paint(
        lab,
        pts,
        vlo,
        vhi,
        lambda xx, yy, zz: (xx**2 + (yy - anat.vert_y) ** 2 <= (vr - 2.0) ** 2) & ~disc(zz),
        C.VERTEBRA,
    )
    paint(lab, pts, vlo, vhi, lambda xx, yy, zz: (xx**2 + (yy - anat.vert_y) ** 2 <= vr**2) & disc(zz), C.SOFT)
    cy_canal = anat.vert_y + vr + 9.0

    def canal_column(radius_mm: float, label: int) -> None:  # a vertical cylinder behind the vertebral bodies
        lo, hi = (-radius_mm, cy_canal - radius_mm, -big), (radius_mm, cy_canal + radius_mm, big)
        paint(lab, pts, lo, hi, lambda xx, yy, zz: xx**2 + (yy - cy_canal) ** 2 <= radius_mm**2, label)

    canal_column(13.0, C.RIB)  # the neural arch
    paint_tubes(lab, pts, anat.spine_extras, C.RIB, where=(C.SOFT, C.MED_FAT, C.FAT, C.BROWN_FAT, C.LUNG))
    canal_column(7.5, C.CANAL)  # the canal inside it
    sy, srx, sry, sz0, sz1 = anat.sternum
    if srx > 0:
        for grow, value in ((0.0, C.BONE), (-2.0, C.MARROW)):
            paint(
                lab,
                pts,
                (-srx, sy - sry, sz0),
                (srx, sy + sry, sz1),
                lambda xx, yy, zz, g=grow: (xx / (srx + g)) ** 2 + ((yy - sy) / (sry + g)) ** 2 <= 1.0,
                value,
            )
    for t in anat.clavicles:
        paint_tube(lab, pts, t, C.BONE, where=(C.SOFT, C.FAT, C.MED_FAT, C.BROWN_FAT, C.LUNG))
    # scapulae: plates behind the ribs, narrowing downwards
    z_hi, z_lo_s = anat.apex_z + 10.0, anat.apex_z - 140.0

    def scapula(xx, yy, zz):
        ax_ = np.abs(xx)
        yc = rb_post * np.clip(1.0 - (ax_ / ra) ** RIB_P, 0.0, 1.0) ** (1.0 / RIB_P)
        frac = np.clip((zz - z_lo_s) / (z_hi - z_lo_s), 0.0, 1.0)
        wide = (ax_ >= 0.32 * ra) & (ax_ <= 0.32 * ra + 0.55 * ra * frac + 8.0)
        return wide & (yy >= yc + 4.0) & (yy <= yc + 10.0) & (zz >= z_lo_s) & (zz <= z_hi)

    paint(lab, pts, (-ra, 0.0, z_lo_s), (ra, rb_post + 12.0, z_hi), scapula, C.BONE, where=(C.SOFT,))
