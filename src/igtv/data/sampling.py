"""Patch sampling from whole volumes at a fixed in-plane spacing, with negatives (nnU-Net's habit).

The paper trains on whole ROI slices shrunk to the network's input. On a CPU budget that leaves tumours a few
pixels wide and a model that has never seen a slice without one, so on a new patient every hot organ looks like a
tumour. Here training reads the 3D volumes that ``igtv prepare`` writes (``volumes/<P>/{ct_hu,pet_suv,labels}``,
read by :mod:`igtv.data.cases`), resampled once in-plane to ``spacing_mm`` (the z spacing is kept: 2.5D neighbours
are the CT's own slices), and draws square patches of ``patch`` pixels:

- ``fg_fraction`` of them centred on a target voxel (one lesion drawn uniformly, then a voxel of it) with a
  jitter of up to ``jitter`` x patch/2, so the lesion is seen at every position in the patch;
- ``hot_fraction`` centred on a PET-avid region that is *not* target (heart, liver, kidneys, nodes: SUV >=
  ``HOT_SUV``), one region drawn uniformly, so the hot organs prediction will meet are shown as negatives;
- ``avoid_fraction`` centred on a structure the contour must leave out, where the dataset marks them
  (``volumes/<P>/avoid.nii.gz``: the phantom's FDG-avid lymph nodes), so the few a cohort has are seen often;
- the rest anywhere in the body (CT > ``BODY_HU``).

Windows are applied on the fly, exactly as prediction applies them: CT window of the preset, PET either the fixed
SUV range (``pclt20k``) or divided by a reference SUVmax (``lucid``): the lesion's own SUVmax for lesion patches
and the hot region's SUVmax for the others, which is what prediction does per PET candidate.

Augmentation is one affine per patch (centre + jitter, isotropic scale, small rotation, horizontal flip) applied
while extracting from the full slice, so the border is real anatomy (or air/zero PET outside the scan), plus a
multiplicative PET intensity change. Sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from igtv.data.affine import extract, is_crop, patch_matrix

log = logging.getLogger(__name__)

HOT_SUV = 2.5  # PET-avid region threshold (the predictor's candidate threshold)
BODY_HU = -400.0  # body = CT above this
AIR_HU = -1024.0  # value outside the scanned field
MAX_VOXELS = 4096  # voxels kept per region for drawing centres (memory stays small for big organs)


# --- pure helpers -------------------------------------------------------------------------------------------------
def inplane_shape(shape_yx: tuple[int, int], spacing_yx_mm: tuple[float, float], target_mm: float) -> tuple[int, int]:
    """Size of a slice of ``shape_yx`` at ``spacing_yx_mm`` once resampled to ``target_mm`` pixels."""
    if target_mm <= 0:
        return tuple(shape_yx)
    return tuple(max(1, round(n * s / target_mm)) for n, s in zip(shape_yx, spacing_yx_mm, strict=True))


def resample_inplane(
    volume_zyx: np.ndarray, spacing_yx_mm: tuple[float, float], target_mm: float, kind: str = "linear"
) -> np.ndarray:
    """Resample every axial slice of ``volume_zyx`` to ``target_mm`` pixels (z untouched).

    ``kind``: ``linear`` (area averaging when shrinking, bilinear when enlarging: images), or ``mask`` (area
    fraction >= 0.5: binary masks). Prediction maps probabilities back with :func:`resample_to_shape`, the inverse
    pixel mapping (both use ``align_corners=False``), so contours land where the volume was.
    """
    import torch
    import torch.nn.functional as F

    out_yx = inplane_shape(volume_zyx.shape[1:], spacing_yx_mm, target_mm)
    if tuple(out_yx) == tuple(volume_zyx.shape[1:]):
        return volume_zyx.astype(bool) if kind == "mask" else volume_zyx.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(volume_zyx, dtype=np.float32))[:, None]  # (z, 1, y, x)
    shrink = out_yx[0] <= volume_zyx.shape[1] and out_yx[1] <= volume_zyx.shape[2]
    if shrink:
        r = F.interpolate(t, size=out_yx, mode="area")
    else:
        r = F.interpolate(t, size=out_yx, mode="bilinear", align_corners=False)
    r = r[:, 0].numpy()
    return r >= 0.5 if kind == "mask" else r.astype(np.float32)


def resample_to_shape(slices_zyx: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of ``[z, y, x]`` float slices to ``shape_yx`` (the inverse of :func:`resample_inplane`)."""
    import torch
    import torch.nn.functional as F

    if tuple(slices_zyx.shape[1:]) == tuple(shape_yx):
        return slices_zyx.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(slices_zyx, dtype=np.float32))[:, None]
    return F.interpolate(t, size=tuple(shape_yx), mode="bilinear", align_corners=False)[:, 0].numpy()


