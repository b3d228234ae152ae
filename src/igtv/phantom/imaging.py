"""CT and PET synthesis: the CT at end exhale with noise; the PET as the time average over the breathing cycle,
blurred by the scanner PSF, averaged onto the PET grid, with correlated signal-dependent noise."""

from __future__ import annotations

import math

import numpy as np

from igtv.geometry import Geometry, bounding_box
from igtv.phantom import kernels as switch
from igtv.phantom.anatomy import Anatomy, flag_reach, labels
from igtv.phantom.config import CT_MATRIX, LABEL_NAMES, LUNG, PET_FOV_MM, PhantomConfig
from igtv.phantom.filters import gaussian_blur, gaussian_weights
from igtv.phantom.lesion import Lesion, cavity_mask, drop_specks, lesion_box, lesion_fields, scaled_lesion
from igtv.phantom.motion import add_shift_z, breathing

# PET reconstruction styles: (point-spread-function modelling, time of flight, relative noise, noise grain in voxels)
RECON_STYLES: dict[str, tuple[bool, bool, float, float]] = {
    "OSEM": (False, False, 1.0, 0.8),
    "VPHD": (False, False, 1.0, 0.8),  # GE OSEM without TOF
    "VPFXS": (True, True, 0.8, 0.55),  # GE OSEM + TOF + PSF
    "PSF+TOF": (True, True, 0.8, 0.55),  # Siemens TrueX + TOF
    "Q.Clear": (True, True, 0.6, 0.9),  # GE BSREM: regularised, smooth background
}


CT_BLUR_PX = 0.65  # in-plane resolution of the CT (Gaussian sigma, pixels), applied to anatomy and noise alike


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
    field_ = gaussian_blur(rng.standard_normal(shape, dtype=np.float32), (sigma,) * len(shape))
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


def _resize(vol: np.ndarray, shape: tuple[int, int, int], box: tuple[slice, ...] | None = None) -> np.ndarray:
    """Linear resize of ``vol`` to exactly ``shape`` (or to the part of it inside ``box``), one matrix product per
    axis."""
    mz, my, mx = (_interp_matrix(n, c) for n, c in zip(shape, vol.shape, strict=True))
    if box is not None:
        mz, my, mx = mz[box[0]], my[box[1]], mx[box[2]]
    out = vol @ mx.T  # (cz, cy, bx)
    out = my @ out  # (by, cy) @ (cz, cy, bx) -> (cz, by, bx)
    return (mz @ out.reshape(vol.shape[0], -1)).reshape(mz.shape[0], my.shape[0], mx.shape[0])


