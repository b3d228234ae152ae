"""Slice-wise 2D / 2.5D prediction of a whole CT volume, with the training data's windows.

The pure pieces: :func:`canonical_flips` (axial series of any flip -> the head-first orientation the models were
trained on), :func:`window_inputs` (HU / SUV -> the grey levels of the training PNGs at the model's size),
:func:`stack_indices` (2.5D neighbours with replicated edges, as :mod:`igtv.data.datasets`), and
:func:`pet_references` (the "ROI SUVmax" of the LUCID windows when no ROI is known yet).

LUCID-windowed models saw PET divided by the SUVmax of the ROI they had to find. On a new patient that ROI is
unknown, so each FDG-avid candidate (a connected region of SUV >= 2.5 whose SUVmax passes the training QC) is
tried in turn: the slices around it are windowed with its SUVmax, predicted, and the predicted components that
overlap the candidate are kept. Models trained on the PCLT20K windows (fixed SUV range) need one pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from igtv.geometry import Geometry

log = logging.getLogger(__name__)

AXIS_TOL = 1e-3


class OrientationError(ValueError):
    """An image series the slice-wise models cannot read (not axial)."""


def canonical_flips(geom: Geometry) -> tuple[bool, bool, bool]:
    """Flips of the (z, y, x) array axes that bring an axial series to identity direction (head-first supine).

    Feet-first or prone series (direction diag(+-1, +-1, +-1)) are flipped; sagittal, coronal and oblique series
    are refused: the models were trained on axial slices.
    """
    d = geom.direction_matrix
    diag = np.diag(d)
    if not np.allclose(np.abs(d), np.eye(3), atol=AXIS_TOL):
        raise OrientationError(
            "only axial image series can be contoured (ImageOrientationPatient must be along the patient x/y axes); "
            f"got direction columns {np.round(d.T, 3).tolist()}"
        )
    return bool(diag[2] < 0), bool(diag[1] < 0), bool(diag[0] < 0)


def apply_flips(array: np.ndarray, flips: tuple[bool, bool, bool]) -> np.ndarray:
    """Flip a ``[z, y, x]`` array along the axes marked True (an involution: applying it twice is identity)."""
    axes = tuple(a for a, f in enumerate(flips) if f)
    return np.flip(array, axis=axes) if axes else array


def stack_indices(z: int, nz: int, input_slices: int) -> list[int]:
    """Slice indices of the 2.5D stack of slice ``z`` (t-1, t, t+1; edges replicated), or ``[z]`` in 2D."""
    if input_slices == 1:
        return [z]
    half = input_slices // 2
    return [min(max(z + o, 0), nz - 1) for o in range(-half, half + 1)]


def resize_stack(stack: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) float -> (N, size, size), with the training loader's resize (PIL bilinear)."""
    from igtv.data.png import resize_slice

    if stack.shape[1:] == (size, size):
        return stack.astype(np.float32)
    return np.stack([resize_slice(s, size) for s in stack]).astype(np.float32)


def window_inputs(ct_hu: np.ndarray, preset: str, size: int) -> np.ndarray:
    """CT HU ``[z, y, x]`` -> uint8 ``[z, size, size]`` grey levels of the preset's CT window."""
    from igtv.data.windows import PRESETS, to_uint8, window_ct

    return to_uint8(resize_stack(window_ct(ct_hu, *PRESETS[preset].ct_hu), size))


def window_pet(pet_suv: np.ndarray, preset: str, size: int, reference_suv: float | None = None) -> np.ndarray:
    """PET SUV ``[z, y, x]`` -> uint8 ``[z, size, size]``: fixed SUV range (PCLT20K) or / ``reference_suv``."""
    from igtv.data.windows import PRESETS, scale_pet_roi_max, scale_pet_suv, to_uint8

    p = PRESETS[preset]
    if p.pet_mode == "roi_max":
        if reference_suv is None:
            raise ValueError("the LUCID PET window needs a reference SUVmax")
        img = scale_pet_roi_max(pet_suv, reference_suv)
    else:
        img = scale_pet_suv(pet_suv, *p.pet_suv)
    return to_uint8(resize_stack(img, size))


@dataclass(frozen=True)
class PetReference:
    """One FDG-avid candidate region: its label in the candidate map, SUVmax and slice range."""

    label: int
    suv_max: float
    z_lo: int
    z_hi: int
    volume_cc: float


