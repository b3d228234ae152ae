"""``igtv bench``: speed and memory of the selective scan, the models, whole-patient prediction and ``prepare``.

Everything is measured in one run on the machine it runs on, and printed as one Markdown table (the latest is kept
in ``docs/performance.md``). Figures are medians of a few repeats after a warm-up (numba compiles there); they
assert nothing. The sections:

1. the selective scan of each available implementation at the four encoder-stage sizes of a 512 x 512 input to
   the paper-size model (``cipa_*_t``), forward and forward + backward, as ratios against ``ref`` and against a
   pure-PyTorch parallel scan (:func:`parallel_scan_torch`, the Blelloch algorithm of mamba.py's ``pscan``);
2. the forward and the training step of ``tiny``, ``s`` and ``t`` in 2D and 2.5D+SIM: images per second, GFLOPs
   per image (dense and scan, :func:`igtv.models.info.model_info`), achieved GFLOP/s and its share of a
   ``torch.mm`` peak measured in the same run, and peak memory;
3. ``igtv predict`` of a 100+ slice phantom patient, run as a user runs it (a subprocess): wall time and the
   process's peak RSS, with the paper-size model and with the demo's model;
4. ``prepare``: patients per second;
5. the phantom generator, one process (per core): simulation alone (IGTV and GTV cohorts), the DICOM export
   followed by ``igtv prepare``, and ``igtv phantom --prepared`` (straight into a prepared dataset), in patients per
   second at 512 x 512.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

MODEL_WIDTHS = ("tiny", "s", "t")
MODEL_KINDS = ("2d", "25d_sim")
SCAN_N = 16
SCAN_GROUPS = 4  # SS2D's four scan orders
SECTIONS = ("scan", "models", "predict", "prepare", "phantom")


@dataclass(frozen=True)
class BenchConfig:
    """What ``igtv bench`` measures. ``quick`` keeps it under 5 minutes on 2 CPU cores: one repeat of the slow
    figures, and no ``ref`` forward+backward at stage 1, no training step of ``t`` and no paper-size predict."""

    device: str = "cpu"
    quick: bool = False
    size: int = 512
    repeats: int = 3  # timed repeats per figure (median); 1 for those that take seconds (t at 512, ref at stage 1)
    predict_model: str = ""  # the demo's checkpoint (e.g. demo_out/run_finetune/best.pt); "" = its untrained twin
    sections: tuple[str, ...] = SECTIONS
    workdir: str = ""  # where the phantom patient is written ("" = a temporary folder)
    widths: tuple[str, ...] = MODEL_WIDTHS  # section 2
    paper_model: str = "cipa_25d_sim_t"  # section 3: the paper-size model, untrained
    demo_model: str = "cipa_25d_sim_s"  # section 3 without predict_model: the demo's architecture, untrained
    min_slices: int = 100  # section 3: CT slices of the phantom patient
    long_slices: int = 300  # section 3, full run: a long study for peak memory (0: skip)
    matrix_scale: float = 1.0  # section 3: 1.0 = 512 x 512 CT (smaller only for tests)
    spacing_mm: float = 2.0  # section 3: pixel size on the untrained checkpoints' cards (the demo's; coarser in tests)
    phantom_patients: int = 0  # section 5: patients per route (0: 2 with --quick, else 4)

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown benchmark section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        if self.size % 32:
            raise ValueError(f"size must be a multiple of 32 (the encoder downsamples 32x), got {self.size}")


# ----------------------------------------------------------------------------------------------- measurement helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block: CUDA's max allocated bytes, or on CPU the process RSS sampled every 2 ms (Linux),
    reported as the rise above the RSS at entry."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif os.path.exists("/proc/self/statm"):
            _malloc_trim()  # give freed heap back to the OS, so that the RSS rise is this block's
            self._base = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self._base)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() - self._base)


def mm_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Multiply-adds per second (G) of a float32 ``n`` x ``n`` ``torch.mm`` on ``device``: the dense peak the
    models' achieved rates are compared with (multiply-adds counted once, as the model GFLOPs are)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sec = time_call(lambda: torch.mm(a, b), device, repeats)
    return n**3 / sec / 1e9


# -------------------------------------------------------------------------------------------- section 1: the scan
def _blelloch_(a: torch.Tensor, x: torch.Tensor) -> None:
    """In place along dim 2 of (B, D, T, N), T a power of two: x_t <- a_t x_{t-1} + x_t (x_{-1} = 0).

    The work-efficient up-sweep / down-sweep of Blelloch (1990), written here after mamba.py's ``pscan``
    (github.com/alxndrTL/mamba.py): 2 log2(T) sequential steps of whole-tensor operations."""
    b, d, t, n = x.shape
    aa, xa = a, x
    while xa.shape[2] > 1:  # up-sweep: each right child absorbs its left sibling
        m = xa.shape[2]
        aa = aa.view(b, d, m // 2, 2, n)
        xa = xa.view(b, d, m // 2, 2, n)
        xa[:, :, :, 1].add_(aa[:, :, :, 1] * xa[:, :, :, 0])
        aa[:, :, :, 1].mul_(aa[:, :, :, 0])
        aa, xa = aa[:, :, :, 1], xa[:, :, :, 1]
    step = t // 4
    while step >= 1:  # down-sweep: each left child at the next level takes its completed left neighbour
        aa = a[:, :, step - 1 :: step]
        xa = x[:, :, step - 1 :: step]
        m = xa.shape[2]
        aa = aa.view(b, d, m // 2, 2, n)
        xa = xa.view(b, d, m // 2, 2, n)
        xa[:, :, 1:, 0].add_(aa[:, :, 1:, 0] * xa[:, :, :-1, 1])
        aa[:, :, 1:, 0].mul_(aa[:, :, :-1, 1])
        step //= 2


def parallel_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
    channel_chunk: int = 256,
) -> torch.Tensor:
    """Selective scan with a pure-PyTorch parallel (Blelloch) scan over time, as mamba.py computes it on a CPU:
    materialise exp(Delta A) and Delta B u as (B, D, L, N), scan, contract with C. Channels are independent, so they
    go ``channel_chunk`` at a time to bound memory (mamba.py would hold all of them). Forward only."""
    bsz, dim, length = u.shape
    groups = B.shape[1]
    per = dim // groups
    t = 1 << max(1, math.ceil(math.log2(length)))
    delta = F.softplus(delta + delta_bias[None, :, None])
    y = torch.empty_like(u)
    for d0 in range(0, dim, channel_chunk):
        d1 = min(dim, d0 + channel_chunk)
        g = torch.arange(d0, d1, device=u.device) // per
        dt = delta[:, d0:d1]  # (B, d, L)
        a = torch.exp(dt[..., None] * A[None, d0:d1, None, :])  # (B, d, L, N)
        x = (dt * u[:, d0:d1])[..., None] * B[:, g].transpose(2, 3)  # (B, d, L, N)
        if t != length:
            a = F.pad(a, (0, 0, 0, t - length))
            x = F.pad(x, (0, 0, 0, t - length))
        _blelloch_(a, x)
        y[:, d0:d1] = (x[:, :, :length] * C[:, g].transpose(2, 3)).sum(-1) + D[None, d0:d1, None] * u[:, d0:d1]
    return y


def encoder_scan_shapes(size: int = 512, width: str = "t") -> list[tuple[str, int, int]]:
    """(stage, channels D = 4 orders x d_inner, length L) of the selective scans of a CIPA encoder's four stages."""
    from igtv.models.registry import model_config

    cfg = model_config(f"cipa_2d_{width}")
    side = size // 4
    out = []
    for i, dim in enumerate(cfg.dims):
        d_inner = int(cfg.ssm_ratio * dim)
        out.append((f"stage {i + 1}", SCAN_GROUPS * d_inner, (side >> i) ** 2))
    return out


