"""Phantom tumours: lobulated, heterogeneous lesions, where they are placed, and their occupancy fields."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from igtv.geometry import Geometry
from igtv.phantom import kernels
from igtv.phantom.anatomy import Anatomy, dome_height, hila, lung_mask
from igtv.phantom.motion import breathing


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
    spikes: tuple[tuple[float, float, float, float, float], ...] = ()  # (vx, vy, vz, length, base width), body frame
    cavity: float = 0.0  # 0: none; else the relative radius of an air-filled cavity (part of the GTV, no uptake)

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
    les: Lesion,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    shift=(0.0, 0.0, 0.0),
    uptake: bool = True,
    fast: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inside-mask and SUV of a lesion displaced by ``shift`` (mm); ``x, y, z`` broadcast together.

    With numba (and ``fast``), a box given as one column, row and slice axis (``x`` (1, 1, nx), ``y`` (1, ny, 1),
    ``z`` (nz, 1, 1), as every caller here passes it) goes through :mod:`igtv.phantom.fast`: same bits, ~10x faster.
    """
    cx, cy, cz = (les.centre[i] + shift[i] for i in range(3))
    dx, dy, dz = x - cx, y - cy, z - cz
    separable = dx.ndim == dy.ndim == dz.ndim == 3 and dx.shape[:2] == dz.shape[1:] == (1, 1) == dy.shape[::2]
    if fast and separable and kernels.fast() is not None:
        return kernels.fast().lesion_fields_fast(les, dx, dy, dz, uptake)
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
    if les.spikes:  # spiculation: thin cones from the centre through the surface
        r_mean = float(np.mean(les.axes))
        for vx, vy, vz, length, width in les.spikes:
            t = q[0] * vx + q[1] * vy + q[2] * vz
            d2 = np.maximum(q[0] ** 2 + q[1] ** 2 + q[2] ** 2 - t * t, 0.0)
            tip = r_mean + length
            w = width * np.clip((tip - t) / length, 0.0, 1.0)
            inside = inside | ((t > 0) & (t <= tip) & (d2 <= w * w))
    if not uptake:
        return inside, None
    het = 0.0
    for kx, ky, kz, ph in les.hetero:
        het = het + np.cos(kx * q[0] + ky * q[1] + kz * q[2] + ph)
    het = het / max(len(les.hetero), 1)
    suv = les.suv_peak * (0.82 + 0.18 * het)
    if les.necrosis > 0:
        suv = suv * (1.0 - les.necrosis * np.exp(-((rho / 0.5) ** 4)))
    if les.cavity > 0:
        suv = np.where(rho <= les.cavity, 0.0, suv)
    return inside, np.where(inside, suv, 0.0)


# Truth label pieces of one lesion smaller than this (a 4.6 mm sphere) are dropped: the sampled tips of thin
# spicules, 1-3 voxels cut off the tumour on the CT grid. No PET (4-6 mm resolution) shows them and no physicist
# would contour them, and the lesion-level counts took each as a separate true lesion (found in session 15: 4 of 28
# unseen patients had such specks, counted as missed lesions).
SPECK_CC = 0.05