def window_patch(ct_hu: np.ndarray, pet_suv: np.ndarray, preset: str, reference_suv: float | None) -> np.ndarray:
    """CT (S, P, P) HU and PET (S, P, P) SUV -> grey levels (2S, P, P) in [0, 255], CT first (the model's order)."""
    from igtv.data.windows import PRESETS, scale_pet_roi_max, scale_pet_suv, window_ct

    p = PRESETS[preset]
    ct = window_ct(ct_hu, *p.ct_hu)
    if p.pet_mode == "roi_max":
        pet = scale_pet_roi_max(pet_suv, reference_suv if reference_suv else 1.0)
    else:
        pet = scale_pet_suv(pet_suv, *p.pet_suv)
    return np.concatenate([ct, pet]).astype(np.float32)


def make_cold(
    pet_suv: np.ndarray, lesion: np.ndarray, suv_max: float, pixel_mm: float, blur_mm: float = 4.0
) -> tuple[np.ndarray, float]:
    """A cold-tumour version of a PET patch (S, P, P): uptake inside the lesion (S, P, P, in [0, 1]) scaled so its
    SUVmax becomes ``suv_max``, with a weight blurred by ``blur_mm`` (the PET's partial volume) so no edge is cut;
    uptake away from the lesion (heart, liver, other lesions) is unchanged. Returns (PET, the factor applied).

    Real tumours with SUVmax < 2.5 exist (the phantom makes 12 % of its lesions cold); a model shown only hot ones
    learns that a tumour is hot and misses a large cold mass that the CT shows plainly."""
    from scipy.ndimage import gaussian_filter

    inside = lesion >= 0.5
    if not inside.any():
        return pet_suv, 1.0
    peak = float(pet_suv[inside].max())
    if peak <= suv_max:
        return pet_suv, 1.0
    factor = suv_max / peak
    sigma = blur_mm / max(pixel_mm, 1e-3)
    w = np.clip(2.0 * gaussian_filter(inside.astype(np.float32), (0.0, sigma, sigma)), 0.0, 1.0)
    w[inside] = 1.0  # the whole tumour scaled, fading out over the blur around it
    return (pet_suv * (1.0 - w * (1.0 - factor))).astype(np.float32), factor


def _subsample(coords: np.ndarray, rng: np.random.Generator, n: int = MAX_VOXELS) -> np.ndarray:
    if len(coords) <= n:
        return coords.astype(np.int32)
    return coords[rng.choice(len(coords), n, replace=False)].astype(np.int32)


# --- volumes ------------------------------------------------------------------------------------------------------
@dataclass
class Region:
    """One connected region to centre patches on: a subsample of its voxels and its SUVmax."""

    voxels: np.ndarray  # (n, 3) int32 z, y, x
    suv_max: float
    size: int  # voxels in the whole region (``voxels`` is a subsample of at most MAX_VOXELS)


@dataclass
class VolumeCase:
    """One patient's volumes at the sampling spacing, with the regions patches are centred on."""

    name: str
    ct_hu: np.ndarray  # [z, y, x] float32 HU
    pet_suv: np.ndarray  # [z, y, x] float32 SUV
    target: np.ndarray  # [z, y, x] bool
    spacing_mm: tuple[float, float, float]  # (z, y, x) after resampling
    lesions: list[Region] = field(default_factory=list)
    hot: list[Region] = field(default_factory=list)
    body: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    avoid: list[Region] = field(default_factory=list)  # avid structures the contour must leave out (nodes)
    _thorax: np.ndarray | None = None

    def thorax(self) -> np.ndarray:
        """Voxels (subsampled) of the thorax region that post-processing keeps components in (lungs + mediastinum,
        :func:`igtv.data.regions.thorax_region`), found on first use (~0.5 s per 2 mm case)."""
        if self._thorax is None:
            from igtv.data.regions import thorax_region
            from igtv.geometry import Geometry

            geom = Geometry(self.ct_hu.shape, tuple(self.spacing_mm[::-1]), (0.0, 0.0, 0.0))
            region = thorax_region(self.ct_hu, geom)
            self._thorax = _subsample(np.argwhere(region), np.random.default_rng(1), 4 * MAX_VOXELS)
        return self._thorax