def _scan_inputs(dim: int, length: int, device: torch.device, grad: bool) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, dim, length, generator=g)
    delta = torch.randn(1, dim, length, generator=g) * 0.5 - 2.0
    A = -torch.exp(torch.rand(dim, SCAN_N, generator=g) * 2.0)
    B = torch.randn(1, SCAN_GROUPS, SCAN_N, length, generator=g)
    C = torch.randn(1, SCAN_GROUPS, SCAN_N, length, generator=g)
    D = torch.ones(dim)
    bias = torch.randn(dim, generator=g) * 0.1
    return [t.to(device).requires_grad_(grad) for t in (u, delta, A, B, C, D, bias)]


def bench_scan(cfg: BenchConfig, device: torch.device) -> list[dict]:
    """Section 1. Rows: stage x implementation, forward and forward+backward ms, and the ratios."""
    from igtv.models.scan import available_impls

    impls = [i for i in available_impls() if (i == "ref" or (i == "numba") == (device.type == "cpu"))]
    rows = []
    for stage, dim, length in encoder_scan_shapes(cfg.size):
        rows += _bench_scan_stage(cfg, device, impls, stage, dim, length)
    return rows


def _bench_scan_stage(cfg: BenchConfig, device: torch.device, impls: list[str], stage: str, dim: int, length: int):
    from igtv.models.scan import selective_scan

    args = _scan_inputs(dim, length, device, grad=False)
    with torch.no_grad():
        want = selective_scan(*args, impl="ref")
        got = parallel_scan_torch(*args)
    if not torch.allclose(got, want, atol=1e-3, rtol=1e-3):  # the comparison scan must be right to count
        raise RuntimeError(f"parallel_scan_torch disagrees with ref at {stage}")
    slow_reps = 1 if (cfg.quick or length > 4096) else cfg.repeats  # ref and the parallel scan take seconds here
    with torch.no_grad():
        t_par = time_call(lambda: parallel_scan_torch(*args), device, slow_reps, warmup=0)
    stage_rows = []
    for impl in impls:
        reps = slow_reps if impl == "ref" else cfg.repeats
        with torch.no_grad():
            fwd = time_call(lambda impl=impl: selective_scan(*args, impl=impl), device, reps)
        gargs = _scan_inputs(dim, length, device, grad=True)

        def both(impl=impl, gargs=gargs) -> None:
            selective_scan(*gargs, impl=impl).sum().backward()

        if cfg.quick and impl == "ref" and length > 4096:  # ~1 min on 2 cores: the full run only
            fb = float("nan")
        else:
            fb = time_call(both, device, reps, warmup=0 if impl == "ref" else 1)
        stage_rows.append({"stage": stage, "D": dim, "L": length, "impl": impl, "forward_ms": fwd * 1e3,
                           "forward_backward_ms": fb * 1e3})  # fmt: skip
    ref = next(r for r in stage_rows if r["impl"] == "ref")
    for r in stage_rows:
        r["forward_vs_ref"] = ref["forward_ms"] / r["forward_ms"]
        r["forward_backward_vs_ref"] = ref["forward_backward_ms"] / r["forward_backward_ms"]
        r["forward_vs_parallel_torch"] = t_par * 1e3 / r["forward_ms"]
    par = {"stage": stage, "D": dim, "L": length, "impl": "parallel_torch", "forward_ms": t_par * 1e3,
           "forward_backward_ms": float("nan"), "forward_vs_ref": ref["forward_ms"] / (t_par * 1e3),
           "forward_backward_vs_ref": float("nan"), "forward_vs_parallel_torch": 1.0}  # fmt: skip
    return [par, *stage_rows]