def drop_specks(inside: np.ndarray, voxel_cc: float, min_cc: float = SPECK_CC) -> np.ndarray:
    """One lesion's mask without its detached pieces smaller than ``min_cc`` (26-connected); the largest piece is
    always kept."""
    from scipy import ndimage

    lab, n = ndimage.label(inside, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return inside
    sizes_cc = np.bincount(lab.ravel())[1:] * voxel_cc
    keep = np.concatenate([[False], sizes_cc >= min_cc])
    keep[1 + int(np.argmax(sizes_cc))] = True
    return keep[lab]


def cavity_mask(les: Lesion, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The air-filled cavity of a cavitating lesion (empty when it has none)."""
    if les.cavity <= 0:
        return np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), bool)
    dx, dy, dz = x - les.centre[0], y - les.centre[1], z - les.centre[2]
    r = np.asarray(les.rotation).reshape(3, 3)
    q = [r[0, k] * dx + r[1, k] * dy + r[2, k] * dz for k in range(3)]
    rho = np.sqrt((q[0] / les.axes[0]) ** 2 + (q[1] / les.axes[1]) ** 2 + (q[2] / les.axes[2]) ** 2)
    return rho <= les.cavity


def lesion_volume_cc(les: Lesion) -> float:
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


def scaled_lesion(les: Lesion, f: float) -> Lesion:
    return Lesion(
        **{
            **les.__dict__,
            "axes": tuple(a * f for a in les.axes),
            "satellites": tuple((ox * f, oy * f, oz * f, r * f) for ox, oy, oz, r in les.satellites),
            "hetero": tuple((kx / f, ky / f, kz / f, ph) for kx, ky, kz, ph in les.hetero),
            "spikes": tuple((vx, vy, vz, ln * f, w * f) for vx, vy, vz, ln, w in les.spikes),
        }
    )


LOCATIONS = ("peripheral", "central", "juxta-cardiac", "juxta-diaphragmatic", "apical", "pleural", "hilar")

LOCATION_P = (0.22, 0.12, 0.14, 0.18, 0.08, 0.12, 0.14)


def in_lung(anat: Anatomy, x, y, z) -> np.ndarray:
    """Lung (outside the heart), evaluated analytically: fast enough for thousands of candidate points."""
    hx, hy, hz = anat.heart_c
    ax, ay, az = anat.heart_axes
    heart = ((x - hx) / ax) ** 2 + ((y - hy) / ay) ** 2 + ((z - hz) / az) ** 2 <= 1.0
    return lung_mask(anat, x, y, z) & ~heart


def _candidate_centres(
    anat: Anatomy, rng: np.random.Generator, r0: float, z_max: float = 1e9, n: int = 6000
) -> dict[str, np.ndarray]:
    x = rng.uniform(-anat.body_ax, anat.body_ax, n)
    y = rng.uniform(-anat.body_ay, anat.body_ay, n)
    z = rng.uniform(anat.dome_left_z - anat.recess_mm, max(min(anat.apex_z, z_max), anat.dome_left_z), n)
    d = 0.55 * r0
    ok = in_lung(anat, x, y, z)
    inner = sum(
        in_lung(anat, x + a, y + b, z + c).astype(int)
        for a, b, c in ((d, 0, 0), (-d, 0, 0), (0, d, 0), (0, -d, 0), (0, 0, d), (0, 0, -d))
    )
    hx, hy, hz = anat.heart_c
    ax, ay, az = anat.heart_axes
    rh = np.sqrt(((x - hx) / (ax + r0)) ** 2 + ((y - hy) / (ay + r0)) ** 2 + ((z - hz) / (az + r0)) ** 2)
    h = z - dome_height(anat, x, y)
    side_cx = np.where(x < 0, -anat.lung_cx, anat.lung_cx)
    rl = np.sqrt(((x - side_cx) / anat.lung_ax) ** 2 + ((y - anat.lung_cy) / anat.lung_ay) ** 2)
    pts = np.stack([x, y, z], axis=1)
    hilar_d = np.min([np.linalg.norm(pts - np.asarray(hp), axis=1) for hp in hila(anat)], axis=0)
    full = ok & (inner >= 6)
    part = ok & (inner >= 4)
    sel = {
        "peripheral": full & (rl > 0.6) & (h > r0 + 25),
        "central": full & (np.abs(x) < anat.lung_cx - 0.25 * anat.lung_ax) & (h > r0 + 25) & (rh > 1.0),
        "juxta-cardiac": part & (rh >= 0.95) & (rh <= 1.15),
        "juxta-diaphragmatic": part & (h >= 0.6 * r0) & (h <= r0 + 12),
        "apical": full & (z > anat.apex_z - 55),
        "pleural": ok & (inner >= 3) & (inner <= 5) & (rl > 0.7) & (h > 10),
        "hilar": ok & (inner >= 2) & (hilar_d < 0.6 * r0 + 25.0),
        "any": full,
    }
    out = {k: pts[v] for k, v in sel.items()}
    if not len(out["hilar"]) and ok.any():  # a large mass: the lung points closest to a hilum
        near = np.argsort(np.where(ok, hilar_d, np.inf))[: min(20, int(ok.sum()))]
        out["hilar"] = pts[near]
    if not len(out["any"]) and ok.any():
        out["any"] = pts[ok & (inner >= max(2, int(inner[ok].max()) - 1))]
    return out


def sample_lesion(
    anat: Anatomy,
    rng: np.random.Generator,
    cold: bool,
    small: bool,
    avoid: list[Lesion],
    randomize: bool = False,
    z_max: float = 1e9,
) -> Lesion:
    """Draw one lesion: location, volume (right-skewed, median ~12 cc; central hilar masses larger), lobulated,
    sometimes spiculated or cavitating shape, uptake and motion."""
    location = str(rng.choice(LOCATIONS, p=LOCATION_P))
    if small:
        volume = rng.uniform(0.9, 2.7)
    elif location == "hilar":  # central masses against the mediastinum, as real cases often are
        volume = float(np.clip(rng.lognormal(math.log(35.0), 0.8), 6.0, 220.0))
    else:
        volume = float(np.clip(rng.lognormal(math.log(12.0), 1.05), 3.2, 160.0))
    r0 = (3.0 * volume * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    cands = _candidate_centres(anat, rng, r0, z_max - r0 - 5.0)
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
    if cold:
        suv_peak = rng.uniform(1.4, 2.2)
    elif randomize:
        suv_peak = float(np.clip(rng.lognormal(math.log(8.0), 0.8), 2.0, 35.0))
    else:
        suv_peak = float(np.clip(rng.lognormal(math.log(9.0), 0.5), 3.8, 28.0))
    spikes = []
    if not small and rng.random() < 0.3:  # spiculated
        for _ in range(int(rng.integers(4, 12))):
            v = rng.normal(size=3)
            v /= np.linalg.norm(v)
            spikes.append((*v, float(rng.uniform(0.4, 1.0) * r0), float(rng.uniform(0.8, 2.0))))
    cavity = float(rng.uniform(0.3, 0.55)) if volume > 8 and rng.random() < 0.1 else 0.0
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
        spikes=tuple(spikes),
        cavity=cavity,
    )
    return scaled_lesion(les, (volume / max(lesion_volume_cc(les), 1e-3)) ** (1.0 / 3.0))


def lesion_box(geom: Geometry, les: Lesion, offset: np.ndarray, motion: bool = False):
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


def igtv_mask(les: Lesion, geom: Geometry, offset: np.ndarray, max_step_mm: float):
    sl, (bx, by, bz) = lesion_box(geom, les, offset, motion=True)
    union = None
    for t in igtv_times(les, max_step_mm):
        inside, _ = lesion_fields(les, bx, by, bz, shift=les.displacement(t), uptake=False)
        union = inside if union is None else union | inside
    return sl, drop_specks(union, geom.voxel_volume_cc)
