"""Breathing-motion thorax PET/CT phantom: anatomy, tumours, respiratory motion, CT and PET synthesis.

Everything here is pure numpy: :func:`simulate_patient` returns arrays with their geometry and ground truth;
:mod:`igtv.data.phantom_io` writes them as DICOM (CT, PET, RTSTRUCT), NIfTI and the PCLT20K PNG layout.

Coordinates: anatomy is defined in millimetres in an *anatomical* frame (DICOM LPS axes: +x patient left,
+y posterior, +z superior) whose origin is the top of the right diaphragm dome on the body's midline at end
exhale. The patient (DICOM) frame is the anatomical frame shifted by a per-patient table offset.

Motion follows the Lujan model s(t) = sin^4(pi t) (t in [0, 1), s = 0 at end exhale, s = 1 at end inhale):
tumours move inferiorly by A_si * s(t) with smaller AP/LR components lagging by a hysteresis phase; the
diaphragm (liver, abdomen) and, less, the heart move with it. The planning CT is the end-exhale phase; the PET
is the time average over the cycle on a finer grid, blurred by the scanner PSF, averaged onto the PET's own
coarser grid and given signal-dependent noise. GTV = tumour at the CT phase; IGTV = union over all phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from igtv.geometry import Geometry

# ------------------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomConfig:
    """Settings of one phantom cohort (saved as ``phantom.yaml`` next to it)."""

    cohort: Literal["gtv", "igtv"] = "igtv"
    patients: int = 10
    seed: int = 0
    matrix_scale: float = 1.0  # 1.0: 512x512 CT as in the paper; 0.125: 64x64 for tests (same field of view)
    z_extent_mm: float = 250.0
    n_phases: int = 10  # breathing phases averaged into the PET
    max_lesions: int = 3
    sub_qc_fraction: float = 0.25  # lesions made small (< 3 cc) or cold (SUVmax < 3) on purpose
    pclt_size: int = 512  # side of the exported PCLT20K PNGs
    write_pclt: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError(f"patients must be >= 1, got {self.patients}")
        if not 0.05 <= self.matrix_scale <= 2.0:
            raise ValueError(f"matrix_scale must be in [0.05, 2], got {self.matrix_scale}")
        if self.n_phases < 1:
            raise ValueError(f"n_phases must be >= 1, got {self.n_phases}")
        if not 0.0 <= self.sub_qc_fraction <= 1.0:
            raise ValueError("sub_qc_fraction must be in [0, 1]")


@dataclass(frozen=True)
class ScannerProfile:
    """One scanner family of the paper's Table I, with the voxel sizes it reconstructs."""

    manufacturer: str
    models: tuple[str, ...]
    ct_pixel_mm: tuple[float, ...]
    ct_slice_mm: tuple[float, ...]
    pet_pixel_mm: tuple[float, ...]
    pet_slice_mm: tuple[float, ...]
    pet_recon: tuple[str, ...]
    psf_fwhm_mm: tuple[float, float]


PCLT_SCANNERS: tuple[tuple[float, ScannerProfile], ...] = (
    (
        1.0,
        ScannerProfile(
            "GE MEDICAL SYSTEMS", ("Discovery Elite",), (0.98,), (2.8,), (3.6,), (3.3,), ("OSEM",), (6.0, 7.0)
        ),
    ),
)
LUCID_SCANNERS: tuple[tuple[float, ScannerProfile], ...] = (
    (
        0.6,
        ScannerProfile(
            "GE MEDICAL SYSTEMS",
            ("Discovery MI", "Discovery 710", "Discovery 690"),
            (0.98, 1.17, 1.37),
            (3.75,),
            (2.73, 3.65, 5.47),
            (2.79, 3.27),
            ("VPHD", "VPFXS", "Q.Clear"),
            (4.5, 6.5),
        ),
    ),
    (
        0.2,
        ScannerProfile(
            "GE MEDICAL SYSTEMS", ("Optima PET/CT 560",), (1.37,), (5.0,), (3.65,), (3.27,), ("OSEM",), (6.0, 7.0)
        ),
    ),
    (
        0.2,
        ScannerProfile(
            "SIEMENS",
            ("Biograph mCT", "Biograph Vision"),
            (0.98, 1.27, 1.52),
            (3.0, 5.0),
            (1.65, 2.04, 4.07),
            (3.0, 5.0),
            ("PSF+TOF", "OSEM"),
            (4.0, 6.0),
        ),
    ),
)

