"""Thorax anatomy of the phantom in the anatomical frame (mm, LPS, origin at the right diaphragm dome), as a label
map at any breathing phase.

What is modelled (phantom v2): a body outline with shoulders, chest-wall fat and, in some patients, breasts; arms
down beside the body or up out of the field; the curved patient table (shells and a foam core) under the body; a
rib cage of ribs attached to the vertebrae by their necks, vertebrae with cortex, marrow, canal, transverse and
spinous processes, sternum, clavicles and scapulae; lungs inside the rib cage, floored by diaphragm domes with
costophrenic recesses, with fissures and branching, tapering vessel trees; the mediastinum as fat holding the
heart (left ventricle with myocardium, right heart), the aorta (ascending, arch, descending), the pulmonary trunk
and arteries, the superior vena cava, the oesophagus, a trachea branching into main and lobar bronchi (walls and
lumen), and hilar or mediastinal lymph nodes in some patients; under the diaphragm liver, stomach (with gas),
spleen and kidneys (cortex and collecting system); pleural effusion, brown fat and distal atelectasis in some.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from igtv.phantom import config as C
from igtv.phantom.shapes import (
    RIB_P,
    Points,
    Tube,
    paint,
    paint_ellipsoid,
    paint_tube,
    paint_tubes,
    superellipse,
)
from igtv.phantom.skeleton import paint_skeleton


@dataclass(frozen=True)
class Node:
    """A lymph node: ellipsoid, its label slot and SUV."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    label: int
    suv: float
    station: str


@dataclass(frozen=True)
class Anatomy:
    """Per-patient anatomy parameters (mm, anatomical frame)."""

    body_ax: float
    body_ay: float
    fat_mm: float
    lung_cx: float
    lung_cy: float
    lung_ax: float
    lung_ay: float
    apex_z: float
    dome_right_z: float
    dome_left_z: float
    recess_mm: float
    heart_c: tuple[float, float, float]
    heart_axes: tuple[float, float, float]
    vert_y: float
    vert_r: float
    carina_z: float
    rib_period: float
    rib_phase: float
    diaphragm_amp_mm: float
    # SUV and HU of tissues
    suv: dict[int, float] = field(default_factory=dict)
    hu: dict[int, float] = field(default_factory=dict)
    # phantom v2
    body_post: float = 0.0  # posterior half-depth (anterior: body_ay)
    body_p: float = 2.0  # superellipse exponent of the outline
    shoulder: float = 0.0  # relative widening at the shoulders
    muscle_mm: float = 15.0  # chest-wall muscle between fat and ribs
    back_muscle_mm: float = 30.0
    rib_mm: float = 8.0
    med_w: float = 30.0  # half-width of the upper mediastinum
    liver_x: float = 35.0
    breasts: tuple[tuple[float, float, float, float, float, float], ...] = ()  # (cx, cy, cz, rx, ry, rz)
    arms: tuple[tuple[float, float, float], ...] = ()  # (cx, cy, radius): arms down, beside the body
    table: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # (y0, curvature, thickness, half-width)
    vessels: tuple[tuple[int, Tube], ...] = ()  # (label, tube): great vessels, oesophagus
    airways: tuple[Tube, ...] = ()
    lung_tree: tuple[Tube, ...] = ()
    fissures: tuple[tuple[float, ...], ...] = ()  # (side, px, py, pz, nx, ny, nz)
    nodes: tuple[Node, ...] = ()
    effusion: tuple[tuple[float, float, float], ...] = ()  # (side, depth, height) mm
    atelectasis: tuple[tuple[float, ...], ...] = ()  # (px, py, pz, ux, uy, uz, cos_half_angle, length)
    brown_fat: bool = False
    organs: tuple[tuple[int, tuple[float, float, float], tuple[float, float, float]], ...] = ()  # under the dome
    clavicles: tuple[Tube, ...] = ()
    spine_extras: tuple[Tube, ...] = ()  # transverse and spinous processes
    sternum: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)  # (y, rx, ry, z_lo, z_hi)
    features: dict[str, object] = field(default_factory=dict)


def _lung_sides(anat: Anatomy) -> tuple[tuple[float, float], ...]:
    # (centre x, dome z) of the right (x < 0) and left lung
    return ((-anat.lung_cx, anat.dome_right_z), (anat.lung_cx, anat.dome_left_z))