# -------------------------------------------------------------------------------------------- section 2: models
def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def bench_models(cfg: BenchConfig, device: torch.device, peak_gflops: float) -> list[dict]:
    """Section 2. Forward at batch 1 (fp32, and bf16 autocast where the hardware has it) and one AdamW training
    step at batch 2 (batch norms need two samples; fp32 on CPU, AMP on CUDA) of each width x input kind at
    ``cfg.size``."""
    rows = []
    for width in cfg.widths:
        for kind in MODEL_KINDS:
            slow = width == "t" or (width == "s" and cfg.size >= 512)
            rows += _bench_model(cfg, device, peak_gflops, f"cipa_{kind}_{width}", slow)
    return rows


def _bench_model(cfg: BenchConfig, device: torch.device, peak_gflops: float, name: str, slow: bool) -> list[dict]:
    from igtv.models import create_model
    from igtv.models.info import model_info

    info = model_info(name, cfg.size)
    model = create_model(name).to(device)
    x = torch.randn(1, model.in_channels, cfg.size, cfg.size, device=device)
    train_reps = 1 if slow else cfg.repeats  # a t training step takes ~20 s per image
    rows = []
    model.eval()
    for prec in ["fp32"] + (["bf16"] if _bf16_ok(device) else []):

        def fwd(prec=prec) -> None:
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=prec == "bf16"):
                model(x)

        with PeakMemory(device) as mem:
            sec = time_call(fwd, device, cfg.repeats)
        rows.append(_model_row(name, "forward", prec, sec, info, peak_gflops, mem.peak))
    if cfg.quick and name.endswith("_t"):  # ~1 min per step on 2 cores: the full run only
        return rows
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xb = torch.randn(2, model.in_channels, cfg.size, cfg.size, device=device)
    target = (torch.rand(2, 1, cfg.size, cfg.size, device=device) > 0.9).float()
    amp = device.type == "cuda"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            logits = model(xb)
        F.binary_cross_entropy_with_logits(logits.float(), target).backward()
        opt.step()

    with PeakMemory(device) as mem:
        # no warm-up only where a step takes seconds (CPU); on CUDA the first step compiles kernels, so it never counts
        cold = cfg.quick and slow and device.type == "cpu"
        sec = time_call(step, device, train_reps, warmup=0 if cold else 1) / 2  # per image
    rows.append(_model_row(name, "train step", "amp" if amp else "fp32", sec, info, peak_gflops, mem.peak, train=True))
    return rows