PET_FOV_MM = 700.0
CT_MATRIX = 512

# tissue labels of the anatomy
AIR, FAT, SOFT, LUNG, HEART_WALL, HEART_BLOOD, LIVER, ABDOMEN, RIB, VERTEBRA, CANAL, AORTA, TRACHEA = range(13)
LABEL_NAMES = (
    "air",
    "fat",
    "soft",
    "lung",
    "heart_wall",
    "heart_blood",
    "liver",
    "abdomen",
    "rib",
    "vertebra",
    "canal",
    "aorta",
    "trachea",
)


# ------------------------------------------------------------------------------------------------------------
# anatomy and lesions
# ------------------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Lesion:
    """One lung tumour: shape, uptake and its breathing trajectory (anatomical frame)."""

    centre: tuple[float, float, float]
    rotation: tuple[float, ...]  # row-major 3x3
    axes: tuple[float, float, float]
    lobes: tuple[tuple[float, float, float, float, float], ...]  # (vx, vy, vz, freq, amplitude*) ; phase packed
    lobe_phase: tuple[float, ...]
    satellites: tuple[tuple[float, float, float, float], ...]  # (ox, oy, oz, radius) relative to centre
    suv_peak: float
    necrosis: float  # 0: none; else relative depth of the cold core
    hetero: tuple[tuple[float, float, float, float], ...]  # plane waves (kx, ky, kz, phase) for heterogeneity
    amp_si: float
    amp_ap: float
    amp_lr: float
    hysteresis: float  # cycle fraction by which AP/LR lag SI
    location: str
    target_volume_cc: float
    hu: float

    @property
    def radius(self) -> float:
        return max(self.axes) * (1.0 + sum(abs(lb[4]) for lb in self.lobes)) + max(
            [np.linalg.norm(s[:3]) + s[3] for s in self.satellites] + [0.0]
        )

    def displacement(self, t: np.ndarray | float) -> np.ndarray:
        """(..., 3) displacement (mm, LPS) at cycle time ``t`` in [0, 1): inferior at inhale."""
        t = np.asarray(t, dtype=np.float64)
        s = breathing(t)
        s_lag = breathing(t - self.hysteresis)
        return np.stack([self.amp_lr * s_lag, -self.amp_ap * s_lag, -self.amp_si * s], axis=-1)


