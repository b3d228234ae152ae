"""The README's first command: the whole pipeline on the embedded phantom."""

from __future__ import annotations

from pathlib import Path

from igtv.data.phantom import PhantomConfig
from igtv.data.phantom_io import generate_cohort


def run_demo(out: str | Path, workers: int = 2, quick: bool = False) -> dict[str, Path]:
    """Generate a GTV cohort (pre-training) and a smaller IGTV cohort (fine-tuning), mirroring PCLT20K (605
    patients) vs LUCID-PET/CT (60), plus a preview PNG. Later stages (prepare, train, predict) extend this."""
    out = Path(out)
    scale = 0.125 if quick else 1.0
    gtv = generate_cohort(
        PhantomConfig(
            cohort="gtv",
            patients=3 if quick else 12,
            seed=0,
            matrix_scale=scale,
            workers=workers,
            pclt_size=64 if quick else 512,
        ),
        out / "phantom_gtv",
    )
    igtv = generate_cohort(
        PhantomConfig(
            cohort="igtv",
            patients=2 if quick else 6,
            seed=1,
            matrix_scale=scale,
            workers=workers,
            pclt_size=64 if quick else 512,
        ),
        out / "phantom_igtv",
        preview=True,
    )
    paths = {"gtv_cohort": gtv.out_dir, "igtv_cohort": igtv.out_dir, "preview": igtv.out_dir / "preview.png"}
    for key, path in paths.items():
        print(f"{key:12s} {path}")
    return paths