def _model_row(name, what, prec, sec, info, peak_gflops, peak_bytes, train: bool = False) -> dict:
    gflops = info["gflops"] * (3 if train else 1)  # a training step is ~3 forwards of work (forward + backward)
    return {
        "model": name,
        "pass": what,
        "precision": prec,
        "seconds": sec,
        "img_per_s": 1.0 / sec,
        "gflops_dense": info["gflops_dense"],
        "gflops_scan": info["gflops_scan"],
        "achieved_gflops": gflops / sec,
        "share_of_mm_peak": gflops / sec / peak_gflops,
        "peak_mem_mib": peak_bytes / 2**20,
    }


# ------------------------------------------------------------------------------- sections 3 and 4: predict, prepare
def _phantom_patient(root: Path, min_slices: int = 100, matrix_scale: float = 1.0) -> tuple[Path, Path, int, float]:
    """One IGTV phantom patient with >= ``min_slices`` CT slices; returns (its DICOM folder, the cohort folder,
    the slice count, generation seconds)."""
    from igtv.phantom.cohort import generate_cohort
    from igtv.phantom.config import PhantomConfig

    t0 = time.perf_counter()
    cohort = root / "phantom"
    cfg = PhantomConfig(patients=1, seed=4242, z_extent_mm=250.0, write_pclt=False, matrix_scale=matrix_scale)
    generate_cohort(cfg, cohort, progress=False)
    dicom = next(p for p in cohort.rglob("CT") if p.is_dir()).parent
    n_ct = len(list((dicom / "CT").glob("*.dcm")))
    if n_ct < min_slices:  # the scanner drawn reconstructs thick slices: lengthen the field of view to match
        dz = 250.0 / n_ct
        cohort = root / "phantom_long"
        cfg = replace(cfg, z_extent_mm=math.ceil(min_slices * dz) + dz)
        generate_cohort(cfg, cohort, progress=False)
        dicom = next(p for p in cohort.rglob("CT") if p.is_dir()).parent
        n_ct = len(list((dicom / "CT").glob("*.dcm")))
    return dicom, cohort, n_ct, time.perf_counter() - t0


def untrained_checkpoint(model: str, path: Path, like: str = "", spacing_mm: float = 2.0) -> Path:
    """A checkpoint of ``model`` with initial weights and the demo's card (patches of 96 px at ``spacing_mm``,
    pclt20k windows), or the card of the checkpoint ``like``: its network costs the same whatever the weights. Its
    contour does not: initial weights often contour the whole thorax (some 31 litres on the 101-slice phantom),
    and post-processing and writing that cost ~25 s more on 2 cores than a trained model's contour (session 27)."""
    from dataclasses import replace as dc_replace

    from igtv.checkpoint import ModelCard, load_checkpoint, read_card, save_model
    from igtv.config import to_dict
    from igtv.models import create_model

    torch.manual_seed(0)
    net = create_model(model)
    if like:
        card = read_card(load_checkpoint(like), like)
    else:
        card = ModelCard(
            name=model, in_slices=1, preset="pclt20k", sampler="patches", input_size=96, spacing_mm=spacing_mm
        )
    card = dc_replace(card, name=model, in_slices=net.in_slices, architecture=to_dict(net.config))
    return save_model(path, net.state_dict(), card)