def breathing(t: np.ndarray | float) -> np.ndarray:
    """Lujan breathing signal sin^4(pi t): 0 at end exhale (t = 0), 1 at end inhale (t = 0.5)."""
    return np.sin(np.pi * np.asarray(t, dtype=np.float64)) ** 4


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


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def lesion_fields(
    les: Lesion, x: np.ndarray, y: np.ndarray, z: np.ndarray, shift=(0.0, 0.0, 0.0), uptake: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inside-mask and SUV of a lesion displaced by ``shift`` (mm); ``x, y, z`` broadcast together."""
    cx, cy, cz = (les.centre[i] + shift[i] for i in range(3))
    dx, dy, dz = x - cx, y - cy, z - cz
    r = np.asarray(les.rotation).reshape(3, 3)
    q = [r[0, k] * dx + r[1, k] * dy + r[2, k] * dz for k in range(3)]  # body-fixed coordinates
    rho = np.sqrt((q[0] / les.axes[0]) ** 2 + (q[1] / les.axes[1]) ** 2 + (q[2] / les.axes[2]) ** 2)
    norm = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + 1e-6
    bump = 0.0
    for (vx, vy, vz, freq, amp), ph in zip(les.lobes, les.lobe_phase, strict=True):
        bump = bump + amp * np.cos(freq * (q[0] * vx + q[1] * vy + q[2] * vz) / norm + ph)
    inside = rho <= 1.0 + bump
    for ox, oy, oz, rad in les.satellites:
        inside = inside | ((q[0] - ox) ** 2 + (q[1] - oy) ** 2 + (q[2] - oz) ** 2 <= rad * rad)
    if not uptake:
        return inside, None
    het = 0.0
    for kx, ky, kz, ph in les.hetero:
        het = het + np.cos(kx * q[0] + ky * q[1] + kz * q[2] + ph)
    het = het / max(len(les.hetero), 1)
    suv = les.suv_peak * (0.82 + 0.18 * het)
    if les.necrosis > 0:
        suv = suv * (1.0 - les.necrosis * np.exp(-((rho / 0.5) ** 4)))
    return inside, np.where(inside, suv, 0.0)


def _lesion_volume_cc(les: Lesion) -> float:
    rad = les.radius
    step = rad / 18.0
    g = np.arange(-rad, rad + step, step)
    inside, _ = lesion_fields(
        les,
        les.centre[0] + g[None, None, :],
        les.centre[1] + g[None, :, None],
        les.centre[2] + g[:, None, None],
        uptake=False,
    )
    return float(inside.sum()) * step**3 / 1000.0


def _scaled(les: Lesion, f: float) -> Lesion:
    return Lesion(
        **{
            **les.__dict__,
            "axes": tuple(a * f for a in les.axes),
            "satellites": tuple((ox * f, oy * f, oz * f, r * f) for ox, oy, oz, r in les.satellites),
            "hetero": tuple((kx / f, ky / f, kz / f, ph) for kx, ky, kz, ph in les.hetero),
        }
    )


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


LOCATIONS = ("peripheral", "central", "juxta-cardiac", "juxta-diaphragmatic", "apical")
LOCATION_P = (0.3, 0.15, 0.2, 0.25, 0.1)


def _candidate_centres(anat: Anatomy, rng: np.random.Generator, r0: float, n: int = 6000) -> dict[str, np.ndarray]:
    x = rng.uniform(-anat.body_ax, anat.body_ax, n)
    y = rng.uniform(-anat.body_ay, anat.body_ay, n)
    z = rng.uniform(anat.dome_left_z - anat.recess_mm, anat.apex_z, n)
    d = 0.55 * r0
    ok = labels(anat, x, y, z) == LUNG
    inner = sum(
        (labels(anat, x + a, y + b, z + c) == LUNG).astype(int)
        for a, b, c in ((d, 0, 0), (-d, 0, 0), (0, d, 0), (0, -d, 0), (0, 0, d), (0, 0, -d))
    )
    hx, hy, hz = anat.heart_c
    ax, ay, az = anat.heart_axes
    rh = np.sqrt(((x - hx) / (ax + r0)) ** 2 + ((y - hy) / (ay + r0)) ** 2 + ((z - hz) / (az + r0)) ** 2)
    h = z - dome_height(anat, x, y)
    side_cx = np.where(x < 0, -anat.lung_cx, anat.lung_cx)
    rl = np.sqrt(((x - side_cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2)
    pts = np.stack([x, y, z], axis=1)
    full = ok & (inner >= 6)
    part = ok & (inner >= 4)
    sel = {
        "peripheral": full & (rl > 0.6) & (h > r0 + 25),
        "central": full & (np.abs(x) < anat.lung_cx - 0.25 * anat.lung_ax) & (h > r0 + 25) & (rh > 1.0),
        "juxta-cardiac": part & (rh >= 0.95) & (rh <= 1.15),
        "juxta-diaphragmatic": part & (h >= 0.6 * r0) & (h <= r0 + 12),
        "apical": full & (z > anat.apex_z - 55),
        "any": full,
    }
    return {k: pts[v] for k, v in sel.items()}


def sample_lesion(anat: Anatomy, rng: np.random.Generator, cold: bool, small: bool, avoid: list[Lesion]) -> Lesion:
    """Draw one lesion: volume (right-skewed, median ~12 cc), lobulated shape, uptake, location and motion."""
    if small:
        volume = rng.uniform(0.9, 2.7)
    else:
        volume = float(np.clip(rng.lognormal(math.log(12.0), 1.05), 3.2, 160.0))
    r0 = (3.0 * volume * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    location = str(rng.choice(LOCATIONS, p=LOCATION_P))
    cands = _candidate_centres(anat, rng, r0)
    pool = cands[location] if len(cands[location]) else cands["any"]
    if not len(pool):
        pool = cands["any"] if len(cands["any"]) else np.array([[-anat.lung_cx, anat.lung_cy, 80.0]])
        location = "peripheral"
    for _ in range(50):
        centre = pool[rng.integers(len(pool))]
        if all(np.linalg.norm(centre - np.asarray(o.centre)) > r0 + o.radius + 10 for o in avoid):
            break
    elong = rng.uniform(0.75, 1.3, 3)
    elong /= np.prod(elong) ** (1 / 3)
    n_lobes = int(rng.integers(2, 5))
    lobes = []
    for _ in range(n_lobes):
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        lobes.append((*v, float(rng.uniform(2.5, 5.5)), float(rng.uniform(0.04, 0.12))))
    sats = []
    for _ in range(int(rng.integers(0, 4))):
        v = rng.normal(size=3)
        v *= rng.uniform(0.7, 0.95) * r0 / np.linalg.norm(v)
        sats.append((*v, float(rng.uniform(0.3, 0.55) * r0)))
    suv_peak = rng.uniform(1.4, 2.2) if cold else float(np.clip(rng.lognormal(math.log(9.0), 0.5), 3.8, 28.0))
    h = float(centre[2] - dome_height(anat, np.asarray(centre[0]), np.asarray(centre[1])))
    amp_si = float(np.clip(3.0 + 22.0 * math.exp(-max(h, 0.0) / 80.0) * rng.uniform(0.55, 1.0), 3.0, 25.0))
    hetero = tuple((*(rng.normal(size=3) * 0.35 / r0 * 3.0), float(rng.uniform(0, 2 * math.pi))) for _ in range(3))
    les = Lesion(
        centre=tuple(float(c) for c in centre),
        rotation=tuple(_rotation(rng).reshape(-1)),
        axes=tuple(float(r0 * e) for e in elong),
        lobes=tuple(lobes),
        lobe_phase=tuple(float(rng.uniform(0, 2 * math.pi)) for _ in lobes),
        satellites=tuple(sats),
        suv_peak=float(suv_peak),
        necrosis=float(rng.uniform(0.45, 0.75)) if volume > 30 else 0.0,
        hetero=hetero,
        amp_si=amp_si,
        amp_ap=amp_si * float(rng.uniform(0.1, 0.3)),
        amp_lr=amp_si * float(rng.uniform(0.03, 0.15)) * float(rng.choice([-1.0, 1.0])),
        hysteresis=float(rng.uniform(0.03, 0.15)),
        location=location,
        target_volume_cc=float(volume),
        hu=float(rng.uniform(20, 60)),
    )
    return _scaled(les, (volume / max(_lesion_volume_cc(les), 1e-3)) ** (1.0 / 3.0))


# ------------------------------------------------------------------------------------------------------------
# patient synthesis
# ------------------------------------------------------------------------------------------------------------


@dataclass
class PhantomPatient:
    """One synthetic patient: images with geometry, ground truth and acquisition metadata."""

    index: int
    cohort: str
    ct_hu: np.ndarray  # int16 [z, y, x]
    ct_geom: Geometry
    pet_suv: np.ndarray  # float32 [z, y, x], the ground-truth SUV stored (as Bq/ml) in the PET series
    pet_geom: Geometry
    gtv: np.ndarray  # uint8 [z, y, x] on the CT grid, value k = lesion k (1-based)
    igtv: np.ndarray  # uint8 [z, y, x] on the CT grid
    lesions: list[Lesion]
    anatomy: Anatomy
    scanner: dict
    acquisition: dict  # weight, dose, times, half-life
    offset_mm: tuple[float, float, float]  # patient = anatomical + offset

    def lesion_truth(self) -> list[dict]:
        vox_cc = self.ct_geom.voxel_volume_cc
        out = []
        for k, les in enumerate(self.lesions, start=1):
            out.append(
                {
                    "lesion": k,
                    "location": les.location,
                    "gtv_cc": float((self.gtv == k).sum() * vox_cc),
                    "igtv_cc": float((self.igtv == k).sum() * vox_cc),
                    "target_volume_cc": les.target_volume_cc,
                    "suv_peak_true": les.suv_peak,
                    "amplitude_mm": {"si": les.amp_si, "ap": les.amp_ap, "lr": les.amp_lr},
                    "hysteresis_cycle": les.hysteresis,
                    "centre_mm": [c + o for c, o in zip(les.centre, self.offset_mm, strict=True)],
                }
            )
        return out


def _pick_scanner(cohort: str, rng: np.random.Generator) -> dict:
    table = PCLT_SCANNERS if cohort == "gtv" else LUCID_SCANNERS
    p = np.array([w for w, _ in table])
    prof = table[int(rng.choice(len(table), p=p / p.sum()))][1]
    return {
        "manufacturer": prof.manufacturer,
        "model": str(rng.choice(prof.models)),
        "ct_pixel_mm": float(rng.choice(prof.ct_pixel_mm)),
        "ct_slice_mm": float(rng.choice(prof.ct_slice_mm)),
        "pet_pixel_mm": float(rng.choice(prof.pet_pixel_mm)),
        "pet_slice_mm": float(rng.choice(prof.pet_slice_mm)),
        "pet_recon": str(rng.choice(prof.pet_recon)),
        "psf_fwhm_mm": float(rng.uniform(*prof.psf_fwhm_mm)),
    }


def _grids(cfg: PhantomConfig, scanner: dict, z_lo: float, offset: np.ndarray) -> tuple[Geometry, Geometry]:
    n_ct = max(16, int(round(CT_MATRIX * cfg.matrix_scale)))
    ct_px = scanner["ct_pixel_mm"] * CT_MATRIX / n_ct
    dz = scanner["ct_slice_mm"]
    nz = max(3, int(round(cfg.z_extent_mm / dz)))
    ct_origin = (-(n_ct - 1) / 2 * ct_px, -(n_ct - 1) / 2 * ct_px, z_lo + offset[2])
    ct = Geometry((nz, n_ct, n_ct), (ct_px, ct_px, dz), ct_origin)
    n_pet = max(16, int(round(round(PET_FOV_MM / scanner["pet_pixel_mm"]) * cfg.matrix_scale)))
    pet_px = PET_FOV_MM / n_pet
    pdz = scanner["pet_slice_mm"]
    margin = 2 * pdz
    pnz = int(math.ceil((cfg.z_extent_mm + 2 * margin) / pdz))
    pet_origin = (-(n_pet - 1) / 2 * pet_px, -(n_pet - 1) / 2 * pet_px, ct_origin[2] - margin)
    pet = Geometry((pnz, n_pet, n_pet), (pet_px, pet_px, pdz), pet_origin)
    return ct, pet


def _shift_add_z(vol: np.ndarray, shifts_vox: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k w_k vol(z - s_k) with linear interpolation along axis 0 (zero outside)."""
    out = np.zeros_like(vol)
    kernel: dict[int, float] = {}
    for s, w in zip(shifts_vox, weights, strict=True):
        lo = math.floor(s)
        f = s - lo
        kernel[lo] = kernel.get(lo, 0.0) + w * (1 - f)
        kernel[lo + 1] = kernel.get(lo + 1, 0.0) + w * f
    nz = vol.shape[0]
    for n, w in kernel.items():
        if w == 0 or abs(n) >= nz:
            continue
        if n >= 0:
            out[n:] += w * vol[: nz - n]
        else:
            out[:n] += w * vol[-n:]
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field_ / max(float(field_.std()), 1e-6)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) cell-centred linear interpolation weights."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    f = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), lo] += 1 - f
    m[np.arange(n_out), hi] += f
    return m


