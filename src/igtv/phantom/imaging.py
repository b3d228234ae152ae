"""CT and PET synthesis: the CT at end exhale with noise; the PET as the time average over the breathing cycle,
blurred by the scanner PSF, averaged onto the PET grid, with correlated signal-dependent noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from igtv.geometry import Geometry
from igtv.phantom.anatomy import Anatomy, flag_reach, labels
from igtv.phantom.config import CT_MATRIX, LABEL_NAMES, LUNG, PET_FOV_MM, PhantomConfig
from igtv.phantom.lesion import Lesion, cavity_mask, lesion_box, lesion_fields, scaled_lesion
from igtv.phantom.motion import breathing, shift_add_z

# PET reconstruction styles: (point-spread-function modelling, time of flight, relative noise, noise grain in voxels)
RECON_STYLES: dict[str, tuple[bool, bool, float, float]] = {
    "OSEM": (False, False, 1.0, 0.8),
    "VPHD": (False, False, 1.0, 0.8),  # GE OSEM without TOF
    "VPFXS": (True, True, 0.8, 0.55),  # GE OSEM + TOF + PSF
    "PSF+TOF": (True, True, 0.8, 0.55),  # Siemens TrueX + TOF
    "Q.Clear": (True, True, 0.6, 0.9),  # GE BSREM: regularised, smooth background
}


def image_grids(cfg: PhantomConfig, scanner: dict, z_lo: float, offset: np.ndarray) -> tuple[Geometry, Geometry]:
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


def ct_noise_sd(anat: Anatomy, base_hu: float) -> float:
    """CT noise grows with the patient's size (attenuation of ~0.02/mm of water over the extra path, halved)."""
    return float(base_hu * math.exp(0.01 * (anat.body_ax + anat.body_ay - 280.0)))


