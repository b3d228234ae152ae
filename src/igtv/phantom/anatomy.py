"""Thorax anatomy of the phantom in the anatomical frame (mm, LPS, origin at the right diaphragm dome): body,
lungs, diaphragm domes, heart, liver, aorta, trachea, spine and ribs, as a label map at any breathing phase."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from igtv.phantom.config import (
    ABDOMEN,
    AIR,
    AORTA,
    CANAL,
    FAT,
    HEART_BLOOD,
    HEART_WALL,
    LIVER,
    LUNG,
    RIB,
    SOFT,
    TRACHEA,
    VERTEBRA,
)


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


def _lung_sides(anat: Anatomy) -> tuple[tuple[float, float], ...]:
    # (centre x, dome z) of the right (x < 0) and left lung
    return ((-anat.lung_cx, anat.dome_right_z), (anat.lung_cx, anat.dome_left_z))


def dome_height(anat: Anatomy, x: np.ndarray, y: np.ndarray, shift_z: float = 0.0) -> np.ndarray:
    """z of the diaphragm surface under (x, y); lower laterally and posteriorly (costophrenic recesses)."""
    heights = []
    for cx, dome_z in _lung_sides(anat):
        r2 = ((x - cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2
        heights.append(dome_z - anat.recess_mm * np.minimum(r2, 1.6) + shift_z)
    return np.where(x < 0, heights[0], heights[1])


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

    ``diaphragm_dz``/``heart_dz`` displace the diaphragm and heart along z (breathing). ``heart=False`` or
    ``diaphragm=False`` leave that organ out (what would be there without it), for the PET motion model.
    """
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    lab = np.full(shape, AIR, dtype=np.uint8)
    rb = (x / anat.body_ax) ** 2 + (y / anat.body_ay) ** 2
    ri = (x / (anat.body_ax - anat.fat_mm)) ** 2 + (y / (anat.body_ay - anat.fat_mm)) ** 2
    body = np.broadcast_to(rb <= 1.0, shape)
    inner = np.broadcast_to(ri <= 1.0, shape)
    lab[body] = FAT
    lab[inner] = SOFT

    # below the diaphragm: liver on the right, other abdomen on the left
    if diaphragm:
        dome = dome_height(anat, x, y, diaphragm_dz)
        below = inner & (z < dome)
        lab[below & np.broadcast_to(x < 35.0, shape)] = LIVER
        lab[below & np.broadcast_to(x >= 35.0, shape)] = ABDOMEN
    else:
        dome = np.full(np.broadcast_shapes(x.shape, y.shape), -1e9)

    # lungs: elliptic cross-sections tapering to the apex, floored by the diaphragm dome
    taper = np.sqrt(np.clip((anat.apex_z - z) / 70.0, 0.0, 1.0))
    for cx, _ in _lung_sides(anat):
        r2 = ((x - cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2
        lung = (r2 <= taper**2) & (z >= dome) & inner
        lab[lung] = LUNG

    # heart: myocardial wall around blood, sitting on the left dome, carved out of the lungs
    if heart:
        hx, hy, hz = anat.heart_c
        ax, ay, az = anat.heart_axes
        rh = ((x - hx) / ax) ** 2 + ((y - hy) / ay) ** 2 + ((z - hz - heart_dz) / az) ** 2
        lab[rh <= 1.0] = HEART_WALL
        lab[rh <= 0.62] = HEART_BLOOD

    # mediastinal vessels and airway
    ra = (x - 22.0) ** 2 + (y - (anat.vert_y - 6.0)) ** 2
    lab[np.broadcast_to(ra <= 11.0**2, shape) & (z > dome) & inner] = AORTA
    rt = x**2 + (y - (anat.vert_y - 55.0)) ** 2
    lab[np.broadcast_to(rt <= 8.0**2, shape) & (z > anat.carina_z)] = TRACHEA

    # spine: vertebral bodies separated by discs, spinal canal behind them
    rv = x**2 + (y - anat.vert_y) ** 2
    disc = np.mod(z - anat.rib_phase, anat.rib_period) < 5.0
    lab[np.broadcast_to(rv <= anat.vert_r**2, shape) & ~disc] = VERTEBRA
    rc = x**2 + (y - anat.vert_y - anat.vert_r - 9.0) ** 2
    lab[np.broadcast_to(rc <= 7.5**2, shape)] = CANAL

    # ribs: bands on the chest wall, posterior and lateral arcs, one per vertebral level
    band = np.mod(z - anat.rib_phase - 0.3 * (y - anat.vert_y), anat.rib_period) < 9.0
    ring = (ri <= 1.0) & (ri >= 0.86) & (y > -0.75 * anat.body_ay)
    lab[band & np.broadcast_to(ring, shape)] = RIB
    return lab


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    body_ax = rng.uniform(150, 185)
    body_ay = rng.uniform(105, 125)
    fat = rng.uniform(8, 22)
    lung_cx = rng.uniform(0.42, 0.48) * body_ax
    lung_ax = rng.uniform(0.33, 0.37) * body_ax
    lung_ay = rng.uniform(0.62, 0.7) * body_ay
    dome_r = 0.0
    dome_l = -rng.uniform(10, 22)
    heart_axes = (rng.uniform(48, 60), rng.uniform(38, 48), rng.uniform(42, 55))
    heart_c = (rng.uniform(18, 32), -rng.uniform(0.25, 0.4) * body_ay, dome_l + 0.75 * heart_axes[2])
    heart_wall = float(np.clip(rng.lognormal(math.log(3.5), 0.6), 1.5, 12.0))
    blood = rng.uniform(1.5, 2.0)
    suv = {
        AIR: 0.0,
        FAT: rng.uniform(0.25, 0.4),
        SOFT: rng.uniform(0.6, 0.9),
        LUNG: rng.uniform(0.3, 0.6),
        HEART_WALL: heart_wall,
        HEART_BLOOD: blood,
        LIVER: rng.uniform(2.0, 3.0),
        ABDOMEN: rng.uniform(0.9, 1.5),
        RIB: rng.uniform(0.6, 1.0),
        VERTEBRA: rng.uniform(1.5, 2.2),
        CANAL: rng.uniform(0.9, 1.2),
        AORTA: blood,
        TRACHEA: 0.0,
    }
    hu = {
        AIR: -1000.0,
        FAT: rng.uniform(-110, -90),
        SOFT: rng.uniform(35, 50),
        LUNG: rng.uniform(-870, -830),
        HEART_WALL: rng.uniform(35, 50),
        HEART_BLOOD: rng.uniform(35, 50),
        LIVER: rng.uniform(50, 65),
        ABDOMEN: rng.uniform(20, 40),
        RIB: rng.uniform(700, 1100),
        VERTEBRA: rng.uniform(250, 450),
        CANAL: rng.uniform(25, 40),
        AORTA: rng.uniform(35, 50),
        TRACHEA: -1000.0,
    }
    return Anatomy(
        body_ax=body_ax,
        body_ay=body_ay,
        fat_mm=fat,
        lung_cx=lung_cx,
        lung_cy=rng.uniform(-0.05, 0.08) * body_ay,
        lung_ax=lung_ax,
        lung_ay=lung_ay,
        apex_z=rng.uniform(165, 195),
        dome_right_z=dome_r,
        dome_left_z=dome_l,
        recess_mm=rng.uniform(30, 45),
        heart_c=heart_c,
        heart_axes=heart_axes,
        vert_y=0.55 * body_ay,
        vert_r=rng.uniform(15, 19),
        carina_z=rng.uniform(95, 120),
        rib_period=rng.uniform(24, 28),
        rib_phase=rng.uniform(0, 25),
        diaphragm_amp_mm=rng.uniform(10, 20),
        suv=suv,
        hu=hu,
    )
