"""One dataset API for PCLT20K (as published) and for datasets made by ``igtv prepare`` (same layout).

Layout: ``ROOT/<id>/<name>_{CT,PET,mask}.png`` with sample lists ``ROOT/train.txt``, ``test.txt`` (and ``val.txt``
when present). A list line is either ``<id>/<name>`` or ``<name>``; in the latter case the folder is the part of
the name before its first underscore (PCLT20K's and igtv's convention). The slice number is the name's trailing
``_<digits>``; the 2.5D neighbours of ``<series>_<t>`` are ``<series>_<t-1>`` and ``<series>_<t+1>`` when those
files exist (context slices written by ``prepare`` count), otherwise the centre slice is replicated (volume edges).

Samples: ``image`` float32 (C, H, W) grey levels in [0, 255], CT channels first then PET (C = 2 in 2D, 6 in 2.5D:
CT t-1, t, t+1, PET t-1, t, t+1); ``mask`` float32 (1, H, W) in {0, 1} of slice t; ``item`` the sample name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from igtv.data.png import load_png
from igtv.data.split import patient_split

_SLICE = re.compile(r"^(.*)_(\d+)$")
MODALITIES = ("CT", "PET")


def parse_item(name: str) -> tuple[str, int | None]:
    """``'P1a2b_r1_0042'`` -> ``('P1a2b_r1', 42)``; a name without a trailing number has no slice index."""
    m = _SLICE.match(name)
    return (m.group(1), int(m.group(2))) if m else (name, None)


def neighbour_names(name: str, available: set[str], offsets: Sequence[int] = (-1, 0, 1)) -> list[str]:
    """Names of the slices at ``offsets`` from ``name`` within the same series; missing ones replicate ``name``."""
    series, t = parse_item(name)
    if t is None:
        return [name] * len(offsets)
    width = len(name) - len(series) - 1
    out = []
    for o in offsets:
        cand = f"{series}_{t + o:0{width}d}" if t + o >= 0 else None
        out.append(cand if cand in available else name)
    return out


def stack_slices(slices: dict[str, Sequence[np.ndarray]]) -> np.ndarray:
    """{'CT': [t-1, t, t+1], 'PET': [...]} -> (2S, H, W) float32, CT first (the model's channel order)."""
    return np.stack([np.asarray(s, dtype=np.float32) for m in MODALITIES for s in slices[m]])


@dataclass(frozen=True)
class ItemRef:
    folder: str  # the <id> folder
    name: str


def _resolve(line: str, where: str = "") -> ItemRef:
    """A list line -> (folder, name); a line that would leave the dataset root is an error naming the list."""
    line = line.strip()
    folder, name = line.rsplit("/", 1) if "/" in line else (line.split("_", 1)[0], line)
    parts = folder.replace("\\", "/").split("/")
    if line.startswith(("/", "\\")) or ".." in parts or "" in parts or name in ("", ".", ".."):
        raise ValueError(f"{where}: {line!r} is not a <id>/<name> inside the dataset (it would leave the dataset root)")
    return ItemRef(folder, name)


def read_list(root: Path, split: str) -> list[ItemRef]:
    path = root / f"{split}.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no '{split}' list in the dataset")
    return [_resolve(line, str(path)) for line in path.read_text().splitlines() if line.strip()]


def split_items(
    root: str | Path, split: Literal["train", "val", "test", "all"], val_fraction: float = 0.15, seed: int = 0
) -> list[ItemRef]:
    """Items of a split. Without a non-empty ``val.txt`` (PCLT20K ships train/test only; a prepared dataset of very
    few patients may have no validation patient), ``val`` is a seeded patient-level fraction of ``train`` and
    ``train`` is the rest. ``all`` is every listed item (train, val and test), e.g. to score a model on a cohort
    that none of its training saw."""
    root = Path(root)
    if split == "all":
        lists = [read_list(root, name) for name in ("train", "val", "test") if (root / f"{name}.txt").exists()]
        if not lists:
            raise FileNotFoundError(f"{root}: no train.txt, val.txt or test.txt in the dataset")
        return list(dict.fromkeys(r for items in lists for r in items))
    if split == "test" or ((root / "val.txt").exists() and read_list(root, "val")):
        return read_list(root, split)
    train = read_list(root, "train")
    val = set(patient_split(sorted({r.folder for r in train}), (1.0 - val_fraction, val_fraction, 0.0), seed)["val"])
    return [r for r in train if (r.folder in val) == (split == "val")]