def simulate_ct(
    anat: Anatomy,
    lesions: list[Lesion],
    geom: Geometry,
    offset: np.ndarray,
    rng: np.random.Generator,
    imaging: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planning CT (end exhale, or free breathing: each slice at its own phase of the diaphragm and heart),
    with vessels, airways, density gradient in the lungs, tumours, in-plane blur and size-dependent noise."""
    imaging = imaging or {}
    x, y, z = geom.axis_coordinates_mm()
    xa, ya, za = x - offset[0], y - offset[1], z - offset[2]
    phases = imaging.get("ct_slice_phase")
    if phases is None:
        lab = labels(anat, xa, ya, za)
    else:  # free breathing: every slice caught at its own phase (motion artefacts at the diaphragm)
        s = breathing(np.asarray(phases))
        lab = np.concatenate(
            [
                labels(
                    anat,
                    xa,
                    ya,
                    za[k : k + 1],
                    diaphragm_dz=-anat.diaphragm_amp_mm * s[k],
                    heart_dz=-0.35 * anat.diaphragm_amp_mm * s[k],
                )
                for k in range(za.shape[0])
            ]
        )
    hu_lut = np.array([anat.hu.get(k, 0.0) for k in range(len(LABEL_NAMES))], dtype=np.float32)
    ct = hu_lut[lab]

    # lung texture: parenchymal heterogeneity from a smooth random field at ~6 mm, and the gravity-dependent
    # density gradient of a supine patient (posterior lung denser)
    nz, ny, nx = geom.shape_zyx
    coarse = tuple(max(4, int(round(n * s / 6.0))) for n, s in zip((nz, ny, nx), geom.spacing_mm[::-1], strict=True))
    tex = _smooth_noise(rng, coarse, 1.0)
    tex = _resize(tex, (nz, ny, nx))
    lung = lab == LUNG
    grad = imaging.get("lung_gradient_hu", 40.0) * np.clip((ya - anat.lung_cy) / anat.lung_ay, -1.0, 1.0)
    tex_l, grad_l = tex[lung], np.broadcast_to(grad, lung.shape)[lung]  # the lung's voxels only (same bits)
    ct[lung] += 25.0 * tex_l + np.clip(tex_l - 1.8, 0.0, None) * 300.0 + grad_l

    gtv = np.zeros(geom.shape_zyx, dtype=np.uint8)
    igtv = np.zeros(geom.shape_zyx, dtype=np.uint8)
    for k, les in enumerate(lesions, start=1):
        sl, (bx, by, bz) = lesion_box(geom, les, offset)
        inside, _ = lesion_fields(les, bx, by, bz, uptake=False)
        region = ct[sl]
        region[inside] = les.hu
        if les.necrosis > 0:
            core, _ = lesion_fields(scaled_lesion(les, 0.45), bx, by, bz, uptake=False)
            region[core & inside] = les.hu - 25.0
        if les.cavity > 0:
            region[cavity_mask(les, bx, by, bz) & inside] = -1000.0
        g = gtv[sl]
        g[inside & (g == 0)] = k
    ct = ndimage.gaussian_filter(ct, (0.0, 0.6, 0.6))  # scanner in-plane resolution
    noise = ndimage.gaussian_filter(rng.standard_normal(ct.shape).astype(np.float32), (0.0, 0.7, 0.7))
    noise *= ct_noise_sd(anat, imaging.get("ct_noise_hu", 12.0)) / max(float(noise.std()), 1e-6)
    ct += noise
    return np.clip(np.round(ct), -1024, 3071).astype(np.int16), gtv, igtv


def simulate_pet(
    anat: Anatomy,
    lesions: list[Lesion],
    geom: Geometry,
    offset: np.ndarray,
    scanner: dict,
    n_phases: int,
    rng: np.random.Generator,
    imaging: dict | None = None,
) -> np.ndarray:
    """The PET: activity time-averaged over the breathing cycle on a ~2 mm grid, blurred by the scanner PSF (with
    the edge overshoot of PSF reconstructions), averaged onto the PET grid, with signal-dependent noise whose
    grain depends on the reconstruction (TOF finer), arm truncation by the CT's field of view (no attenuation
    correction there) and, in some patients, the diaphragm misregistered against the CT."""
    imaging = imaging or {}
    px, _, pdz = geom.spacing_mm
    s_xy = min(4, max(1, int(round(px / 1.8))))  # sub-voxels of ~2 mm (at most 4 per axis on coarse test grids)
    s_z = min(4, max(1, int(round(pdz / 1.8))))
    nz, ny, nx = geom.shape_zyx
    x, y, z = geom.axis_coordinates_mm()
    # crop the in-plane grid to the body and arms (plus a margin for the PSF)
    margin = 25.0
    half_x = max([anat.body_ax * (1 + anat.shoulder)] + [abs(cx) + r for cx, _, r in anat.arms]) + margin
    xi = np.nonzero(np.abs(x.ravel() - offset[0]) <= half_x)[0]
    yi = np.nonzero(np.abs(y.ravel() - offset[1]) <= max(anat.body_ay, anat.body_post) + margin)[0]
    x0, x1, y0, y1 = int(xi[0]), int(xi[-1]) + 1, int(yi[0]), int(yi[-1]) + 1
    # fine grid: each PET voxel split into s_z x s_xy x s_xy sub-voxels
    sub_xy = (np.arange(s_xy) + 0.5) / s_xy - 0.5
    sub_z = (np.arange(s_z) + 0.5) / s_z - 0.5
    fx = (x.ravel()[x0:x1, None] + sub_xy[None, :] * px).ravel() - offset[0]
    fy = (y.ravel()[y0:y1, None] + sub_xy[None, :] * px).ravel() - offset[1]
    fz = (z.ravel()[:, None] + sub_z[None, :] * pdz).ravel() - offset[2]
    fx, fy, fz = fx[None, None, :], fy[None, :, None], fz[:, None, None]
    lut = np.array([anat.suv.get(k, 0.0) for k in range(len(LABEL_NAMES))], dtype=np.float32)

    # static anatomy without the moving organs, plus each moving organ's excess activity blurred by its motion
    t = (np.arange(max(n_phases, 16)) + 0.5) / max(n_phases, 16)
    s = breathing(t)
    w = np.full(len(t), 1.0 / len(t))
    dz_fine = pdz / s_z
    mis = imaging.get("pet_misregistration_mm", 0.0)  # extra diaphragm shift of the PET against the CT
    # the three label maps differ only where the flags reach (anatomy.flag_reach): the slab under the domes and the
    # heart's box are labelled again, not the whole fine grid (same maps, ~2 label passes fewer)
    act_none = lut[labels(anat, fx, fy, fz, heart=False, diaphragm=False)]
    z_top, (h_lo, h_hi) = flag_reach(anat)
    nz_dia = int(np.searchsorted(fz.ravel(), z_top, "right"))
    act_dia = act_none.copy()
    if nz_dia:
        act_dia[:nz_dia] = lut[labels(anat, fx, fy, fz[:nz_dia], heart=False)]
    act_all = act_dia.copy()
    box = tuple(
        slice(int(np.searchsorted(a.ravel(), lo, "left")), int(np.searchsorted(a.ravel(), hi, "right")))
        for a, lo, hi in ((fz, h_lo[2], h_hi[2]), (fy, h_lo[1], h_hi[1]), (fx, h_lo[0], h_hi[0]))
    )
    if all(b.stop > b.start for b in box):
        act_all[box] = lut[labels(anat, fx[..., box[2]], fy[:, box[1], :], fz[box[0]])]
    act = act_none
    act += shift_add_z(act_dia - act_none, (-anat.diaphragm_amp_mm * s + mis) / dz_fine, w)
    act += shift_add_z(act_all - act_dia, (-0.35 * anat.diaphragm_amp_mm * s + 0.35 * mis) / dz_fine, w)
    del act_dia, act_all

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

    # arms beyond the CT's field of view get no attenuation correction: their activity reads low
    ct_half_fov = imaging.get("ct_half_fov_mm")
    if anat.arms and ct_half_fov:
        out = np.abs(fx + offset[0]) > ct_half_fov
        act = np.where(out, act * imaging.get("truncation_factor", 0.5), act)

    # scanner PSF (PSF reconstructions overshoot at edges), then average the sub-voxels onto the PET grid
    psf, tof, noise_rel, grain = RECON_STYLES.get(scanner["pet_recon"], RECON_STYLES["OSEM"])
    iters = imaging.get("pet_iterations", 3)
    fwhm = scanner["psf_fwhm_mm"] * (1.1 - 0.05 * (iters - 2))
    sig = fwhm / 2.3548
    sig_vox = (sig / dz_fine, sig / (px / s_xy), sig / (px / s_xy))
    blurred = ndimage.gaussian_filter(act, sig_vox, mode="constant")
    if psf:
        wide = ndimage.gaussian_filter(act, tuple(1.8 * v for v in sig_vox), mode="constant")
        blurred += imaging.get("psf_overshoot", 0.3) * (blurred - wide)
    act = blurred
    cz, cy, cx = act.shape[0] // s_z, act.shape[1] // s_xy, act.shape[2] // s_xy
    act = act.reshape(cz, s_z, cy, s_xy, cx, s_xy).mean(axis=(1, 3, 5))
    pet = np.zeros(geom.shape_zyx, dtype=np.float32)
    pet[:, y0:y1, x0:x1] = act
    # signal-dependent, spatially correlated noise (relative noise ~12% at liver level for OSEM without TOF)
    noise = _smooth_noise(rng, pet.shape, grain)
    level = imaging.get("pet_noise", 0.12) * noise_rel * (1.0 + 0.15 * (iters - 2))
    pet = pet + level * np.sqrt(np.clip(pet, 0, None) * 2.5) * noise
    return np.clip(pet, 0.0, None).astype(np.float32)
