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
    Points,
    Tube,
    branching_tree,
    paint,
    paint_ellipsoid,
    paint_tube,
    polyline,
)


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


def _superellipse(x, y, ax, ay_ant, ay_post, p):
    """Superellipse 'radius' (<= 1 inside) with different anterior (y < 0) and posterior half-depths."""
    ay = np.where(y < 0, ay_ant, ay_post)
    return np.abs(x / ax) ** p + np.abs(y / ay) ** p


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


RIB_P = 2.3  # rib cage superellipse exponent


def lung_mask(anat: Anatomy, x, y, z, dome=None) -> np.ndarray:
    """Both lungs: inside the rib cage, beside the mediastinum, above the diaphragm, tapering to the apex."""
    if dome is None:
        dome = dome_height(anat, x, y)
    ra, rb_ant, rb_post = ribcage(anat, inner=True)
    cage = _superellipse(x, y, ra, rb_ant, rb_post, RIB_P) <= 1.0
    taper = np.sqrt(np.clip((anat.apex_z - z) / 70.0, 0.0, 1.0))
    side = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), bool)
    for cx, _ in _lung_sides(anat):
        r2 = ((x - cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2
        side = side | (r2 <= taper**2)
    return cage & side & (z >= dome) & ~mediastinum(anat, x, y, z)


def mediastinum(anat: Anatomy, x, y, z) -> np.ndarray:
    """The space between the lungs, from the sternum to the front of the spine (wider low in the chest)."""
    _, rb_ant, _ = ribcage(anat, inner=True)
    y0, y1 = -rb_ant, anat.vert_y + 0.2 * anat.vert_r
    cy, hy = (y0 + y1) / 2, (y1 - y0) / 2
    widen = 1.0 + 0.35 * np.clip((anat.carina_z - z) / 80.0, 0.0, 1.0)
    w = anat.med_w * widen * np.sqrt(np.clip(1.0 - ((y - cy) / hy) ** 2, 0.0, 1.0))
    return (np.abs(x - 4.0) <= w) & (np.abs(y - cy) <= hy)


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
        return _superellipse(xx, yy, ra, rb_ant, rb_post, RIB_P) <= 1.0

    paint(lab, pts, cage_lo, cage_hi, cage_fn, C.MED_FAT)
    ra_i, rb_ant_i, rb_post_i = ribcage(anat, inner=True)
    paint(
        lab,
        pts,
        cage_lo,
        cage_hi,
        lambda xx, yy, zz: _superellipse(xx, yy, ra_i, rb_ant_i, rb_post_i, RIB_P) > 1.0,
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
    for t in anat.airways:
        paint_tube(lab, pts, t, C.TRACHEA, where=(C.AIRWAY_WALL,))
    # lung vessel trees and fissures, inside the lungs only
    for t in anat.lung_tree:
        paint_tube(lab, pts, t, C.LUNG_VESSEL, where=(C.LUNG,))
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

    # bones: ribs (attached to the spine by their necks), vertebrae, sternum, clavicles, scapulae

    def ribs(xx, yy, zz):
        shell = (_superellipse(xx, yy, ra, rb_ant, rb_post, RIB_P) <= 1.0) & (
            _superellipse(xx, yy, ra_i, rb_ant_i, rb_post_i, RIB_P) > 1.0
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
    paint(
        lab,
        pts,
        (-13, cy_canal - 13, -big),
        (13, cy_canal + 13, big),
        lambda xx, yy, zz: xx**2 + (yy - cy_canal) ** 2 <= 13.0**2,
        C.RIB,
    )
    for t in anat.spine_extras:
        paint_tube(lab, pts, t, C.RIB, where=(C.SOFT, C.MED_FAT, C.FAT, C.BROWN_FAT, C.LUNG))
    paint(
        lab,
        pts,
        (-7.5, cy_canal - 7.5, -big),
        (7.5, cy_canal + 7.5, big),
        lambda xx, yy, zz: xx**2 + (yy - cy_canal) ** 2 <= 7.5**2,
        C.CANAL,
    )
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
    return lab


def _heart(rng, body_ay, dome_l, rand):
    heart_axes = (rng.uniform(48, 60), rng.uniform(38, 48), rng.uniform(42, 55))
    heart_c = (rng.uniform(12, 28), -rng.uniform(0.25, 0.38) * body_ay, dome_l + 0.75 * heart_axes[2])
    return heart_c, heart_axes


def _u(rng, lo, hi, rand, widen=0.5):
    """Uniform draw; under domain randomisation the interval is widened by ``widen`` of its width each side."""
    if rand:
        w = (hi - lo) * widen
        lo, hi = lo - w, hi + w
    return float(rng.uniform(lo, hi))


def sample_anatomy(rng: np.random.Generator, randomize: bool = False) -> Anatomy:
    """Draw one patient's anatomy (v2). ``randomize`` widens every intensity and size range (pre-training data)."""
    r = randomize
    size = rng.uniform(0.82, 1.2) if r else 1.0
    body_ax = rng.uniform(150, 185) * size
    body_ay = rng.uniform(105, 125) * size
    post = body_ay * rng.uniform(0.92, 1.02)
    fat = rng.uniform(6, 24) * (rng.uniform(0.6, 1.5) if r else 1.0)
    muscle = rng.uniform(10, 20)
    back = rng.uniform(28, 40)
    rib_mm = rng.uniform(7, 9)
    ra = body_ax - fat - muscle
    rb_post = post - fat - back
    vert_r = rng.uniform(15, 19)
    vert_y = rb_post - vert_r - rng.uniform(8, 14)
    lung_cx = rng.uniform(0.46, 0.52) * ra
    lung_ax = rng.uniform(0.62, 0.7) * ra
    lung_ay = rng.uniform(0.95, 1.1) * body_ay
    lung_cy = rng.uniform(-0.02, 0.1) * body_ay
    dome_r = 0.0
    dome_l = -rng.uniform(10, 22)
    heart_c, heart_axes = _heart(rng, body_ay, dome_l, r)
    apex_z = rng.uniform(165, 195)
    carina_z = rng.uniform(95, 120)
    med_w = rng.uniform(24, 34)

    # --- tissue values. SUV ranges: igtv.phantom.literature.SUV_LITERATURE; HU: HU_LITERATURE
    heart_wall = float(np.clip(rng.lognormal(math.log(3.5), 0.8), 1.0, 15.0))  # myocardium 1-15
    blood = _u(rng, 1.5, 2.2, r)  # blood pool 1.5-2.2
    marrow = _u(rng, 1.0, 2.0, r)
    muscle_suv = _u(rng, 0.5, 1.0, r)
    oeso_hot = rng.random() < (0.3 if r else 0.15)
    suv = {
        C.AIR: 0.0,
        C.FAT: _u(rng, 0.2, 0.4, r),
        C.SOFT: muscle_suv,
        C.LUNG: _u(rng, 0.3, 0.6, r),
        C.HEART_WALL: heart_wall,
        C.HEART_BLOOD: blood,
        C.LIVER: _u(rng, 1.8, 3.0, r),
        C.ABDOMEN: _u(rng, 0.9, 1.6, r),
        C.RIB: _u(rng, 0.5, 1.0, r),
        C.VERTEBRA: marrow,
        C.CANAL: _u(rng, 0.8, 1.2, r),
        C.AORTA: blood,
        C.TRACHEA: 0.0,
        C.TABLE: 0.0,
        C.TABLE_CORE: 0.0,
        C.MED_FAT: _u(rng, 0.3, 0.6, r),
        C.AIRWAY_WALL: _u(rng, 0.6, 1.2, r),
        C.PULM_ARTERY: blood,
        C.VEIN: blood,
        C.OESOPHAGUS: _u(rng, 2.0, 4.5, r) if oeso_hot else _u(rng, 1.0, 1.8, r),
        C.LUNG_VESSEL: blood,
        C.FISSURE: _u(rng, 0.3, 0.6, r),
        C.SPLEEN: _u(rng, 1.5, 2.5, r),
        C.KIDNEY: _u(rng, 1.8, 3.5, r),
        C.KIDNEY_PELVIS: float(np.clip(rng.lognormal(math.log(12.0), 0.7), 4.0, 60.0)),  # excreted FDG in urine
        C.STOMACH: _u(rng, 1.2, 3.5, r),
        C.GAS: 0.0,
        C.BONE: _u(rng, 0.5, 1.0, r),
        C.MARROW: marrow,
        C.EFFUSION: _u(rng, 0.3, 0.9, r),
        C.ATELECTASIS: _u(rng, 0.8, 1.8, r),
        C.BROWN_FAT: float(np.clip(rng.lognormal(math.log(5.0), 0.6), 2.0, 15.0)),
        C.HEART_RV: _u(rng, 1.0, 2.5, r),
        C.BREAST: _u(rng, 0.5, 1.2, r),
    }
    soft = _u(rng, 25, 45, r)
    blood_hu = _u(rng, 32, 50, r)
    hu = {
        C.AIR: -1000.0,
        C.FAT: _u(rng, -105, -75, r),
        C.SOFT: soft,
        C.LUNG: _u(rng, -870, -800, r),  # end exhale: denser than the inspiration range
        C.HEART_WALL: soft + rng.uniform(-3, 8),
        C.HEART_BLOOD: blood_hu,
        C.LIVER: _u(rng, 48, 65, r),
        C.ABDOMEN: _u(rng, 10, 40, r),
        C.RIB: _u(rng, 450, 900, r),
        C.VERTEBRA: _u(rng, 120, 220, r),
        C.CANAL: _u(rng, 5, 25, r),
        C.AORTA: blood_hu,
        C.TRACHEA: -1000.0,
        C.TABLE: _u(rng, 150, 450, r),
        C.TABLE_CORE: _u(rng, -950, -850, r),
        C.MED_FAT: _u(rng, -100, -70, r),
        C.AIRWAY_WALL: soft,
        C.PULM_ARTERY: blood_hu,
        C.VEIN: blood_hu,
        C.OESOPHAGUS: soft,
        C.LUNG_VESSEL: blood_hu,
        C.FISSURE: _u(rng, -700, -550, r),
        C.SPLEEN: _u(rng, 40, 55, r),
        C.KIDNEY: _u(rng, 25, 40, r),
        C.KIDNEY_PELVIS: _u(rng, 0, 15, r),
        C.STOMACH: soft,
        C.GAS: -1000.0,
        C.BONE: _u(rng, 500, 1000, r),
        C.MARROW: _u(rng, 80, 200, r),
        C.EFFUSION: _u(rng, 5, 20, r),
        C.ATELECTASIS: _u(rng, 25, 50, r),
        C.BROWN_FAT: _u(rng, -80, -50, r),
        C.HEART_RV: soft,
        C.BREAST: _u(rng, -40, 20, r),
    }
    for k, node_label in enumerate(C.NODE_LABELS):
        suv[node_label] = 1.0
        hu[node_label] = soft - 5.0 + k

    # --- outline, arms, table
    shoulder = rng.uniform(0.12, 0.3)
    breasts: tuple = ()
    if rng.random() < 0.45:
        rx, ry, rz = rng.uniform(45, 70), rng.uniform(25, 50), rng.uniform(45, 60)
        bz = heart_c[2] + rng.uniform(0, 30)
        breasts = tuple(
            (s * rng.uniform(0.4, 0.55) * body_ax, -body_ay + 0.45 * ry, bz, rx, ry, rz) for s in (-1.0, 1.0)
        )
    arms: tuple = ()
    if rng.random() < (0.5 if r else 0.4):
        ar = rng.uniform(36, 48) * size
        gap = rng.uniform(0, 30)
        arms = tuple((s * (body_ax + gap + ar), rng.uniform(-0.2, 0.2) * body_ay, ar) for s in (-1.0, 1.0))
    table = (post + rng.uniform(0.5, 5), rng.uniform(0.0004, 0.0012), rng.uniform(35, 60), rng.uniform(225, 265))

    # --- great vessels (label, tube), oesophagus
    arch_z = carina_z + rng.uniform(15, 30)
    hx, hy, hz = heart_c
    ax_, ay_, az_ = heart_axes
    a_r = rng.uniform(13, 17)
    asc0 = (hx - 0.35 * ax_, hy + 0.25 * ay_, hz + 0.55 * az_)
    asc1 = (rng.uniform(-5, 8), -0.28 * body_ay, arch_z - 15)
    desc_x = rng.uniform(25, 31)
    desc_y = vert_y - rng.uniform(8, 14)
    arch_mid = (desc_x * 0.4, (asc1[1] + desc_y) / 2, arch_z + 12)
    desc0 = (desc_x, desc_y, arch_z)
    desc1 = (desc_x - 6, desc_y + 4, dome_l - 130)
    vessels = [
        (C.AORTA, t)
        for t in polyline([asc0, asc1, arch_mid, desc0, desc1], [a_r, a_r, a_r * 0.9, a_r * 0.8, a_r * 0.75])
    ]
    bif = (rng.uniform(4, 12), -0.05 * body_ay, carina_z - rng.uniform(12, 22))
    pa0 = (hx - 0.05 * ax_, hy - 0.2 * ay_, hz + 0.55 * az_)
    hilum_x = med_w + 10.0
    hil_r = (-hilum_x, lung_cy - 5.0, carina_z - 25.0)
    hil_l = (hilum_x, lung_cy + 3.0, carina_z - 15.0)
    pa_r = rng.uniform(12, 15)
    vessels += [(C.PULM_ARTERY, t) for t in polyline([pa0, bif], [pa_r, pa_r])]
    vessels += [(C.PULM_ARTERY, t) for t in polyline([bif, hil_r], [pa_r * 0.75, pa_r * 0.55])]
    vessels += [(C.PULM_ARTERY, t) for t in polyline([bif, hil_l], [pa_r * 0.75, pa_r * 0.55])]
    svc_x = -rng.uniform(22, 30)
    vessels += [
        (C.VEIN, t)
        for t in polyline([(svc_x, -0.2 * body_ay, apex_z + 30), (svc_x, hy + 0.2 * ay_, hz + 0.6 * az_)], [10, 11])
    ]
    trach_y = vert_y - vert_r - rng.uniform(26, 34)
    oes_y = vert_y - vert_r - rng.uniform(6, 10)
    vessels += [
        (C.OESOPHAGUS, t)
        for t in polyline([(3, oes_y, apex_z + 30), (8, oes_y, carina_z), (22, oes_y - 5, dome_l - 60)], [8, 8.5, 9])
    ]

    # --- airways: trachea, main and lobar bronchi, then a few generations of segmental bronchi
    carina = (0.0, trach_y, carina_z)
    tr_r = rng.uniform(8, 10)
    airways = list(polyline([(0.0, trach_y, apex_z + 40), carina], [tr_r, tr_r]))
    rmb = (-hilum_x + 4, lung_cy - 2, carina_z - 22)
    lmb = (hilum_x - 2, lung_cy + 6, carina_z - 38)
    airways += [Tube(carina, rmb, 7.0, 6.0), Tube(carina, lmb, 6.5, 5.5)]
    lobar = [
        (rmb, (-0.7, 0.0, 0.7), 4.5),  # right upper
        (rmb, (-0.3, 0.2, -0.9), 5.0),  # intermedius -> middle/lower
        (lmb, (0.6, -0.2, 0.75), 4.5),  # left upper
        (lmb, (0.35, 0.3, -0.9), 4.8),  # left lower
    ]

    def in_lung(pnt):
        q = np.asarray(pnt, dtype=np.float32)
        proxy = Anatomy(
            **{
                **_BASE,
                **dict(
                    body_ax=body_ax,
                    body_ay=body_ay,
                    body_post=post,
                    fat_mm=fat,
                    muscle_mm=muscle,
                    back_muscle_mm=back,
                    rib_mm=rib_mm,
                    lung_cx=lung_cx,
                    lung_cy=lung_cy,
                    lung_ax=lung_ax,
                    lung_ay=lung_ay,
                    apex_z=apex_z,
                    dome_right_z=dome_r,
                    dome_left_z=dome_l,
                    recess_mm=40.0,
                    vert_y=vert_y,
                    vert_r=vert_r,
                    carina_z=carina_z,
                    med_w=med_w,
                ),
            }
        )
        return bool(lung_mask(proxy, q[0:1], q[1:2], q[2:3])[0])

    for start, d, rad in lobar:
        airways += branching_tree(rng, start, d, rng.uniform(18, 26), rad, 3, in_lung, taper=0.7, shrink=0.8)
    # lung vessel trees from each hilum: arteries and veins, 5 generations, tapering to ~1 mm
    lung_tree: list[Tube] = []
    for s, hil in ((-1.0, hil_r), (1.0, hil_l)):
        for d in (
            (0.45, -0.1, 0.9),
            (1.0, 0.0, 0.15),
            (0.6, -0.55, -0.55),
            (0.55, 0.6, -0.55),
            (0.3, 0.1, -0.95),
            (0.8, 0.5, 0.3),
            (0.7, -0.6, 0.3),
        ):
            dd = np.array([s * d[0], d[1], d[2]]) + rng.normal(scale=0.12, size=3)
            lung_tree += branching_tree(rng, hil, dd, rng.uniform(24, 32), rng.uniform(4.0, 5.5), 5, in_lung)

    # fissures: oblique (both lungs; posterior-superior to anterior-inferior) and the right horizontal one
    fissures = []
    for s, hil in ((-1.0, hil_r), (1.0, hil_l)):
        k = rng.uniform(0.9, 1.4)
        n = np.array([0.0, -k, 1.0]) / math.hypot(k, 1.0)
        fissures.append((s, hil[0], hil[1], hil[2] + rng.uniform(-5, 10), *n))
    fissures.append((-1.0, hil_r[0], hil_r[1], hil_r[2] + rng.uniform(5, 20), 0.0, 0.08, 1.0))

    # lymph nodes: 0-4 at hilar and mediastinal stations; most FDG-avid (SUV 2-10), some not
    stations = {
        "4R": (-14.0, trach_y - 4.0, carina_z + 18.0),
        "4L": (16.0, trach_y - 2.0, carina_z + 10.0),
        "7": (2.0, trach_y + 14.0, carina_z - 22.0),
        "5": (22.0, trach_y - 18.0, arch_z - 18.0),
        "10R": (hil_r[0] - 4.0, hil_r[1] - 10.0, hil_r[2] + 6.0),
        "10L": (hil_l[0] + 4.0, hil_l[1] - 10.0, hil_l[2] + 6.0),
        "2R": (-12.0, trach_y - 6.0, apex_z - 10.0),
    }
    p_n = (0.45, 0.25, 0.15, 0.1, 0.05) if not r else (0.25, 0.2, 0.2, 0.2, 0.15)
    n_nodes = int(rng.choice(5, p=p_n))
    nodes = []
    for k, st in enumerate(rng.choice(sorted(stations), size=n_nodes, replace=False)):
        rr = rng.uniform(4.0, 11.0)
        avid = rng.random() < 0.75
        node_suv = float(np.clip(rng.lognormal(math.log(4.0), 0.5), 2.0, 10.0)) if avid else _u(rng, 0.8, 1.6, r)
        c = np.asarray(stations[str(st)]) + rng.normal(scale=3.0, size=3)
        nodes.append(
            Node(
                tuple(map(float, c)),
                (rr * rng.uniform(0.9, 1.2), rr, rr * rng.uniform(1.0, 1.4)),
                C.NODE_LABELS[k],
                node_suv,
                str(st),
            )
        )
        suv[C.NODE_LABELS[k]] = node_suv

    effusion = ()
    if rng.random() < (0.25 if r else 0.12):
        sides = [(-1.0,), (1.0,), (-1.0, 1.0)][int(rng.integers(3))]
        effusion = tuple((s, rng.uniform(15, 45), rng.uniform(40, 110)) for s in sides)

    # under the diaphragm (moving with it): stomach wall, gas, spleen, kidneys (cortex, then collecting system)
    organs = [
        (C.STOMACH, (0.4 * body_ax, -0.2 * body_ay, dome_l - 45), (42.0, 35.0, 38.0)),
        (C.ABDOMEN, (0.4 * body_ax, -0.2 * body_ay, dome_l - 45), (36.0, 29.0, 32.0)),
        (C.GAS, (0.4 * body_ax, -0.2 * body_ay - 14, dome_l - 36), (26.0, 12.0, 16.0)),
        (C.SPLEEN, (0.62 * body_ax, 0.3 * body_ay, dome_l - 55), (24.0, 42.0, 48.0)),
    ]
    kz = dome_r - rng.uniform(95, 125)
    for s in (-1.0, 1.0):
        organs.append((C.KIDNEY, (s * 52.0, vert_y - 8.0, kz + (8.0 if s > 0 else 0.0)), (28.0, 26.0, 52.0)))
        organs.append((C.KIDNEY_PELVIS, (s * 40.0, vert_y - 12.0, kz), (11.0, 9.0, 20.0)))

    spine_extras = []
    cy_canal = vert_y + vert_r + 9.0
    for zc in np.arange(-200.0, 300.0, 26.0):
        spine_extras.append(Tube((0.0, cy_canal + 8.0, zc), (0.0, cy_canal + 32.0, zc - 18.0), 4.5, 3.5))
        for s in (-1.0, 1.0):
            spine_extras.append(Tube((s * 8.0, cy_canal, zc), (s * 30.0, cy_canal - 4.0, zc), 4.5, 4.0))
    rb_ant = body_ay - fat - muscle
    sternum = (-rb_ant + 5.0, rng.uniform(14, 20), rng.uniform(5.5, 8.0), hz - 0.4 * az_, apex_z - 5.0)
    cl_z = apex_z + rng.uniform(-5, 10)
    clavicles = tuple(
        Tube(
            (s * 16.0, -rb_ant + 2.0, cl_z),
            (s * 0.92 * body_ax * (1 + shoulder), -0.3 * body_ay, cl_z + 14.0),
            7.0,
            6.0,
        )
        for s in (-1.0, 1.0)
    )
    return Anatomy(
        body_ax=body_ax,
        body_ay=body_ay,
        fat_mm=fat,
        lung_cx=lung_cx,
        lung_cy=lung_cy,
        lung_ax=lung_ax,
        lung_ay=lung_ay,
        apex_z=apex_z,
        dome_right_z=dome_r,
        dome_left_z=dome_l,
        recess_mm=rng.uniform(30, 45),
        heart_c=heart_c,
        heart_axes=heart_axes,
        vert_y=vert_y,
        vert_r=vert_r,
        carina_z=carina_z,
        rib_period=rng.uniform(24, 28),
        rib_phase=rng.uniform(0, 25),
        diaphragm_amp_mm=_u(rng, 10, 20, r),
        suv=suv,
        hu=hu,
        body_post=post,
        body_p=rng.uniform(2.1, 2.6),
        shoulder=shoulder,
        muscle_mm=muscle,
        back_muscle_mm=back,
        rib_mm=rib_mm,
        med_w=med_w,
        liver_x=rng.uniform(20, 45),
        breasts=breasts,
        arms=arms,
        table=table,
        vessels=tuple(vessels),
        airways=tuple(airways),
        lung_tree=tuple(lung_tree),
        fissures=tuple(fissures),
        nodes=tuple(nodes),
        effusion=effusion,
        brown_fat=bool(rng.random() < (0.3 if r else 0.08)),
        organs=tuple(organs),
        clavicles=clavicles,
        spine_extras=tuple(spine_extras),
        sternum=sternum,
        features={
            "arms": "down" if arms else "up",
            "breasts": bool(breasts),
            "nodes": [{"station": n.station, "suv": round(n.suv, 2)} for n in nodes],
            "effusion": len(effusion),
            "oesophageal_uptake": bool(oeso_hot),
        },
    )


# defaults for the proxy anatomy used while the trees are grown (only the lung geometry matters there)
_BASE = dict(
    body_ax=160.0,
    body_ay=115.0,
    fat_mm=15.0,
    lung_cx=60.0,
    lung_cy=0.0,
    lung_ax=60.0,
    lung_ay=80.0,
    apex_z=180.0,
    dome_right_z=0.0,
    dome_left_z=-15.0,
    recess_mm=40.0,
    heart_c=(20.0, -40.0, 20.0),
    heart_axes=(50.0, 40.0, 45.0),
    vert_y=60.0,
    vert_r=17.0,
    carina_z=100.0,
    rib_period=26.0,
    rib_phase=0.0,
    diaphragm_amp_mm=15.0,
)