def _regions(mask: np.ndarray, pet: np.ndarray, rng: np.random.Generator, min_voxels: int) -> list[Region]:
    """26-connected regions of ``mask`` with at least ``min_voxels`` voxels, each with a voxel subsample."""
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    # sizes by one bincount and maxima inside each region's box: ndimage.maximum over thousands of labels sorts the
    # whole volume (~1.5 s per 2 mm thorax volume, most of a case's loading time)
    sizes = np.bincount(lab.ravel(), weights=np.asarray(mask, dtype=np.float64).ravel(), minlength=n + 1)
    out = []
    for i, box in enumerate(ndimage.find_objects(lab), start=1):
        if box is None or sizes[i] < min_voxels:
            continue
        inside = lab[box] == i
        local = np.argwhere(inside) + [b.start for b in box]
        out.append(Region(_subsample(local, rng), float(pet[box][inside].max()), int(sizes[i])))
    return out


def build_case(
    name: str,
    ct_hu: np.ndarray,
    pet_suv: np.ndarray,
    target: np.ndarray,
    spacing_zyx_mm: tuple[float, float, float],
    target_mm: float,
    avoid: np.ndarray | None = None,
) -> VolumeCase:
    """Resample a patient's arrays in-plane to ``target_mm`` and find its lesions, hot regions and body, and the
    PET-avid parts (SUV >= HOT_SUV) of ``avoid`` (structures the contour must leave out), if given."""
    from scipy import ndimage

    sp_yx = (float(spacing_zyx_mm[1]), float(spacing_zyx_mm[2]))
    ct = resample_inplane(ct_hu, sp_yx, target_mm)
    pet = resample_inplane(pet_suv, sp_yx, target_mm)
    tgt = resample_inplane(np.asarray(target, dtype=np.float32), sp_yx, target_mm, kind="mask")
    out_sp = (float(spacing_zyx_mm[0]), *(target_mm,) * 2) if target_mm > 0 else tuple(map(float, spacing_zyx_mm))
    rng = np.random.default_rng(0)
    lesions = _regions(tgt, pet, rng, min_voxels=1)
    near_target = ndimage.binary_dilation(tgt, iterations=2) if tgt.any() else tgt
    min_hot = max(4, int(np.ceil(0.2 / (np.prod(out_sp) / 1000.0))))  # noise specks below 0.2 cc are not organs
    hot = _regions((pet >= HOT_SUV) & ~near_target, pet, rng, min_voxels=min_hot)
    body = _subsample(np.argwhere(ct > BODY_HU), rng, 4 * MAX_VOXELS)
    av = None if avoid is None else resample_inplane(np.asarray(avoid, np.float32), sp_yx, target_mm, kind="mask")
    avoid_regions = [] if av is None else _regions(av & (pet >= HOT_SUV) & ~tgt, pet, rng, min_voxels=1)
    return VolumeCase(name, ct, pet, tgt, out_sp, lesions, hot, body, avoid_regions)