def _mean_blocks(vol: np.ndarray, s_z: int, s_xy: int) -> np.ndarray:
    """Mean of each s_z x s_xy x s_xy block (the sub-voxels of a PET voxel), by strided sums (~10x NumPy's mean over
    the reshaped axes)."""
    cz, cy, cx = vol.shape[0] // s_z, vol.shape[1] // s_xy, vol.shape[2] // s_xy
    vol = vol[: cz * s_z, : cy * s_xy, : cx * s_xy]
    out = sum(vol[k::s_z] for k in range(s_z))
    out = sum(out[:, k::s_xy] for k in range(s_xy))
    out = sum(out[:, :, k::s_xy] for k in range(s_xy))
    return (out / np.float32(s_z * s_xy * s_xy)).astype(np.float32, copy=False)


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
    lab = labels(anat, xa, ya, za)
    phases = imaging.get("ct_slice_phase")
    if phases is not None:  # free breathing: every slice caught at its own phase (motion artefacts at the diaphragm)
        s = breathing(np.asarray(phases))
        # the diaphragm and heart move down from end exhale, so a slice differs from the end-exhale map only below
        # flag_reach's z_top (labelled again whole) or, above it, inside the heart's (x, y) box
        z_top, (h_lo, h_hi) = flag_reach(anat)
        ix, iy = (
            slice(int(np.searchsorted(a.ravel(), lo, "left")), int(np.searchsorted(a.ravel(), hi, "right")))
            for a, lo, hi in ((xa, h_lo[0], h_hi[0]), (ya, h_lo[1], h_hi[1]))
        )
        for k in range(za.shape[0]):
            zk, dz = float(za.ravel()[k]), anat.diaphragm_amp_mm * s[k]
            if dz == 0 or zk > max(z_top, h_hi[2]):
                continue
            if zk <= z_top:
                lab[k] = labels(anat, xa, ya, za[k : k + 1], diaphragm_dz=-dz, heart_dz=-0.35 * dz)[0]
            elif ix.stop > ix.start and iy.stop > iy.start:
                sub = labels(anat, xa[..., ix], ya[:, iy, :], za[k : k + 1], diaphragm_dz=-dz, heart_dz=-0.35 * dz)
                lab[k, iy, ix] = sub[0]
    hu_lut = np.array([anat.hu.get(k, 0.0) for k in range(len(LABEL_NAMES))], dtype=np.float32)
    ct = hu_lut[lab]

    # lung texture: parenchymal heterogeneity from a smooth random field at ~6 mm, and the gravity-dependent
    # density gradient of a supine patient (posterior lung denser)
    nz, ny, nx = geom.shape_zyx
    coarse = tuple(max(4, int(round(n * s / 6.0))) for n, s in zip((nz, ny, nx), geom.spacing_mm[::-1], strict=True))
    tex = _smooth_noise(rng, coarse, 1.0)
    lung = lab == LUNG
    box = bounding_box(lung)
    if box is not None:  # the texture is only needed on the lungs' box
        tex = _resize(tex, (nz, ny, nx), box)
        grad = imaging.get("lung_gradient_hu", 40.0) * np.clip((ya[:, box[1]] - anat.lung_cy) / anat.lung_ay, -1, 1)
        lung_b, ct_b = lung[box], ct[box]
        tex_l, grad_l = tex[lung_b], np.broadcast_to(grad, lung_b.shape)[lung_b]  # the lung's voxels only
        ct_b[lung_b] += 25.0 * tex_l + np.clip(tex_l - 1.8, 0.0, None) * 300.0 + grad_l

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
        g[drop_specks(inside, geom.voxel_volume_cc) & (g == 0)] = k
    # noise, then the scanner's in-plane resolution over both (one pass: the blur is linear). White noise of SD s
    # blurred by a separable kernel w has SD s * sum(w^2) in 2D, so the noise is drawn at the SD that leaves
    # ct_noise_sd after the blur, with a grain of ~1 pixel
    noise_scale = ct_noise_sd(anat, imaging.get("ct_noise_hu", 12.0)) / float((gaussian_weights(CT_BLUR_PX) ** 2).sum())
    return finish_ct(ct, rng, noise_scale), gtv, igtv