def _resize(vol: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Linear resize of ``vol`` to exactly ``shape``, one matrix product per axis."""
    mz, my, mx = (_interp_matrix(n, c) for n, c in zip(shape, vol.shape, strict=True))
    out = vol @ mx.T  # (cz, cy, nx)
    out = np.einsum("yc,zcx->zyx", my, out)  # (cz, ny, nx)
    return (mz @ out.reshape(vol.shape[0], -1)).reshape(shape)


def _simulate_ct(
    anat: Anatomy, lesions: list[Lesion], geom: Geometry, offset: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = geom.axis_coordinates_mm()
    xa, ya, za = x - offset[0], y - offset[1], z - offset[2]
    lab = labels(anat, xa, ya, za)
    hu_lut = np.array([anat.hu[k] for k in range(len(LABEL_NAMES))], dtype=np.float32)
    ct = hu_lut[lab]

    # lung texture: vessels and parenchymal heterogeneity from a smooth random field at ~6 mm
    nz, ny, nx = geom.shape_zyx
    coarse = tuple(max(4, int(round(n * s / 6.0))) for n, s in zip((nz, ny, nx), geom.spacing_mm[::-1], strict=True))
    tex = _smooth_noise(rng, coarse, 1.0)
    tex = _resize(tex, (nz, ny, nx))
    lung = lab == LUNG
    vessels = np.clip(tex - 1.3, 0.0, None) * 700.0
    ct[lung] += (25.0 * tex + vessels)[lung]

    gtv = np.zeros(geom.shape_zyx, dtype=np.uint8)
    igtv = np.zeros(geom.shape_zyx, dtype=np.uint8)
    for k, les in enumerate(lesions, start=1):
        sl, (bx, by, bz) = _box(geom, les, offset)
        inside, _ = lesion_fields(les, bx, by, bz, uptake=False)
        region = ct[sl]
        region[inside] = les.hu
        if les.necrosis > 0:
            core, _ = lesion_fields(_scaled(les, 0.45), bx, by, bz, uptake=False)
            region[core & inside] = les.hu - 25.0
        g = gtv[sl]
        g[inside & (g == 0)] = k
    ct = ndimage.gaussian_filter(ct, (0.0, 0.6, 0.6))  # scanner in-plane resolution
    ct += rng.normal(0.0, 12.0, ct.shape).astype(np.float32)
    return np.clip(np.round(ct), -1024, 3071).astype(np.int16), gtv, igtv


def _box(geom: Geometry, les: Lesion, offset: np.ndarray, motion: bool = False):
    """Index slices and anatomical coordinates of the CT-grid box around a lesion (its motion included)."""
    x, y, z = geom.axis_coordinates_mm()
    rad = les.radius + 2 * max(geom.spacing_mm)
    lo = np.asarray(les.centre) - rad
    hi = np.asarray(les.centre) + rad
    if motion:
        lo = lo - np.array([abs(les.amp_lr), les.amp_ap, les.amp_si])
        hi = hi + np.array([abs(les.amp_lr), 0.0, 0.0])
    axes = []
    coords = []
    for c, a_lo, a_hi, off in (
        (z.ravel(), lo[2], hi[2], offset[2]),
        (y.ravel(), lo[1], hi[1], offset[1]),
        (x.ravel(), lo[0], hi[0], offset[0]),
    ):
        ca = c - off
        idx = np.nonzero((ca >= a_lo) & (ca <= a_hi))[0]
        if len(idx) == 0:
            axes.append(slice(0, 0))
            coords.append(ca[:0])
        else:
            axes.append(slice(int(idx[0]), int(idx[-1]) + 1))
            coords.append(ca[idx[0] : idx[-1] + 1].astype(np.float32))
    zc, yc, xc = coords
    return tuple(axes), (xc[None, None, :], yc[None, :, None], zc[:, None, None])


def igtv_times(les: Lesion, max_step_mm: float, max_phases: int = 48) -> np.ndarray:
    """Cycle times at which consecutive tumour positions are at most ``max_step_mm`` apart (arc-length sampling)."""
    t = np.linspace(0.0, 1.0, 2001)
    d = les.displacement(t)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(d, axis=0), axis=1))])
    n = int(min(max_phases, max(2, math.ceil(arc[-1] / max_step_mm) + 1)))
    return np.interp(np.linspace(0.0, arc[-1], n, endpoint=False), arc, t)


def _igtv_mask(les: Lesion, geom: Geometry, offset: np.ndarray, max_step_mm: float):
    sl, (bx, by, bz) = _box(geom, les, offset, motion=True)
    union = None
    for t in igtv_times(les, max_step_mm):
        inside, _ = lesion_fields(les, bx, by, bz, shift=les.displacement(t), uptake=False)
        union = inside if union is None else union | inside
    return sl, union


def _simulate_pet(
    anat: Anatomy,
    lesions: list[Lesion],
    geom: Geometry,
    offset: np.ndarray,
    scanner: dict,
    n_phases: int,
    rng: np.random.Generator,
) -> np.ndarray:
    px, _, pdz = geom.spacing_mm
    s_xy = min(4, max(1, int(round(px / 1.8))))  # sub-voxels of ~2 mm (at most 4 per axis on coarse test grids)
    s_z = min(4, max(1, int(round(pdz / 1.8))))
    nz, ny, nx = geom.shape_zyx
    x, y, z = geom.axis_coordinates_mm()
    # crop the in-plane grid to the body (plus a margin for the PSF)
    margin = 25.0
    xi = np.nonzero(np.abs(x.ravel() - offset[0]) <= anat.body_ax + margin)[0]
    yi = np.nonzero(np.abs(y.ravel() - offset[1]) <= anat.body_ay + margin)[0]
    x0, x1, y0, y1 = int(xi[0]), int(xi[-1]) + 1, int(yi[0]), int(yi[-1]) + 1
    # fine grid: each PET voxel split into s_z x s_xy x s_xy sub-voxels
    sub_xy = (np.arange(s_xy) + 0.5) / s_xy - 0.5
    sub_z = (np.arange(s_z) + 0.5) / s_z - 0.5
    fx = (x.ravel()[x0:x1, None] + sub_xy[None, :] * px).ravel() - offset[0]
    fy = (y.ravel()[y0:y1, None] + sub_xy[None, :] * px).ravel() - offset[1]
    fz = (z.ravel()[:, None] + sub_z[None, :] * pdz).ravel() - offset[2]
    fx, fy, fz = fx[None, None, :], fy[None, :, None], fz[:, None, None]
    lut = np.array([anat.suv[k] for k in range(len(LABEL_NAMES))], dtype=np.float32)

    # static anatomy without the moving organs, plus each moving organ's excess activity blurred by its motion
    t = (np.arange(max(n_phases, 16)) + 0.5) / max(n_phases, 16)
    s = breathing(t)
    w = np.full(len(t), 1.0 / len(t))
    dz_fine = pdz / s_z
    act_none = lut[labels(anat, fx, fy, fz, heart=False, diaphragm=False)]
    act_dia = lut[labels(anat, fx, fy, fz, heart=False)]
    act_all = lut[labels(anat, fx, fy, fz)]
    act = act_none
    act += _shift_add_z(act_dia - act_none, -anat.diaphragm_amp_mm * s / dz_fine, w)
    act += _shift_add_z(act_all - act_dia, -0.35 * anat.diaphragm_amp_mm * s / dz_fine, w)

    # tumours: exact time average of the moving, lobulated uptake over the breathing phases
    tp = (np.arange(n_phases) + 0.5) / n_phases
    bg = anat.suv[LUNG]
    for les in lesions:
        rad = les.radius + les.amp_si + 5.0
        ix = np.nonzero(np.abs(fx.ravel() - les.centre[0]) <= rad)[0]
        iy = np.nonzero(np.abs(fy.ravel() - les.centre[1]) <= rad)[0]
        iz = np.nonzero(np.abs(fz.ravel() - les.centre[2]) <= rad + les.amp_si)[0]
        if not (len(ix) and len(iy) and len(iz)):
            continue
        sl = (slice(iz[0], iz[-1] + 1), slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
        bx, by, bz = fx[..., sl[2]], fy[:, sl[1], :], fz[sl[0]]
        acc = np.zeros((len(iz), len(iy), len(ix)), dtype=np.float32)
        for tk in tp:
            inside, suv = lesion_fields(les, bx, by, bz, shift=les.displacement(tk))
            acc += np.where(inside, suv - bg, 0.0).astype(np.float32)
        act[sl] += acc / n_phases

    # scanner PSF, then average the sub-voxels onto the PET grid
    fwhm = scanner["psf_fwhm_mm"]
    sig = fwhm / 2.3548
    act = ndimage.gaussian_filter(act, (sig / dz_fine, sig / (px / s_xy), sig / (px / s_xy)), mode="constant")
    cz, cy, cx = act.shape[0] // s_z, act.shape[1] // s_xy, act.shape[2] // s_xy
    act = act.reshape(cz, s_z, cy, s_xy, cx, s_xy).mean(axis=(1, 3, 5))
    pet = np.zeros(geom.shape_zyx, dtype=np.float32)
    pet[:, y0:y1, x0:x1] = act
    # signal-dependent, spatially correlated noise (relative noise ~12% at liver level)
    noise = _smooth_noise(rng, pet.shape, 0.7)
    pet = pet + 0.12 * np.sqrt(np.clip(pet, 0, None) * 2.5) * noise
    return np.clip(pet, 0.0, None).astype(np.float32)


def patient_rng(cfg: PhantomConfig, index: int) -> np.random.Generator:
    """Each patient draws from its own stream, so patients are independent of each other and of worker count."""
    cohort_id = {"gtv": 1, "igtv": 2}[cfg.cohort]
    return np.random.default_rng([cfg.seed, cohort_id, index])


def simulate_patient(cfg: PhantomConfig, index: int) -> PhantomPatient:
    """Synthesise patient ``index`` of the cohort described by ``cfg`` (deterministic in seed, cohort, index)."""
    rng = patient_rng(cfg, index)
    anat = sample_anatomy(rng)
    scanner = _pick_scanner(cfg.cohort, rng)
    n_les = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    n_les = min(n_les, cfg.max_lesions)
    lesions: list[Lesion] = []
    for _ in range(n_les):
        sub = rng.random() < cfg.sub_qc_fraction
        kind = rng.random()
        lesions.append(sample_lesion(anat, rng, cold=sub and kind < 0.5, small=sub and kind >= 0.5, avoid=lesions))
    offset = np.array([rng.uniform(-15, 15), rng.uniform(-40, 0), rng.uniform(-250, -120)])
    z_lo = anat.dome_left_z - anat.recess_mm - rng.uniform(20, 40)
    ct_geom, pet_geom = _grids(cfg, scanner, z_lo, offset)
    ct, gtv, igtv = _simulate_ct(anat, lesions, ct_geom, offset, rng)
    for k, les in enumerate(lesions, start=1):
        sl, union = _igtv_mask(les, ct_geom, offset, max(1.0, 0.5 * min(ct_geom.spacing_mm)))
        region = igtv[sl]
        region[union & (region == 0)] = k
    pet = _simulate_pet(anat, lesions, pet_geom, offset, scanner, cfg.n_phases, rng)
    acquisition = {
        "weight_kg": float(np.round(rng.uniform(48, 110), 1)),
        "dose_bq": float(np.round(rng.uniform(180e6, 420e6), -5)),
        "uptake_s": float(np.round(rng.uniform(50, 75) * 60)),
        "half_life_s": 6586.2,
        "injection_hms": (int(rng.integers(7, 15)), int(rng.integers(0, 60)), int(rng.integers(0, 60))),
        "date": f"2024{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
    }
    return PhantomPatient(
        index=index,
        cohort=cfg.cohort,
        ct_hu=ct,
        ct_geom=ct_geom,
        pet_suv=pet,
        pet_geom=pet_geom,
        gtv=gtv,
        igtv=igtv,
        lesions=lesions,
        anatomy=anat,
        scanner=scanner,
        acquisition=acquisition,
        offset_mm=tuple(float(o) for o in offset),
    )
