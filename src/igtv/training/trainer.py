"""The trainer: one function, :func:`train`, for both stages, single process or DDP (``torchrun``).

Loss (Eqs. 7-8): MONAI ``DiceLoss(sigmoid=True)`` + ``BCEWithLogitsLoss``. AdamW, cosine annealing stepped every
iteration over ``epochs x steps_per_epoch``. Model selection on the validation IoU (mean over validation slices of
Eq. 9 at threshold 0.5). Every epoch writes ``last.pt`` and, on improvement, ``best.pt`` (atomic), a row of
``log.csv`` and TensorBoard scalars. ``resume=True`` continues from ``last.pt`` exactly: model, optimiser,
scheduler, AMP scaler, RNG state and epoch are restored, and the data order of epoch e depends only on
(seed, e), so an interrupted run ends with the weights of an uninterrupted one. With ``train.ema_decay`` the
validation, the selection and the checkpoints' weights are an exponential moving average of the trained weights
(:mod:`igtv.training.ema`); ``last.pt`` keeps the trained ones beside, for resuming.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from igtv.checkpoint import CheckpointError, load_checkpoint, save_model
from igtv.config import ConfigError, dump_yaml, from_dict, replace, to_dict
from igtv.device import pick_device
from igtv.io import remove_stale_temporaries, write_csv_atomic, write_text_atomic
from igtv.training.builders import FixedBatches, build_datasets, build_model, make_loader, model_card
from igtv.training.config import RunConfig
from igtv.training.distributed import EpochSampler, all_reduce_sum, init_distributed, shutdown_distributed
from igtv.training.ema import WeightEMA
from igtv.training.losses import DiceBCELoss
from igtv.training.optim import autocast_settings, build_optimizer, build_scheduler
from igtv.training.validate import evaluate_checkpoint_split, evaluate_loader

log = logging.getLogger(__name__)


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


def _save(
    path: Path, cfg: RunConfig, model, card, opt, sched, scaler, epoch, best, history, stale, transfer, ema=None,
    *, resumable: bool = False,
) -> None:  # fmt: skip
    """A checkpoint whose weights are the EMA's when there is one; a ``resumable`` one keeps the trained ones beside."""
    extra = {"trained_model": _unwrap(model).state_dict()} if ema is not None and resumable else {}
    save_model(
        path,
        (ema.module if ema is not None else _unwrap(model)).state_dict(),
        card,
        **extra,
        run_config=to_dict(cfg),
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else {},
        epoch=epoch,
        best_iou=best[0],
        best_epoch=best[1],
        stale_epochs=stale,
        history=history,
        rng_torch=torch.get_rng_state(),
        transfer=transfer or {},
    )


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


