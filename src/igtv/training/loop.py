"""The trainer: one function, :func:`train`, for both stages, single process or DDP (``torchrun``).

Loss (Eqs. 7-8): MONAI ``DiceLoss(sigmoid=True)`` + ``BCEWithLogitsLoss``. AdamW, cosine annealing stepped every
iteration over ``epochs x steps_per_epoch``. Model selection on the validation IoU (mean over validation slices of
Eq. 9 at threshold 0.5). Every epoch writes ``last.pt`` and, on improvement, ``best.pt`` (atomic), a row of
``log.csv`` and TensorBoard scalars. ``resume=True`` continues from ``last.pt`` exactly: model, optimiser,
scheduler, AMP scaler, RNG state and epoch are restored, and the data order of epoch e depends only on
(seed, e), so an interrupted run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from igtv.config import dump_yaml, to_dict
from igtv.data.datasets import dataset_preprocessing
from igtv.io import write_csv_atomic, write_text_atomic
from igtv.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from igtv.training.config import RunConfig

log = logging.getLogger(__name__)


# --- distributed helpers ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_sum(values: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def pick_device(kind: str, local_rank: int = 0) -> torch.device:
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled indices of epoch e from (seed, e), padded to a multiple of ``world`` and dealt out round-robin, so
    the union of the ranks' batches at each step is the single-process batch of the same global size."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True) -> None:
        self.n, self.seed, self.rank, self.world, self.shuffle = n, seed, rank, world, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world > 1 and self.shuffle:
            order += order[: (-len(order)) % self.world]
        return order[self.rank :: self.world]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return len(self.indices())


# --- pieces -------------------------------------------------------------------------------------------------------
def model_input_slices(name: str) -> int:
    """1 for 2D variants (``*_2d_*``), 3 for 2.5D ones (``*_25d*``)."""
    if "_25d" in name:
        return 3
    if "_2d" in name:
        return 1
    raise ValueError(f"model {name!r}: cannot tell 2D from 2.5D input (expected _2d or _25d in the name)")


class DiceBCELoss(nn.Module):
    """Eqs. 7-8: Dice loss + binary cross-entropy on logits (MONAI DiceLoss with sigmoid; per-sample mean, or one
    Dice over the whole batch with ``batch=True``, which does not punish patches without target as hard)."""

    def __init__(self, batch: bool = False) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, batch=batch)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.bce(logits, target)


def autocast_settings(cfg: RunConfig, device: torch.device) -> tuple[bool, torch.dtype | None]:
    if cfg.train.amp == "off" or device.type != "cuda":
        return False, None
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _loader(ds, batch: int, sampler, num_workers: int, drop_last: bool):
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, sampler=sampler, num_workers=num_workers, drop_last=drop_last, pin_memory=False
    )


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader, device, loss_fn, threshold: float, amp: tuple, dist_info: DistInfo
) -> dict[str, float]:
    """Mean per-slice IoU/Dice (Eqs. 9-10), pooled IoU/Dice and the loss over a loader, reduced over ranks."""
    from igtv.evaluation.metrics import confusion, dice_from_counts, iou_from_counts
    from igtv.models.cipa import normalize_png

    model.eval()
    sums = torch.zeros(7, dtype=torch.float64)  # iou, dice, n, loss*n, tp, fp, fn
    for batch in loader:
        x = normalize_png(batch["image"].to(device))
        y = batch["mask"].to(device)
        with torch.autocast(device.type, dtype=amp[1], enabled=amp[0]):
            logits = model(x)
        logits = logits.float()
        c = confusion(torch.sigmoid(logits) > threshold, y > 0.5).cpu()
        sums[0] += iou_from_counts(c).sum()
        sums[1] += dice_from_counts(c).sum()
        sums[2] += len(c)
        sums[3] += float(loss_fn(logits, y)) * len(c)
        sums[4:7] += c[:, :3].sum(0)
    sums = all_reduce_sum(sums, dist_info)
    n = max(float(sums[2]), 1.0)
    tp, fp, fn = (float(v) for v in sums[4:7])
    return {
        "iou": float(sums[0]) / n,
        "dice": float(sums[1]) / n,
        "loss": float(sums[3]) / n,
        "pooled_iou": tp / max(tp + fp + fn, 1.0),
        "pooled_dice": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "n": int(sums[2]),
    }


def _write_log(path: Path, history: list[dict]) -> None:
    if history:
        write_csv_atomic(path, history)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: CSV only
        log.info("tensorboard not installed: logging to log.csv only")
        return None
    return SummaryWriter(str(out / "tb"))


@dataclass
class TrainResult:
    out_dir: Path
    best_iou: float
    best_epoch: int
    epochs_run: int
    history: list[dict]
    test: dict | None
    transfer: dict | None


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _payload(cfg, model, opt, sched, scaler, epoch, best, history, stale, transfer) -> dict:
    m = _unwrap(model)
    return {
        "model_name": cfg.model,
        "model_config": to_dict(m.config) if hasattr(m, "config") else {},
        "input_slices": model_input_slices(cfg.model),
        "run_config": to_dict(cfg),
        "preprocessing": preprocessing_of(cfg),
        "model": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "best_iou": best[0],
        "best_epoch": best[1],
        "stale_epochs": stale,
        "history": history,
        "rng_torch": torch.get_rng_state(),
        "transfer": transfer or {},
    }


def preprocessing_of(cfg: RunConfig) -> dict:
    """What prediction must reproduce: windows, and for patch-trained models the pixel size and patch side."""
    pre = dataset_preprocessing(cfg.data.root)
    if cfg.data.sampler == "slices":
        return {**pre, "sampler": "slices"}
    return {
        "preset": cfg.data.preset,
        "min_suv_max": pre.get("min_suv_max", 0.0),
        "source": "run config (patches)",
        "sampler": "patches",
        "spacing_mm": cfg.data.spacing_mm,
        "patch": cfg.data.patch,
    }


def build_datasets(cfg: RunConfig, splits: tuple[str, ...] = ("train", "val")) -> list:
    """The datasets of ``splits``: whole slices (paper protocol) or patches from the volumes."""
    from igtv.data.augment import Augment
    from igtv.data.datasets import SliceDataset

    d = cfg.data
    if d.sampler == "slices":
        aug = Augment() if d.augment else None
        common = dict(mode=d.mode, val_fraction=d.val_fraction, seed=cfg.seed, size=d.size)
        return [SliceDataset(d.root, s, transform=aug if s == "train" else None, **common) for s in splits]
    from dataclasses import replace as dc_replace

    from igtv.data.sampling import PatchDataset, PatchSpec, load_split_cases

    spec = PatchSpec(
        patch=d.patch,
        preset=d.preset,
        in_slices=3 if d.mode == "25d" else 1,
        fg_fraction=d.fg_fraction,
        hot_fraction=d.hot_fraction,
        jitter=d.jitter,
        augment=d.augment,
        pet_gain_p=d.pet_gain_p,
        pet_gain_range=d.pet_gain_range,
        pet_dropout=d.pet_dropout,
        cold_p=d.cold_p,
        cold_suv_range=tuple(d.cold_suv_range),
    )
    out = []
    for s in splits:
        cases = load_split_cases(d.root, s, d.spacing_mm, d.val_fraction, cfg.seed)
        if not cases:
            out.append([])
        elif s == "train":
            out.append(PatchDataset(cases, spec, d.samples_per_epoch, cfg.seed))
        else:  # fixed patches, no augmentation, seeded apart from training
            out.append(PatchDataset(cases, dc_replace(spec, augment=False), d.eval_samples, cfg.seed + 7919, True))
    return out


def build_model(cfg: RunConfig) -> nn.Module:
    from igtv.models import create_model

    return create_model(cfg.model)


# --- the trainer --------------------------------------------------------------------------------------------------
def train(
    cfg: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir``; ``stop_after_epoch`` ends this call early (time-boxed jobs, tests)."""
    try:
        result = _train(cfg, out_dir, resume, stop_after_epoch, progress)
    except BaseException:
        shutdown_distributed(barrier=False)
        raise
    shutdown_distributed(barrier=True)
    return result