_CHILD = (
    "import atexit, sys\n"
    "def _hwm(path=sys.argv.pop(1)):\n"
    "    kib = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
    "    open(path, 'w').write(kib[0] if kib else '0')\n"
    "atexit.register(_hwm)\n"
    "from igtv.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_cli(args: list[str]) -> tuple[float, int, str]:
    """Run ``igtv ARGS`` in a fresh process; returns (wall seconds, that process's peak RSS in bytes, its stdout).

    The peak is the child's own ``VmHWM`` (Linux; 0 elsewhere), read as it exits: ``ru_maxrss`` would also count
    the parent's pages the child held between fork and exec."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "hwm"
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, "-c", _CHILD, str(hwm), *args], stdout=out, stderr=err)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise RuntimeError(f"igtv {args[0]} failed ({code}): {err.read().decode()[-2000:]}")
        kib = int(hwm.read_text() or 0) if hwm.exists() else 0
        return wall, kib * 1024, out.read().decode()


def _predict_row(label: str, n_ct: int, wall_s: float, rss_bytes: int, stats: dict) -> dict:
    """One row of section 3 from a run's wall time, peak RSS and ``stats.json``."""
    pred, steps = stats["prediction"], stats["prediction"].get("timings", {})
    return {"model": label, "ct_slices": n_ct, "wall_s": wall_s, "predict_s": pred["seconds"],
            "network_s": steps.get("network_s", math.nan), "postprocess_s": steps.get("postprocess_s", math.nan),
            "peak_rss_mib": rss_bytes / 2**20, "lesions": len(stats["lesions"]),
            "contoured_cc": pred["total_volume_cc"]}  # fmt: skip


def bench_predict_prepare(cfg: BenchConfig, device: torch.device, root: Path) -> tuple[list[dict], list[dict]]:
    """Sections 3 and 4 on one phantom patient of >= ``min_slices`` CT slices (and, in the full run, the demo-size
    model on a study of >= ``long_slices``)."""
    dicom, cohort, n_ct, gen_s = _phantom_patient(root, cfg.min_slices, cfg.matrix_scale)
    rows = []
    models = []
    if not cfg.quick:  # ~5 min on 2 cores: the full run only
        paper = untrained_checkpoint(cfg.paper_model, root / "paper.pt", cfg.predict_model, cfg.spacing_mm)
        models.append((f"paper size ({cfg.paper_model}, untrained)", paper, "auto"))
        if device.type == "cpu" and _bf16_ok(device):  # bf16 autocast (scan in fp32): what `--precision bf16` buys
            models.append((f"paper size ({cfg.paper_model}, untrained), bf16", paper, "bf16"))
    if cfg.predict_model:
        models.append(("the demo's model (trained)", Path(cfg.predict_model), "auto"))
    else:
        demo = untrained_checkpoint(cfg.demo_model, root / "demo.pt", spacing_mm=cfg.spacing_mm)
        models.append((f"demo size ({cfg.demo_model}, untrained)", demo, "auto"))
    for label, ckpt, precision in models:
        out = root / f"predict_{len(rows)}"
        wall, rss, text = run_cli(["predict", "--dicom", str(dicom), "--model", str(ckpt), "--out", str(out),
                                   "--device", device.type, "--precision", precision])  # fmt: skip
        rows.append(_predict_row(label, n_ct, wall, rss, json.loads((out / "stats.json").read_text())))
    if not cfg.quick and cfg.long_slices:  # memory: a long study, the demo-size model (~2 min on 2 cores)
        dicom_l, _, n_l, _ = _phantom_patient(root / "long", cfg.long_slices, cfg.matrix_scale)
        label, ckpt, _ = models[-1]
        out = root / "predict_long"
        wall, rss, _ = run_cli(["predict", "--dicom", str(dicom_l), "--model", str(ckpt), "--out", str(out),
                                "--device", device.type])  # fmt: skip
        rows.append(_predict_row(label, n_l, wall, rss, json.loads((out / "stats.json").read_text())))
    wall, rss, _ = run_cli(["prepare", "--dicom", str(cohort), "--out", str(root / "prepared"), "--workers", "1"])
    prep = [{"patients": 1, "ct_slices": n_ct, "wall_s": wall, "patients_per_s": 1.0 / wall,
             "peak_rss_mib": rss / 2**20, "phantom_generation_s": gen_s}]  # fmt: skip
    return rows, prep


# --------------------------------------------------------------------------------------- section 5: the phantom
def bench_phantom(cfg: BenchConfig, root: Path) -> list[dict]:
    """Patients per second of one process (so per core) on the realistic IGTV cohort at ``cfg.matrix_scale``:
    simulation alone (and of the GTV cohort, whose thinner CT slices make it the slower one), DICOM export +
    ``prepare``, and ``--prepared``; the same patients each time, after a warm-up patient (numba compiles there)."""
    from igtv.data.prepare import PrepareConfig, prepare_dataset
    from igtv.phantom.cohort import generate_cohort
    from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY, PhantomConfig
    from igtv.phantom.dataset import write_prepared_cohort
    from igtv.phantom.patient import simulate_patient

    n = cfg.phantom_patients or (2 if cfg.quick else 4)
    pcfg = PhantomConfig(cohort="igtv", patients=n + 1, seed=77, matrix_scale=cfg.matrix_scale, write_pclt=False)
    simulate_patient(pcfg, n)  # warm-up: the last patient, not timed below
    t0 = time.perf_counter()
    slices = sum(simulate_patient(pcfg, i).ct_hu.shape[0] for i in range(n))
    sim_s = time.perf_counter() - t0
    gcfg = replace(pcfg, cohort="gtv")  # the pre-training cohort: thinner CT slices, so more of them
    simulate_patient(gcfg, n)
    t0 = time.perf_counter()
    gtv_slices = sum(simulate_patient(gcfg, i).ct_hu.shape[0] for i in range(n))
    gtv_s = time.perf_counter() - t0
    one = replace(pcfg, patients=n)
    prep = PrepareConfig(preset="pclt20k", size=256)
    t0 = time.perf_counter()
    generate_cohort(one, root / "dicom", progress=False)
    export_s = time.perf_counter() - t0
    prepare_dataset(root / "dicom", root / "via_dicom", prep, progress=False, pseudonym_key=PHANTOM_PSEUDONYM_KEY)
    dicom_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_prepared_cohort(one, root / "direct", prep, progress=False)
    direct_s = time.perf_counter() - t0
    return [
        {"route": "simulation only (in memory)", "patients": n, "ct_slices": slices, "seconds": sim_s},
        {"route": "simulation only, GTV cohort", "patients": n, "ct_slices": gtv_slices, "seconds": gtv_s},
        {"route": "`igtv phantom` (DICOM + truth)", "patients": n, "ct_slices": slices, "seconds": export_s},
        {"route": "`igtv phantom` + `igtv prepare`", "patients": n, "ct_slices": slices, "seconds": dicom_s},
        {"route": "`igtv phantom --prepared` (no DICOM)", "patients": n, "ct_slices": slices, "seconds": direct_s},
    ]


# ------------------------------------------------------------------------------------------------------- driver
def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "python": platform.python_version()}  # fmt: skip
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run the sections of ``cfg`` and return every figure (see the module docstring)."""
    say = progress or (lambda s: None)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device here")
    t0 = time.perf_counter()
    result: dict = {"config": asdict(cfg), "machine": machine()}
    say("torch.mm peak")
    result["mm_peak_gflops"] = mm_peak_gflops(device)
    if "scan" in cfg.sections:
        say("section 1: selective scan")
        result["scan"] = bench_scan(cfg, device)
    if "models" in cfg.sections:
        say("section 2: models")
        result["models"] = bench_models(cfg, device, result["mm_peak_gflops"])
    if "predict" in cfg.sections or "prepare" in cfg.sections:
        say("sections 3-4: predict and prepare on a phantom patient")
        with tempfile.TemporaryDirectory(dir=cfg.workdir or None) as tmp:
            result["predict"], result["prepare"] = bench_predict_prepare(cfg, device, Path(tmp))
    if "phantom" in cfg.sections:
        say("section 5: the phantom generator")
        with tempfile.TemporaryDirectory(dir=cfg.workdir or None) as tmp:
            result["phantom"] = bench_phantom(cfg, Path(tmp))
    result["seconds"] = time.perf_counter() - t0
    return result


def format_table(result: dict) -> str:
    """The benchmark as Markdown: the machine, then one table per section."""
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores{', ' + m['gpu'] if 'gpu' in m else ''}; torch {m['torch']} "
        f"({m['torch_threads']} threads); device {result['config']['device']}; "
        f"torch.mm fp32 peak {result['mm_peak_gflops']:.0f} GFLOP/s (multiply-adds); run {result['seconds']:.0f} s"
        f"{' (--quick)' if result['config']['quick'] else ''}.",
        "",
    ]
    if result.get("scan"):
        lines += ["### Selective scan, B = 1, N = 16, the encoder stages of a 512 x 512 input (cipa_*_t)", "",
                  "| stage | D | L | implementation | forward ms | fwd+bwd ms | fwd vs ref | fwd+bwd vs ref "
                  "| fwd vs parallel torch |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["scan"]:
            lines.append(_cells(r["stage"], r["D"], r["L"], r["impl"], f"{r['forward_ms']:.1f}",
                                _f(r["forward_backward_ms"], ".1f"), f"{r['forward_vs_ref']:.1f}x",
                                _f(r["forward_backward_vs_ref"], ".1f", "x"),
                                f"{r['forward_vs_parallel_torch']:.1f}x"))  # fmt: skip
        lines.append("")
    if result.get("models"):
        lines += [f"### Models at {result['config']['size']} x {result['config']['size']}", "",
                  "| model | pass | precision | s / img | img/s | GFLOPs dense + scan | achieved GFLOP/s | "
                  "share of mm peak | peak memory MiB |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["models"]:
            lines.append(_cells(r["model"], r["pass"], r["precision"], f"{r['seconds']:.2f}", f"{r['img_per_s']:.2f}",
                                f"{r['gflops_dense']:.3g} + {r['gflops_scan']:.3g}", f"{r['achieved_gflops']:.1f}",
                                f"{100 * r['share_of_mm_peak']:.0f} %", f"{r['peak_mem_mib']:.0f}"))  # fmt: skip
        lines += [
            "",
            "Forward at batch 1, training step at batch 2 (per image); training GFLOPs counted as 3x the "
            "forward's. "
            + (
                "Peak memory on CUDA: the allocator's peak above what was held before the timed calls."
                if result["config"]["device"] == "cuda"
                else "Peak memory on CPU: rise of the process RSS during the timed calls."
            )
            + (" --quick: no training step for the t models." if result["config"]["quick"] else ""),
            "",
        ]
    if result.get("predict"):
        lines += ["### `igtv predict` of one phantom patient (a fresh process, as a user runs it)", "",
                  "| model | CT slices | wall s | of which predict s | network s | post-processing s | peak RSS MiB "
                  "| lesions | contoured cc |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["predict"]:
            g = {k: r.get(k, math.nan) for k in ("network_s", "postprocess_s", "contoured_cc")}
            lines.append(_cells(r["model"], r["ct_slices"], f"{r['wall_s']:.1f}", f"{r['predict_s']:.1f}",
                                _f(g["network_s"], ".1f"), _f(g["postprocess_s"], ".1f"), f"{r['peak_rss_mib']:.0f}",
                                r["lesions"], _f(g["contoured_cc"], ".1f")))  # fmt: skip
        lines += ["", "Predict s: from start to the statistics (models loaded, DICOM read, network, post-processing); "
                  "wall s adds the process start and writing the RTSTRUCT, NIfTI and report. An untrained model's "
                  "contour is whatever its initial weights give (often the whole thorax): its post-processing and "
                  "writing cost more than a trained model's; its network costs the same.", ""]  # fmt: skip
    if result.get("prepare"):
        r = result["prepare"][0]
        lines += ["### `igtv prepare`", "", "| patients | CT slices | wall s | patients/s | peak RSS MiB |",
                  "|---|---|---|---|---|",
                  f"| {r['patients']} | {r['ct_slices']} | {r['wall_s']:.1f} | {r['patients_per_s']:.3f} | "
                  f"{r['peak_rss_mib']:.0f} |", ""]  # fmt: skip
    if result.get("phantom"):
        lines += ["### The phantom generator (one process, realistic IGTV cohort unless named)", "",
                  "| route | patients | CT slices | s / patient | patients/s per core |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in result["phantom"]:
            per = r["seconds"] / r["patients"]
            lines.append(_cells(r["route"], r["patients"], r["ct_slices"], f"{per:.2f}", f"{1.0 / per:.3f}"))
        lines.append("")
    return "\n".join(lines)


def _cells(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _f(v: float, fmt: str, suffix: str = "") -> str:
    return "-" if v != v else f"{v:{fmt}}{suffix}"