def finish_ct(ct: np.ndarray, rng: np.random.Generator, noise_scale: float) -> np.ndarray:
    """``ct`` (float32 HU) + white noise x ``noise_scale``, blurred in-plane by ``CT_BLUR_PX``, rounded and clipped
    to the int16 range of a CT. With numba, slice by slice (the noise drawn per slice is the same stream NumPy
    draws for the volume), the same bits 2-3x faster (``tests/phantom/test_fast.py``)."""
    kernels = switch.fast()
    scale = np.float32(noise_scale)
    if kernels is None or ct.dtype != np.float32:
        ct = ct + rng.standard_normal(ct.shape, dtype=np.float32) * scale
        ct = gaussian_blur(ct, (0.0, CT_BLUR_PX, CT_BLUR_PX))
        np.rint(ct, out=ct)
        return np.clip(ct, -1024, 3071, out=ct).astype(np.int16)
    out = np.empty(ct.shape, dtype=np.int16)
    weights = gaussian_weights(CT_BLUR_PX)
    for k in range(ct.shape[0]):
        kernels.ct_slice_kernel(ct[k], rng.standard_normal(ct.shape[1:], dtype=np.float32), scale, weights, out[k])
    return out


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
    act = lut[labels(anat, fx, fy, fz, heart=False, diaphragm=False)]  # no moving organ
    z_top, (h_lo, h_hi) = flag_reach(anat)
    nz_dia = int(np.searchsorted(fz.ravel(), z_top, "right"))
    box = tuple(
        slice(int(np.searchsorted(a.ravel(), lo, "left")), int(np.searchsorted(a.ravel(), hi, "right")))
        for a, lo, hi in ((fz, h_lo[2], h_hi[2]), (fy, h_lo[1], h_hi[1]), (fx, h_lo[0], h_hi[0]))
    )
    # the diaphragm's map differs from act only in the slab under the domes, the heart's from the diaphragm's only
    # in the heart's box: each difference is formed there and its motion blur added where it reaches
    dia = lut[labels(anat, fx, fy, fz[:nz_dia], heart=False)] if nz_dia else act[:0]
    heart = None
    if all(b.stop > b.start for b in box):
        dia_box = act[box].copy()  # the diaphragm's map in the heart's box
        k1 = min(box[0].stop, nz_dia)
        if k1 > box[0].start:
            dia_box[: k1 - box[0].start] = dia[box[0].start : k1, box[1], box[2]]
        heart = lut[labels(anat, fx[..., box[2]], fy[:, box[1], :], fz[box[0]])] - dia_box
    dia -= act[:nz_dia]
    add_shift_z(act, dia, (-anat.diaphragm_amp_mm * s + mis) / dz_fine, w)
    if heart is not None:
        origin = tuple(b.start for b in box)
        add_shift_z(act, heart, (-0.35 * anat.diaphragm_amp_mm * s + 0.35 * mis) / dz_fine, w, origin)
    del dia, heart

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
        out = (np.abs(fx + offset[0]) > ct_half_fov).ravel()  # the columns outside the CT's field
        if out.any():
            act[:, :, out] *= imaging.get("truncation_factor", 0.5)

    # scanner PSF (PSF reconstructions overshoot at edges), then average the sub-voxels onto the PET grid
    psf, tof, noise_rel, grain = RECON_STYLES.get(scanner["pet_recon"], RECON_STYLES["OSEM"])
    iters = imaging.get("pet_iterations", 3)
    fwhm = scanner["psf_fwhm_mm"] * (1.1 - 0.05 * (iters - 2))
    sig = fwhm / 2.3548
    sig_vox = (sig / dz_fine, sig / (px / s_xy), sig / (px / s_xy))
    blurred = _mean_blocks(gaussian_blur(act, sig_vox, mode="constant"), s_z, s_xy)
    if psf:  # the edge overshoot: blurred - wide, the wide blur (1.8x the PSF, >= ~1.5 PET voxels) on the PET grid
        wide_vox = (1.8 * sig / pdz, 1.8 * sig / px, 1.8 * sig / px)
        wide = gaussian_blur(_mean_blocks(act, s_z, s_xy), wide_vox, mode="constant")
        blurred += imaging.get("psf_overshoot", 0.3) * (blurred - wide)
    # signal-dependent, spatially correlated noise (relative noise ~12% at liver level for OSEM without TOF), on the
    # body's box (outside it there is no activity, so no noise)
    noise = _smooth_noise(rng, blurred.shape, grain)
    level = imaging.get("pet_noise", 0.12) * noise_rel * (1.0 + 0.15 * (iters - 2))
    pet = np.zeros(geom.shape_zyx, dtype=np.float32)
    pet[:, y0:y1, x0:x1] = np.clip(blurred + level * np.sqrt(np.clip(blurred, 0, None) * 2.5) * noise, 0.0, None)
    return pet