def _as_current(saved: dict) -> dict:
    """A checkpoint's run config as this version writes it: keys added since (e.g. ``init_slices``) at their
    defaults, so a run saved before they existed resumes; a config this version cannot read is returned as it is."""
    try:
        return to_dict(from_dict(RunConfig, saved))
    except ConfigError:
        return saved


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

    out = Path(out_dir)
    if not cfg.data.root and cfg.data.phantom_patients > 0:
        from igtv.training.synthetic import synthetic_dataset

        root = synthetic_dataset(cfg.data, out / "phantom_cache", progress=progress)
        cfg = replace(cfg, data=replace(cfg.data, root=str(root)))
    if not cfg.data.root:
        raise ValueError("no dataset: set data.root in the config or pass --data DIR")
    dist_info = init_distributed(
        "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    device = pick_device(cfg.device, dist_info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    if cfg.train.val_every < 1 or cfg.train.val_from < 1:
        raise ValueError(f"train.val_every and train.val_from must be at least 1, got {cfg.train.val_every} and "
                         f"{cfg.train.val_from}")  # fmt: skip
    if cfg.train.batch_size % dist_info.world:
        raise ValueError(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist_info.world} processes")
    local_batch = cfg.train.batch_size // dist_info.world

    model = build_model(cfg)
    card = model_card(cfg, model)
    if card.mode != cfg.data.mode:
        raise ValueError(
            f"model {cfg.model} reads {'2.5D' if card.in_slices == 3 else '2D'} input but data.mode is {cfg.data.mode}"
        )
    transfer = None
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"{last}: nothing to resume")
        state = load_checkpoint(last)
        saved = _as_current(dict(state["run_config"]))  # keys added since it was saved take their defaults
        if {k: v for k, v in saved.items() if k != "overrides"} != {
            k: v for k, v in to_dict(cfg).items() if k != "overrides"
        }:
            raise CheckpointError(f"{last}: was trained with another config; resume needs the same settings")
        model.load_state_dict(state.get("trained_model", state["model"]))  # with EMA: the trained weights
        transfer = state.get("transfer") or None
    else:
        if cfg.pretrained_encoder:  # ImageNet VMamba weights into the encoder(s), as the CIPA authors start
            reports = load_vmamba_into_cipa(model, cfg.pretrained_encoder)
            if dist_info.main:
                print("\n".join(r.summary() for r in reports))
                reports_json = json.dumps([r.to_dict() for r in reports], indent=1)
                write_text_atomic(out / "pretrained_report.json", reports_json)
        if cfg.init:
            report = transfer_weights(model, load_checkpoint(cfg.init)["model"], cfg.init_slices)
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
    train_loader = make_loader(train_ds, local_batch, sampler, cfg.data.num_workers, drop_last)
    val_sampler = EpochSampler(len(val_ds), cfg.seed, dist_info.rank, dist_info.world, shuffle=False)
    val_loader = FixedBatches(make_loader(val_ds, max(local_batch, 1), val_sampler, cfg.data.num_workers, False))
    steps = len(train_loader)
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)

    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt, steps)
    amp = autocast_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp[0] and amp[1] == torch.float16 else None
    loss_fn = DiceBCELoss(cfg.train.batch_dice)
    ema = WeightEMA(_unwrap(model), cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    history: list[dict] = []
    best, stale, start = (-1.0, -1), 0, 0
    if resume:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_torch"])
        history = list(state["history"])
        if ema is not None:  # the checkpoint's weights are the average; the trained ones were restored above
            ema.module.load_state_dict(state["model"])
        best, stale, start = (state["best_iou"], state["best_epoch"]), state["stale_epochs"], state["epoch"] + 1
        if dist_info.main:
            print(f"resuming {out} at epoch {start + 1}/{cfg.train.epochs} (best IoU {best[0]:.4f})")

    writer = None
    if dist_info.main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # a killed run's half-written checkpoint or log
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
            if ema is not None:
                ema.update(_unwrap(model))
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
        last_epoch = epoch + 1 == cfg.train.epochs or (stop_after_epoch is not None and epoch + 1 >= stop_after_epoch)
        val, improved = None, False
        if ((epoch + 1) % cfg.train.val_every == 0 and epoch + 1 >= cfg.train.val_from) or last_epoch:
            judged = ema.module if ema is not None else model
            val = evaluate_loader(judged, val_loader, device, loss_fn, cfg.train.threshold, amp, dist_info)
            improved = val["iou"] > best[0]
            if improved:
                best = (val["iou"], epoch)
            stale = epoch - best[1]  # epochs since the best validation (patience counts epochs, not validations)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(float(tl[0] / max(tl[1], 1)), 6),
            **{f"val_{k}": None if val is None else round(val[k], 6) for k in ("loss", "iou", "dice", "pooled_iou")},
            "lr": sched.get_last_lr()[0],
            "seconds": round(time.perf_counter() - t0, 2),
            "train_img_per_s": round(seen / max(train_seconds, 1e-9), 3),
        }
        history.append(row)
        if dist_info.main:
            print(
                f"epoch {epoch + 1}/{cfg.train.epochs}: train loss {row['train_loss']:.4f}, "
                + (
                    f"val loss {row['val_loss']:.4f}, val IoU {row['val_iou']:.4f}, Dice {row['val_dice']:.4f}"
                    if val is not None
                    else f"no validation (every {cfg.train.val_every} epochs from epoch {cfg.train.val_from})"
                )
                + (" (best)" if improved else "")
            )
            state = (cfg, model, card, opt, sched, scaler, epoch, best, history, stale, transfer, ema)
            if improved:
                _save(out / "best.pt", *state)
            _save(last, *state, resumable=True)
            _write_log(out / "log.csv", history)
            if writer is not None:
                for key, value in row.items():
                    if key != "epoch" and value is not None:
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