@dataclass(frozen=True)
class PatchSpec:
    """How patches are drawn (the ``data`` section of a run config carries these)."""

    patch: int = 96
    preset: str = "pclt20k"
    in_slices: int = 3  # 1: 2D, 3: 2.5D (t-1, t, t+1)
    fg_fraction: float = 0.5
    hot_fraction: float = 0.25
    jitter: float = 0.8  # lesion centres move by up to jitter * patch / 2 pixels
    augment: bool = True
    pet_gain_p: float = 0.3  # probability of a multiplicative PET change ...
    pet_gain_range: tuple[float, float] = (0.8, 1.25)  # ... drawn log-uniformly in this range
    pet_dropout: float = 0.0  # probability of nearly removing the PET (x 0-0.2): the CT alone must find tumours
    cold_p: float = 0.0  # probability that a lesion patch's tumour is made cold (SUVmax in cold_suv_range) ...
    cold_suv_range: tuple[float, float] = (1.2, 2.5)  # ... while the organs around it keep their uptake
    # hot regions drawn in proportion to size ** this: 0 draws all alike (with 30 sub-cc specks the heart gets ~1/34
    # of the hot patches); 0.5 shows big organs (heart, liver, kidneys) far more often while specks still appear
    hot_size_power: float = 0.0
    # hot regions drawn only among those whose SUVmax reaches this (0: every region, SUV >= HOT_SUV): the regions
    # post-processing can keep (its SUV rule, the training data's QC: 3.0 for the paper's). Below it lie the
    # patient's dozens of faint PET specks (SUVmax 2.5-3), which would otherwise take most hot patches from the
    # organs and the avid lymph nodes that prediction meets
    hot_min_suv_max: float = 0.0
    # share centred on the patient's ``avoid`` regions (avid nodes), taken from the body/thorax share; a patient
    # without any gives a body/thorax patch instead. 0 draws none (and every earlier run's patches)
    avoid_fraction: float = 0.0
    # lesion patches drawn across the patients' lesions in proportion to size ** this (voxels), instead of a patient
    # uniformly and then one of its lesions; 0 keeps the per-patient draw (and every earlier run's patches)
    lesion_size_power: float = 0.0
    # where the remaining patches (neither lesion nor hot) are centred: "body", anywhere in the body (CT > BODY_HU:
    # arms, abdomen, the table), or "thorax", in the region whose components post-processing keeps (falls back to
    # the body on a patient without one)
    negatives: str = "body"


def hot_weights(regions: Sequence[Region], power: float) -> np.ndarray:
    """Probability of drawing each region (hot regions, or lesions across patients): proportional to its size
    (voxels) ** ``power`` (0: uniform)."""
    w = np.array([float(r.size) for r in regions]) ** power
    return w / w.sum()


def draw_centre(
    case: VolumeCase, spec: PatchSpec, rng: np.random.Generator, lesion: Region | None = None
) -> tuple[str, np.ndarray, float | None]:
    """(kind, voxel (z, y, x) float, reference SUVmax for the LUCID window) of one patch. ``lesion``: the region a
    lesion patch is centred on, drawn beforehand (otherwise one of ``case``'s lesions uniformly)."""
    u = rng.random()
    if u < spec.fg_fraction and (lesion is not None or case.lesions):
        region = lesion if lesion is not None else case.lesions[rng.integers(len(case.lesions))]
        kind = "lesion"
        v = region.voxels[rng.integers(len(region.voxels))].astype(float)
        v[1:] += rng.uniform(-1, 1, 2) * spec.jitter * spec.patch / 2
        return kind, v, region.suv_max
    hot = case.hot if spec.hot_min_suv_max <= 0 else [r for r in case.hot if r.suv_max >= spec.hot_min_suv_max]
    if u < spec.fg_fraction + spec.hot_fraction and hot:
        n, power = len(hot), spec.hot_size_power  # power 0: the historic uniform draw, so old runs replay
        region = hot[rng.integers(n) if power == 0 else rng.choice(n, p=hot_weights(hot, power))]
        v = region.voxels[rng.integers(len(region.voxels))].astype(float)
        v[1:] += rng.uniform(-0.25, 0.25, 2) * spec.patch / 2
        return "hot", v, region.suv_max
    if u < spec.fg_fraction + spec.hot_fraction + spec.avoid_fraction and case.avoid:
        region = case.avoid[rng.integers(len(case.avoid))]
        v = region.voxels[rng.integers(len(region.voxels))].astype(float)
        v[1:] += rng.uniform(-0.25, 0.25, 2) * spec.patch / 2
        return "avoid", v, region.suv_max
    pool = case.thorax() if spec.negatives == "thorax" else case.body
    pool = pool if len(pool) else case.body if len(case.body) else np.argwhere(np.ones(case.ct_hu.shape, bool))[:1]
    v = pool[rng.integers(len(pool))].astype(float)
    refs = [r.suv_max for r in case.hot + case.lesions]
    return spec.negatives, v, (refs[rng.integers(len(refs))] if refs else None)