def shutdown_distributed(barrier: bool = True) -> None:
    """Leave the process group cleanly (a gloo group left to the interpreter's exit can abort a rank)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            if barrier:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def _train(
    cfg: RunConfig,
    out_dir: str | Path,
    resume: bool,
    stop_after_epoch: int | None,
    progress: bool,
) -> TrainResult:
    from tqdm import tqdm

    from igtv.models.cipa import normalize_png
    from igtv.models.pretrained import load_vmamba_into_cipa
    from igtv.training.transfer import transfer_weights

    if not cfg.data.root:
        raise ValueError("no dataset: set data.root in the config or pass --data DIR")
    out = Path(out_dir)
    dist_info = init_distributed(
        "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    device = pick_device(cfg.device, dist_info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    slices = model_input_slices(cfg.model)
    if (slices == 3) != (cfg.data.mode == "25d"):
        raise ValueError(
            f"model {cfg.model} reads {'2.5D' if slices == 3 else '2D'} input but data.mode is {cfg.data.mode}"
        )
    if cfg.train.batch_size % dist_info.world:
        raise ValueError(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist_info.world} processes")
    local_batch = cfg.train.batch_size // dist_info.world

    model = build_model(cfg)
    transfer = None
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"{last}: nothing to resume")
        state = load_checkpoint(last)
        saved = dict(state["run_config"])
        if {k: v for k, v in saved.items() if k != "overrides"} != {
            k: v for k, v in to_dict(cfg).items() if k != "overrides"
        }:
            raise CheckpointError(f"{last}: was trained with another config; resume needs the same settings")
        model.load_state_dict(state["model"])
        transfer = state.get("transfer") or None
    else:
        if cfg.pretrained_encoder:  # ImageNet VMamba weights into the encoder(s), as the CIPA authors start
            reports = load_vmamba_into_cipa(model, cfg.pretrained_encoder)
            if dist_info.main:
                print("\n".join(r.summary() for r in reports))
                reports_json = json.dumps([r.to_dict() for r in reports], indent=1)
                write_text_atomic(out / "pretrained_report.json", reports_json)
        if cfg.init:
            report = transfer_weights(model, load_checkpoint(cfg.init)["model"])
            transfer = report.to_dict()
            if dist_info.main:
                print(report.summary())
                write_text_atomic(out / "transfer_report.json", json.dumps(transfer, indent=1))
    if cfg.sync_bn and dist_info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif dist_info.main:
            log.warning("sync_bn: PyTorch's SyncBatchNorm needs CUDA; on CPU BatchNorm statistics stay per process")
    model.to(device)
    if dist_info.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    train_ds, val_ds = build_datasets(cfg)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"{cfg.data.root}: empty train ({len(train_ds)}) or validation ({len(val_ds)}) split")
    sampler = EpochSampler(len(train_ds), cfg.seed, dist_info.rank, dist_info.world)
    drop_last = len(train_ds) >= cfg.train.batch_size
    train_loader = _loader(train_ds, local_batch, sampler, cfg.data.num_workers, drop_last)
    val_sampler = EpochSampler(len(val_ds), cfg.seed, dist_info.rank, dist_info.world, shuffle=False)
    val_loader = _loader(val_ds, max(local_batch, 1), val_sampler, cfg.data.num_workers, False)
    steps = len(train_loader)
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)

    if cfg.train.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg.train.lr,
            momentum=cfg.train.momentum,
            nesterov=True,
            weight_decay=cfg.train.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.train.lr, betas=cfg.train.betas, weight_decay=cfg.train.weight_decay
        )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, cfg.train.epochs * steps), eta_min=cfg.train.min_lr
    )
    amp = autocast_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp[0] and amp[1] == torch.float16 else None
    loss_fn = DiceBCELoss(cfg.train.batch_dice)
    history: list[dict] = []
    best, stale, start = (-1.0, -1), 0, 0
    if resume:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_torch"])
        history = list(state["history"])
        best, stale, start = (state["best_iou"], state["best_epoch"]), state["stale_epochs"], state["epoch"] + 1
        if dist_info.main:
            print(f"resuming {out} at epoch {start + 1}/{cfg.train.epochs} (best IoU {best[0]:.4f})")

    writer = None
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", dump_yaml(cfg))
        writer = _tensorboard(out)
    epoch = start - 1
    for epoch in range(start, cfg.train.epochs):
        model.train()
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        t0 = time.perf_counter()
        seen, loss_sum = 0, 0.0
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not (progress and dist_info.main))
        for step, batch in enumerate(train_loader):
            if step >= steps:
                break
            x = normalize_png(batch["image"].to(device, non_blocking=True))
            y = batch["mask"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp[1], enabled=amp[0]):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if cfg.train.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"epoch {epoch + 1} step {step + 1}: loss is {loss_value}")
            seen += len(x) * dist_info.world
            loss_sum += loss_value * len(x)
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.1f}")
            bar.update()
        bar.close()
        train_seconds = time.perf_counter() - t0
        tl = all_reduce_sum(torch.tensor([loss_sum, seen / dist_info.world], dtype=torch.float64), dist_info)
        val = evaluate_loader(model, val_loader, device, loss_fn, cfg.train.threshold, amp, dist_info)
        improved = val["iou"] > best[0]
        if improved:
            best, stale = (val["iou"], epoch), 0
        else:
            stale += 1
        row = {
            "epoch": epoch + 1,
            "train_loss": round(float(tl[0] / max(tl[1], 1)), 6),
            "val_loss": round(val["loss"], 6),
            "val_iou": round(val["iou"], 6),
            "val_dice": round(val["dice"], 6),
            "val_pooled_iou": round(val["pooled_iou"], 6),
            "lr": sched.get_last_lr()[0],
            "seconds": round(time.perf_counter() - t0, 2),
            "train_img_per_s": round(seen / max(train_seconds, 1e-9), 3),
        }
        history.append(row)
        if dist_info.main:
            print(
                f"epoch {epoch + 1}/{cfg.train.epochs}: train loss {row['train_loss']:.4f}, val loss "
                f"{row['val_loss']:.4f}, val IoU {row['val_iou']:.4f}, Dice {row['val_dice']:.4f}"
                + (" (best)" if improved else "")
            )
            payload = _payload(cfg, model, opt, sched, scaler, epoch, best, history, stale, transfer)
            if improved:
                save_checkpoint(out / "best.pt", payload)
            save_checkpoint(last, payload)
            _write_log(out / "log.csv", history)
            if writer is not None:
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key, value, epoch + 1)
                writer.flush()
        if cfg.train.patience and stale >= cfg.train.patience:
            if dist_info.main:
                print(f"early stopping: no better validation IoU for {stale} epochs")
            break
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    if writer is not None:
        writer.close()
    test = None
    finished = stop_after_epoch is None or epoch + 1 < stop_after_epoch or epoch + 1 >= cfg.train.epochs
    if cfg.evaluate_test and finished and (out / "best.pt").exists():
        test = evaluate_checkpoint_split(out / "best.pt", cfg, "test", device, dist_info)
        if dist_info.main and test is not None:
            write_text_atomic(out / "test_metrics.json", json.dumps(test, indent=1))
            print(
                f"test ({test['n']} slices) with best.pt (epoch {best[1] + 1}): "
                f"IoU {test['iou']:.4f}, Dice {test['dice']:.4f}"
            )
    return TrainResult(out, best[0], best[1] + 1, len(history), history, test, transfer)


def evaluate_checkpoint_split(path: Path, cfg: RunConfig, split: str, device, dist_info: DistInfo) -> dict | None:
    """Slice metrics of a checkpoint on a split of ``cfg.data.root`` (None when the split list is absent/empty)."""
    try:
        (ds,) = build_datasets(cfg, (split,))
    except FileNotFoundError:
        return None
    if len(ds) == 0:
        return None
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(path)["model"])
    model.to(device)
    sampler = EpochSampler(len(ds), cfg.seed, dist_info.rank, dist_info.world, shuffle=False)
    loader = _loader(ds, max(1, cfg.train.batch_size // dist_info.world), sampler, cfg.data.num_workers, False)
    loss_fn = DiceBCELoss(cfg.train.batch_dice)
    amp = autocast_settings(cfg, device)
    return evaluate_loader(model, loader, device, loss_fn, cfg.train.threshold, amp, dist_info)