def pet_references(
    pet_suv: np.ndarray,
    geom: Geometry,
    min_suv_max: float = 3.0,
    threshold_suv: float = 2.5,
    min_volume_cc: float = 0.05,
    max_candidates: int = 12,
) -> tuple[np.ndarray, list[PetReference]]:
    """Candidate map (int32 labels of SUV >= ``threshold_suv`` regions, 26-connected) and the candidates whose
    SUVmax >= ``min_suv_max``, hottest first."""
    from scipy import ndimage

    hot = pet_suv >= threshold_suv
    labels, n = ndimage.label(hot, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return labels.astype(np.int32), []
    idx = np.arange(1, n + 1)
    maxima = ndimage.maximum(pet_suv, labels, idx)
    sizes = ndimage.sum(hot, labels, idx)
    boxes = ndimage.find_objects(labels)
    refs = []
    for lab, m, sz, box in zip(idx, maxima, sizes, boxes, strict=True):
        vol = float(sz) * geom.voxel_volume_cc
        if m >= min_suv_max and vol >= min_volume_cc:
            refs.append(PetReference(int(lab), float(m), box[0].start, box[0].stop - 1, vol))
    refs.sort(key=lambda r: -r.suv_max)
    if len(refs) > max_candidates:
        log.warning("%d PET candidates; only the %d hottest are contoured", len(refs), max_candidates)
        refs = refs[:max_candidates]
    return labels.astype(np.int32), refs


PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of a forward pass, or None for float32: ``auto`` is AMP on CUDA (bf16 where supported,
    else fp16) and float32 on CPU; ``bf16`` is bfloat16 autocast on either (fast on CPUs with AVX512-BF16 or AMX);
    ``fp32`` is float32 everywhere. The selective scan itself always runs in float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


TTA_FLIPS = [(), (-1,)]  # identity and left-right (the W axis of (B, C, H, W)): the flips of training augmentation


@torch.no_grad()
def forward_probabilities(
    model: torch.nn.Module,
    x_grey: torch.Tensor,
    device: torch.device,
    tta: bool = False,
    amp: bool = True,
    precision: str = "auto",
) -> torch.Tensor:
    """Foreground probability ``(B, H, W)`` of a batch of grey-level inputs ``(B, C, H, W)`` in [0, 255]. With
    ``tta`` it is the mean over the identity and the left-right flip: the one flip training augments with
    (:mod:`igtv.data.augment`). The anterior-posterior flips are not used: a model never shows a body upside down,
    and on 12 unseen phantom patients the four-flip mean lost 0.033 mean 3D Dice (one patient 0.81 -> 0.16; README
    *Prediction*). ``amp=False`` forces float32; otherwise ``precision`` decides (:func:`autocast_dtype`)."""
    from igtv.models.cipa import normalize_png

    xt = normalize_png(x_grey.to(device, torch.float32))
    flips = TTA_FLIPS if tta else [()]
    dtype = autocast_dtype(device, precision if amp else "fp32")
    prob = torch.zeros((xt.shape[0], 1, *xt.shape[-2:]), device=device)
    for dims in flips:
        xin = xt.flip(dims) if dims else xt
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(xin)
        p = torch.sigmoid(logits.float())
        prob += p.flip(dims) if dims else p
    return (prob / len(flips))[:, 0]


def predict_slices(
    model: torch.nn.Module,
    ct_u8: np.ndarray,
    pet_u8: np.ndarray,
    z_indices: Sequence[int],
    input_slices: int,
    device: torch.device,
    batch_size: int = 8,
    tta: bool = False,
    amp: bool = True,
    progress: Callable[[int], None] | None = None,
    precision: str = "auto",
) -> np.ndarray:
    """Foreground probabilities (float32 ``[len(z_indices), S, S]``) of the given slices.

    ``ct_u8`` / ``pet_u8`` are whole windowed volumes ``[z, S, S]`` (2.5D neighbours come from them).
    """
    nz = ct_u8.shape[0]
    out = np.zeros((len(z_indices), *ct_u8.shape[1:]), dtype=np.float32)
    for start in range(0, len(z_indices), batch_size):
        zs = z_indices[start : start + batch_size]
        rows = [stack_indices(z, nz, input_slices) for z in zs]
        x = np.stack([np.concatenate([ct_u8[r], pet_u8[r]]) for r in rows]).astype(np.float32)  # (B, 2S, H, W)
        out[start : start + len(zs)] = (
            forward_probabilities(model, torch.from_numpy(x), device, tta, amp, precision).cpu().numpy()
        )
        if progress is not None:
            progress(len(zs))
    return out


def to_native(prob_model: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Model-size probabilities ``[n, S, S]`` -> uint8 ``[n, H, W]`` (0..255) on the CT's in-plane grid."""
    t = torch.from_numpy(prob_model)[:, None]
    if tuple(prob_model.shape[1:]) != tuple(shape_yx):
        t = torch.nn.functional.interpolate(t, size=shape_yx, mode="bilinear", align_corners=False)
    return np.clip(np.round(t[:, 0].numpy() * 255.0), 0, 255).astype(np.uint8)


def slice_mask_predictor(
    lm, dataset, device: torch.device, tta: bool = False
) -> Callable[[list[int]], list[np.ndarray]]:
    """Indices of a :class:`~igtv.data.datasets.SliceDataset` -> boolean masks at each slice's own PNG size, with a
    loaded model (``igtv evaluate`` and ``igtv predict --pclt`` both predict PNG slices with it)."""
    from igtv.data.png import load_png

    def run(idx: list[int]) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack([dataset[i]["image"] for i in idx]))
        prob = forward_probabilities(lm.model, x, device, tta).cpu().numpy()
        out = []
        for j, i in enumerate(idx):
            ref = dataset.items[i]
            shape = load_png(dataset.root / ref.folder / f"{ref.name}_CT.png").shape
            out.append(to_native(prob[j : j + 1], shape)[0] >= lm.threshold * 255.0)
        return out

    return run