def sample_patch(
    case: VolumeCase,
    spec: PatchSpec,
    rng: np.random.Generator,
    lesion: tuple[VolumeCase, Region] | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """One training sample: grey levels (2S, P, P), mask (1, P, P) in {0, 1}, and a short description. ``lesion``:
    (its patient, the region) a lesion patch is centred on, drawn beforehand; other kinds come from ``case``."""
    kind, v, ref = draw_centre(case, spec, rng, None if lesion is None else lesion[1])
    case = lesion[0] if kind == "lesion" and lesion is not None else case
    nz = case.ct_hu.shape[0]
    z = int(np.clip(round(v[0]), 0, nz - 1))
    scale, angle, flip, pet_gain, dropout = 1.0, 0.0, False, 1.0, 1.0
    if spec.augment:
        if rng.random() < 0.5:
            scale = float(rng.uniform(0.85, 1.15))
        if rng.random() < 0.3:
            angle = float(np.deg2rad(rng.uniform(-15, 15)))
        flip = bool(rng.random() < 0.5)
        if rng.random() < spec.pet_gain_p:  # PET calibration varies, and cold tumours must be found on the CT
            pet_gain = float(np.exp(rng.uniform(np.log(spec.pet_gain_range[0]), np.log(spec.pet_gain_range[1]))))
        if rng.random() < spec.pet_dropout:  # cold tumours exist (SUVmax < 3): teach the CT's part
            dropout = float(rng.uniform(0.0, 0.2))
    m = patch_matrix((v[1], v[2]), spec.patch, scale, angle, flip)
    half = spec.in_slices // 2
    zs = [int(np.clip(z + o, 0, nz - 1)) for o in range(-half, half + 1)]
    crop = is_crop(m)  # once for the patch's 7-10 slices (~30-60 µs a call: np.allclose)
    ct = np.stack([extract(case.ct_hu[k], m, spec.patch, 1, AIR_HU, crop) for k in zs])
    pet = np.stack([extract(case.pet_suv[k], m, spec.patch, 1, 0.0, crop) for k in zs]) * (pet_gain * dropout)
    mask = extract(case.target[z].astype(np.float32), m, spec.patch, 1, 0.0, crop) >= 0.5
    cold = 1.0
    if spec.augment and kind == "lesion" and spec.cold_p and rng.random() < spec.cold_p:
        lesion = np.stack([extract(case.target[k].astype(np.float32), m, spec.patch, 1, 0.0, crop) for k in zs])
        pet, cold = make_cold(pet, lesion, float(rng.uniform(*spec.cold_suv_range)), case.spacing_mm[1] * scale)
    image = window_patch(ct, pet, spec.preset, None if ref is None else ref * pet_gain * cold)  # LUCID too
    return image, mask.astype(np.float32)[None], f"{case.name}/{kind}/z{z}"


class PatchDataset:
    """A ``torch.utils.data.Dataset`` of ``n`` patches per epoch drawn from ``cases`` (one patient uniformly, then
    a centre as :func:`draw_centre`; with ``spec.lesion_size_power`` > 0 lesion patches come from a lesion drawn
    across all patients by size). ``fixed=True`` gives the same patches every epoch (validation, test)."""

    def __init__(self, cases: Sequence[VolumeCase], spec: PatchSpec, n: int, seed: int = 0, fixed: bool = False):
        if not cases:
            raise ValueError("no volumes to sample patches from")
        self.cases, self.spec, self.n, self.seed, self.fixed = list(cases), spec, int(n), seed, fixed
        self.epoch = 0
        self._lesions = [(c, r) for c in self.cases for r in c.lesions]
        self._lesion_p = (
            hot_weights([r for _, r in self._lesions], spec.lesion_size_power)
            if spec.lesion_size_power > 0 and self._lesions
            else None
        )

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch + 1, index])
        case = self.cases[rng.integers(len(self.cases))]
        lesion = None
        if self._lesion_p is not None:  # drawn for every patch, so a patch's draws do not depend on its kind
            lesion = self._lesions[rng.choice(len(self._lesions), p=self._lesion_p)]
        image, mask, item = sample_patch(case, self.spec, rng, lesion)
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask), "item": item}

    def patient_of(self, index: int) -> str:
        """The patient patch ``index`` comes from, without drawing the patch (the same draws as ``__getitem__``)."""
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch + 1, index])
        case = self.cases[rng.integers(len(self.cases))]
        if self._lesion_p is not None:
            lesion_case = self._lesions[rng.choice(len(self._lesions), p=self._lesion_p)][0]
            if rng.random() < self.spec.fg_fraction:  # draw_centre's first draw: a lesion patch
                return lesion_case.name
        return case.name