class SliceDataset:
    """2D or 2.5D PET/CT slices of one split (a ``torch.utils.data.Dataset``: ``len`` and integer indexing).

    Args:
        root: dataset folder (PCLT20K or ``igtv prepare`` output).
        split: ``train``, ``val``, ``test`` or ``all`` (every listed slice).
        mode: ``2d`` (one CT + one PET slice) or ``25d`` (slices t-1, t, t+1 per modality).
        transform: ``f(image, mask, rng) -> (image, mask)`` on numpy arrays, e.g. :class:`igtv.data.augment.Augment`.
        seed: seeds the augmentation stream (sample i of epoch e uses ``(seed, e, i)``; call :meth:`set_epoch`).
        size: resize every slice to ``size`` x ``size`` on load (bilinear; nearest for the mask); 0 keeps it.
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val", "test", "all"] = "train",
        mode: Literal["2d", "25d"] = "25d",
        transform: Callable | None = None,
        val_fraction: float = 0.15,
        seed: int = 0,
        items: Sequence[ItemRef] | None = None,
        size: int = 0,
    ) -> None:
        if mode not in ("2d", "25d"):
            raise ValueError(f"mode must be '2d' or '25d', got {mode!r}")
        self.root = Path(root)
        self.mode = mode
        self.transform = transform
        self.seed = seed
        self.size = size
        self.epoch = 0
        self.items = list(items) if items is not None else split_items(self.root, split, val_fraction, seed)
        self._available: dict[str, set[str]] = {}
        for ref in self.items:
            if not (self.root / ref.folder / f"{ref.name}_CT.png").exists():
                listed = "the dataset's lists" if split == "all" else f"{split}.txt"
                raise FileNotFoundError(f"{self.root / ref.folder / ref.name}_CT.png: listed in {listed}, missing")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def available(self, folder: str) -> set[str]:
        if folder not in self._available:
            self._available[folder] = {p.name[: -len("_CT.png")] for p in (self.root / folder).glob("*_CT.png")}
        return self._available[folder]

    def names(self, index: int) -> list[str]:
        ref = self.items[index]
        if self.mode == "2d":
            return [ref.name]
        return neighbour_names(ref.name, self.available(ref.folder))

    def __getitem__(self, index: int) -> dict:
        ref = self.items[index]
        folder = self.root / ref.folder
        names = self.names(index)
        slices = {m: [load_png(folder / f"{n}_{m}.png") for n in names] for m in MODALITIES}
        mask = load_png(folder / f"{ref.name}_mask.png") > 127
        for modality in MODALITIES:
            for n, img in zip(names, slices[modality], strict=True):
                if img.shape != mask.shape:
                    raise ValueError(
                        f"{folder / f'{n}_{modality}.png'}: {img.shape[1]}x{img.shape[0]} px, but {ref.name}_mask.png "
                        f"is {mask.shape[1]}x{mask.shape[0]}: the CT, PET and mask PNGs of a sample must have one size"
                    )
        if self.size and mask.shape != (self.size, self.size):
            from igtv.data.png import resize_slice

            slices = {m: [resize_slice(s, self.size) for s in v] for m, v in slices.items()}
            mask = resize_slice(mask.astype(np.float32), self.size, nearest=True) > 0.5
        image = stack_slices(slices)
        mask = mask.astype(np.float32)[None]
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, mask = self.transform(image, mask, rng)
        import torch

        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
            "item": f"{ref.folder}/{ref.name}",
        }

    def patient_of(self, index: int) -> str:
        return self.items[index].folder


def dataset_preprocessing(root: str | Path) -> dict:
    """How a dataset's PNGs were windowed, so that prediction on new DICOM can do the same.

    A dataset made by ``igtv prepare`` records its preset in ``prepare.yaml``; any other folder in the PCLT20K
    layout is taken to use the PCLT20K windows (CT [-1200, 200] HU, PET SUV [0, 15]).
    """
    root = Path(root)
    saved = root / "prepare.yaml"
    if saved.exists():
        import yaml

        prepared = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        if "preset" not in prepared:
            raise ValueError(f"{saved}: no 'preset' (not written by igtv prepare?)")
        return {
            "preset": prepared["preset"],
            "min_suv_max": float(prepared.get("min_suv_max", 3.0)),
            "source": "prepare.yaml",
        }
    return {"preset": "pclt20k", "min_suv_max": 0.0, "source": "PCLT20K layout"}
