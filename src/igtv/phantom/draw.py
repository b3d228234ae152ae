"""Draw one phantom patient's anatomy (v2): sizes, tissue values (HU, SUV from the ranges of
:mod:`igtv.phantom.literature`), outline, arms, table, vessels, airways, lung vessel trees, fissures, nodes,
effusion, abdominal organs and bones."""

from __future__ import annotations

import math

import numpy as np

from igtv.phantom import config as C
from igtv.phantom.anatomy import Anatomy, Node, hila, lung_mask
from igtv.phantom.shapes import Tube, branching_tree, polyline


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
    heart_axes = (rng.uniform(48, 60), rng.uniform(38, 48), rng.uniform(42, 55))
    heart_c = (rng.uniform(12, 28), -rng.uniform(0.25, 0.38) * body_ay, dome_l + 0.75 * heart_axes[2])
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
    # the lung geometry alone (the trees are grown inside it before the full anatomy exists)
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
    hil_r, hil_l = hila(proxy)
    hilum_x = hil_l[0]
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