def dome_height(anat: Anatomy, x: np.ndarray, y: np.ndarray, shift_z=0.0) -> np.ndarray:
    """z of the diaphragm surface under (x, y); lower laterally and posteriorly (costophrenic recesses)."""
    heights = []
    for cx, dome_z in _lung_sides(anat):
        r2 = ((x - cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2
        heights.append(dome_z - anat.recess_mm * np.minimum(r2, 1.6) + shift_z)
    return np.where(x < 0, heights[0], heights[1])


def _post(anat: Anatomy) -> float:
    return anat.body_post or anat.body_ay


def body_half_width(anat: Anatomy, z) -> np.ndarray:
    """Half-width of the body outline at height z: wider at the shoulders."""
    t = np.clip((np.asarray(z) - (anat.apex_z - 45.0)) / 55.0, 0.0, 1.0)
    return anat.body_ax * (1.0 + anat.shoulder * t * t * (3 - 2 * t))


def ribcage(anat: Anatomy, inner: bool = False) -> tuple[float, float, float]:
    """(half-width, anterior, posterior half-depth) of the rib cage's outer (or inner) surface."""
    d = anat.rib_mm if inner else 0.0
    return (
        anat.body_ax - anat.fat_mm - anat.muscle_mm - d,
        anat.body_ay - anat.fat_mm - anat.muscle_mm - d,
        _post(anat) - anat.fat_mm - anat.back_muscle_mm - d,
    )


def lung_mask(anat: Anatomy, x, y, z, dome=None) -> np.ndarray:
    """Both lungs: inside the rib cage, beside the mediastinum, above the diaphragm, tapering to the apex."""
    x, y, z = np.asarray(x), np.asarray(y), np.asarray(z)
    if Points(x, y, z).grid:  # nothing outside the lungs' in-plane box (1 mm to spare) can be lung: evaluate it only
        bx = _span(np.abs(np.abs(x[0, 0]) - anat.lung_cx) <= anat.lung_ax + 1.0)
        by = _span(np.abs(y[0, :, 0] - anat.lung_cy) <= anat.lung_ay + 1.0)
        out = np.zeros((z.shape[0], y.shape[1], x.shape[2]), dtype=bool)
        if bx and by:
            d = None if dome is None else np.broadcast_to(dome, (1, *out.shape[1:]))[..., by, bx]
            out[:, by, bx] = _lung_mask(anat, x[..., bx], y[:, by], z, d)
        return out
    return _lung_mask(anat, x, y, z, dome)


def _span(hit: np.ndarray) -> slice | None:
    i = np.flatnonzero(hit)
    return slice(int(i[0]), int(i[-1]) + 1) if i.size else None


def _lung_mask(anat: Anatomy, x, y, z, dome=None) -> np.ndarray:
    if dome is None:
        dome = dome_height(anat, x, y)
    ra, rb_ant, rb_post = ribcage(anat, inner=True)
    cage = superellipse(x, y, ra, rb_ant, rb_post, RIB_P) <= 1.0
    taper = np.sqrt(np.clip((anat.apex_z - z) / 70.0, 0.0, 1.0))
    side = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), bool)
    for cx, _ in _lung_sides(anat):
        r2 = ((x - cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2
        side = side | (r2 <= taper**2)
    return cage & side & (z >= dome) & ~mediastinum(anat, x, y, z)


def hila(anat: Anatomy) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Right and left hilum (where the pulmonary arteries and main bronchi enter the lungs)."""
    hx = anat.med_w + 10.0
    return (-hx, anat.lung_cy - 5.0, anat.carina_z - 25.0), (hx, anat.lung_cy + 3.0, anat.carina_z - 15.0)


def mediastinum(anat: Anatomy, x, y, z) -> np.ndarray:
    """The space between the lungs, from the sternum to the front of the spine (wider low in the chest)."""
    _, rb_ant, _ = ribcage(anat, inner=True)
    y0, y1 = -rb_ant, anat.vert_y + 0.2 * anat.vert_r
    cy, hy = (y0 + y1) / 2, (y1 - y0) / 2
    widen = 1.0 + 0.35 * np.clip((anat.carina_z - z) / 80.0, 0.0, 1.0)
    w = anat.med_w * widen * np.sqrt(np.clip(1.0 - ((y - cy) / hy) ** 2, 0.0, 1.0))
    return (np.abs(x - 4.0) <= w) & (np.abs(y - cy) <= hy)


def flag_reach(anat: Anatomy, margin_mm: float = 2.0) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Where :func:`labels`' ``diaphragm`` and ``heart`` flags can change a label (no displacement): below the
    returned z (the domes, the organs that move with them, pleural effusion up its height), and inside the returned
    (lo, hi) box of the heart (x, y, z). Every paint of :func:`labels` depends only on the point and its label so
    far, so outside these a map made without the organ is the map made with it (what :func:`simulate_pet` uses)."""
    z_top = max(anat.dome_right_z, anat.dome_left_z) + 1.0
    z_top = max([z_top] + [c[2] + r[2] for _, c, r in anat.organs] + [z_top + h for _, _, h in anat.effusion])
    c, r = np.asarray(anat.heart_c, dtype=float), np.asarray(anat.heart_axes, dtype=float)
    return z_top + margin_mm, (c - r - margin_mm, c + r + margin_mm)


def labels(
    anat: Anatomy,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    diaphragm_dz: float = 0.0,
    heart_dz: float = 0.0,
    heart: bool = True,
    diaphragm: bool = True,
) -> np.ndarray:
    """Tissue label of every point; ``x, y, z`` broadcast together (anatomical mm).

    ``diaphragm_dz``/``heart_dz`` displace the diaphragm (and the organs under it) and the heart along z
    (breathing; a free-breathing CT calls this slice by slice). ``heart=False`` or
    ``diaphragm=False`` leave that organ out (what would be there without it), for the PET motion model.
    """
    pts = Points(x, y, z)
    x, y, z = pts.x, pts.y, pts.z
    shape = pts.shape
    lab = np.full(shape, C.AIR, dtype=np.uint8)
    big = 1e4
    diaphragm_dz, heart_dz = float(diaphragm_dz), float(heart_dz)
    ddz = abs(diaphragm_dz)

    # table under the body: two shells around a foam core, curved up at the sides
    if anat.table[2] > 0:
        ty0, curv, th, tw = anat.table

        def table_top(xx):
            return ty0 - curv * xx * xx

        paint(
            lab,
            pts,
            (-tw, ty0 - curv * tw * tw - 1, -big),
            (tw, ty0 + th, big),
            lambda xx, yy, zz: (yy >= table_top(xx)) & (yy <= table_top(xx) + th) & (np.abs(xx) <= tw),
            C.TABLE,
        )
        paint(
            lab,
            pts,
            (-tw, ty0 - curv * tw * tw - 1, -big),
            (tw, ty0 + th, big),
            lambda xx, yy, zz: (
                (yy >= table_top(xx) + 3.0) & (yy <= table_top(xx) + th - 3.0) & (np.abs(xx) <= tw - 4.0)
            ),
            C.TABLE_CORE,
        )

    # arms down beside the body: fat, muscle, humerus (cortex and marrow)
    for cx, cy, r in anat.arms:
        t = Tube((cx, cy, -big), (cx, cy, big), r, r)
        paint_tube(lab, pts, t, C.FAT)
        paint_tube(lab, pts, t, C.SOFT, grow=-5.0)
        hx = cx - math.copysign(0.15 * r, cx)
        paint_tube(lab, pts, Tube((hx, cy, -big), (hx, cy, big), 11.0, 11.0), C.BONE)
        paint_tube(lab, pts, Tube((hx, cy, -big), (hx, cy, big), 6.5, 6.5), C.MARROW)

    # body outline (shoulders widen it at the top), subcutaneous fat, muscle
    post, p = _post(anat), anat.body_p
    wmax = anat.body_ax * (1 + anat.shoulder)

    def body_fn(shrink):
        def f(xx, yy, zz):
            w = body_half_width(anat, zz) - shrink
            if yy.ndim == 3 and yy.shape[0] == yy.shape[2] == 1:  # a grid: each row is anterior or posterior
                ax, ant = np.abs(xx / w), yy[0, :, 0] < 0
                out = np.empty(np.broadcast_shapes(ax.shape, yy.shape), dtype=bool)
                for rows, q, half in ((ant, p, anat.body_ay - shrink), (~ant, p + 1.0, post - shrink)):
                    out[:, rows] = ax**q + np.abs(yy[:, rows] / half) ** q <= 1.0
                return out
            front = np.abs(xx / w) ** p + np.abs(yy / (anat.body_ay - shrink)) ** p
            back = np.abs(xx / w) ** (p + 1.0) + np.abs(yy / (post - shrink)) ** (p + 1.0)  # flatter on the table
            return np.where(yy < 0, front, back) <= 1.0

        return f

    paint(lab, pts, (-wmax, -anat.body_ay, -big), (wmax, post, big), body_fn(0.0), C.FAT)
    for bx, by, bz, rx, ry, rz in anat.breasts:
        paint_ellipsoid(lab, pts, (bx, by, bz), (rx, ry, rz), C.FAT, where=(C.AIR, C.FAT))
        paint_ellipsoid(lab, pts, (bx, by + 0.2 * ry, bz), (rx, ry, rz), C.BREAST, scale=0.55, where=(C.FAT,))
    paint(lab, pts, (-wmax, -anat.body_ay, -big), (wmax, post, big), body_fn(anat.fat_mm), C.SOFT)
    if anat.brown_fat:  # supraclavicular and paravertebral brown fat
        for s in (-1.0, 1.0):
            paint_ellipsoid(
                lab,
                pts,
                (s * 0.45 * anat.body_ax, -0.1 * anat.body_ay, anat.apex_z + 5.0),
                (28.0, 22.0, 30.0),
                C.BROWN_FAT,
                where=(C.SOFT, C.FAT),
            )
            paint_tube(
                lab,
                pts,
                Tube(
                    (s * (anat.vert_r + 16.0), anat.vert_y + 4.0, anat.carina_z - 30.0),
                    (s * (anat.vert_r + 16.0), anat.vert_y + 4.0, anat.apex_z + 20.0),
                    6.0,
                    6.0,
                ),
                C.BROWN_FAT,
                where=(C.SOFT,),
            )

    # inside the rib cage: mediastinal fat, then the abdomen under the diaphragm, then the lungs
    ra, rb_ant, rb_post = ribcage(anat)
    cage_lo, cage_hi = (-ra, -rb_ant, -big), (ra, rb_post, big)

    def cage_fn(xx, yy, zz):
        return superellipse(xx, yy, ra, rb_ant, rb_post, RIB_P) <= 1.0

    paint(lab, pts, cage_lo, cage_hi, cage_fn, C.MED_FAT)
    ra_i, rb_ant_i, rb_post_i = ribcage(anat, inner=True)
    paint(
        lab,
        pts,
        cage_lo,
        cage_hi,
        lambda xx, yy, zz: superellipse(xx, yy, ra_i, rb_ant_i, rb_post_i, RIB_P) > 1.0,
        C.SOFT,
        where=(C.MED_FAT,),
    )  # intercostal muscle between the ribs
    if diaphragm:
        dome = dome_height(anat, x, y, diaphragm_dz)
        top = max(anat.dome_right_z, anat.dome_left_z) + diaphragm_dz + 1.0
        for value, right in ((C.LIVER, True), (C.ABDOMEN, False)):

            def below(xx, yy, zz, right=right):
                side = (xx < anat.liver_x) if right else (xx >= anat.liver_x)
                return cage_fn(xx, yy, zz) & (zz < dome_height(anat, xx, yy, diaphragm_dz)) & side

            paint(
                lab,
                pts,
                (cage_lo[0], cage_lo[1], -big),
                (cage_hi[0], cage_hi[1], top),
                below,
                value,
                where=(C.MED_FAT,),
            )
        for organ, c, r in anat.organs:  # stomach, gas, spleen, kidneys: move with the diaphragm
            paint_ellipsoid(
                lab, pts, (c[0], c[1], c[2] + diaphragm_dz), r, organ, where=(C.LIVER, C.ABDOMEN, C.STOMACH, C.SOFT)
            )
    else:
        dome = np.full(np.broadcast_shapes(x.shape, y.shape), -1e9, dtype=np.float32)
    lung = np.broadcast_to(lung_mask(anat, x, y, z, dome), shape)
    lab[lung & (lab == C.MED_FAT)] = C.LUNG
    for side, depth, height in anat.effusion:  # dependent fluid at the lung base
        d0 = dome_height(anat, x, y, diaphragm_dz) if diaphragm else dome
        level = rb_post - anat.rib_mm - depth * np.clip(1.0 - (z - d0) / height, 0.0, 1.0)
        m = lung & np.broadcast_to((y >= level) & (np.sign(x) == side), shape)
        lab[m] = C.EFFUSION

    # heart: envelope (right heart and atria: blood with a thin wall), left ventricle (myocardium around blood)
    if heart:
        hx, hy, hz = anat.heart_c
        ax, ay, az = anat.heart_axes
        hzz = hz + heart_dz
        paint_ellipsoid(lab, pts, (hx, hy, hzz), (ax, ay, az), C.HEART_RV)
        paint_ellipsoid(lab, pts, (hx, hy, hzz), (ax - 3.5, ay - 3.5, az - 3.5), C.HEART_BLOOD)
        lv_c = (hx + 0.22 * ax, hy + 0.12 * ay, hzz - 0.12 * az)
        lv_r = (0.62 * ax, 0.66 * ay, 0.66 * az)
        paint_ellipsoid(lab, pts, lv_c, lv_r, C.HEART_WALL)
        paint_ellipsoid(lab, pts, lv_c, tuple(v - 10.0 for v in lv_r), C.HEART_BLOOD)

    # great vessels and oesophagus (inside the rib cage; the descending aorta also under the diaphragm)
    for value, t in anat.vessels:
        paint_tube(lab, pts, t, value, where=(C.MED_FAT, C.LUNG, C.LIVER, C.ABDOMEN, C.SOFT, C.HEART_RV, C.HEART_BLOOD))
    # airways: wall, then lumen
    for t in anat.airways:
        paint_tube(
            lab,
            pts,
            t,
            C.AIRWAY_WALL,
            grow=max(1.2, 0.25 * t.r0),
            where=(C.MED_FAT, C.LUNG, C.SOFT, C.FAT, C.BROWN_FAT),
        )
    paint_tubes(lab, pts, anat.airways, C.TRACHEA, where=(C.AIRWAY_WALL,))
    # lung vessel trees and fissures, inside the lungs only
    paint_tubes(lab, pts, anat.lung_tree, C.LUNG_VESSEL, where=(C.LUNG,))
    for side, px, py, pz, nx, ny, nz in anat.fissures:

        def fis(xx, yy, zz, px=px, py=py, pz=pz, nx=nx, ny=ny, nz=nz, side=side):
            d = (xx - px) * nx + (yy - py) * ny + (zz - pz) * nz
            return (np.abs(d) <= 0.7) & (np.sign(xx) == side)

        lo = (min(0.0, side * ra), -rb_ant, anat.dome_left_z - anat.recess_mm - ddz)
        hi = (max(0.0, side * ra), rb_post, anat.apex_z)
        paint(lab, pts, lo, hi, fis, C.FISSURE, where=(C.LUNG,))
    # distal atelectasis behind central tumours: a cone of collapsed lung
    for px, py, pz, ux, uy, uz, cos_half, length in anat.atelectasis:

        def cone(xx, yy, zz, px=px, py=py, pz=pz, ux=ux, uy=uy, uz=uz, cos_half=cos_half, length=length):
            dx, dy, dz = xx - px, yy - py, zz - pz
            along = dx * ux + dy * uy + dz * uz
            dist = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6
            return (along > 0) & (along <= length) & (along >= cos_half * dist)

        paint(
            lab,
            pts,
            (px - length, py - length, pz - length),
            (px + length, py + length, pz + length),
            cone,
            C.ATELECTASIS,
            where=C.LUNG_LIKE,
        )
    # lymph nodes: in mediastinal fat, at the hila, against the airways
    for nd in anat.nodes:
        paint_ellipsoid(
            lab, pts, nd.centre, nd.radii, nd.label, where=(C.MED_FAT, C.LUNG, C.LUNG_VESSEL, C.SOFT, C.FISSURE)
        )

    paint_skeleton(lab, pts, anat, ribcage(anat), ribcage(anat, inner=True))
    return lab
