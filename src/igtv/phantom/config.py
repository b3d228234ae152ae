"""Phantom settings: the cohort configuration, the scanner profiles it draws from, and the label map's names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

# The phantom's patients are synthetic, so the demo and Table II prepare them with this fixed pseudonym key (see
# ``igtv.data.prepare``): a rerun gives the same pseudonyms, hence the same sample order and the same model.
PHANTOM_PSEUDONYM_KEY = hashlib.sha256(b"igtv phantom: synthetic patients").digest()


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
    # domain randomisation (wide intensity, noise, PSF, voxel size and anatomy ranges), for pre-training data
    randomize: bool = False

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

# tissue labels of the anatomy (the first 13 keep their meaning from phantom v1)
(
    AIR,
    FAT,
    SOFT,
    LUNG,
    HEART_WALL,
    HEART_BLOOD,
    LIVER,
    ABDOMEN,
    RIB,
    VERTEBRA,
    CANAL,
    AORTA,
    TRACHEA,
    TABLE,
    TABLE_CORE,
    MED_FAT,
    AIRWAY_WALL,
    PULM_ARTERY,
    VEIN,
    OESOPHAGUS,
    LUNG_VESSEL,
    FISSURE,
    SPLEEN,
    KIDNEY,
    KIDNEY_PELVIS,
    STOMACH,
    GAS,
    BONE,
    MARROW,
    EFFUSION,
    ATELECTASIS,
    BROWN_FAT,
    HEART_RV,
    BREAST,
    NODE_1,
    NODE_2,
    NODE_3,
    NODE_4,
) = range(38)

NODE_LABELS = (NODE_1, NODE_2, NODE_3, NODE_4)

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
    "table",
    "table_core",
    "mediastinal_fat",
    "airway_wall",
    "pulmonary_artery",
    "vein",
    "oesophagus",
    "lung_vessel",
    "fissure",
    "spleen",
    "kidney",
    "kidney_pelvis",
    "stomach",
    "gas",
    "bone",
    "marrow",
    "effusion",
    "atelectasis",
    "brown_fat",
    "heart_rv",
    "breast",
    "node_1",
    "node_2",
    "node_3",
    "node_4",
)

LUNG_LIKE = (LUNG, LUNG_VESSEL, FISSURE)
