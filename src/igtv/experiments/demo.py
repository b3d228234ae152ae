"""The README's first command: the whole pipeline on the embedded phantom.

1. phantom GTV cohort (24 patients, PCLT20K-like scanner), simulated straight into a prepared dataset (pre-training
   data: :mod:`igtv.phantom.dataset`, no DICOM in between), and IGTV cohort (32 patients, LUCID-like mix) as DICOM
   CT/PET/RTSTRUCT with ground truth, mirroring the paper's large GTV set and small IGTV set; meanwhile a background
   process compiles the models' scan kernels (:mod:`igtv.models.warmup`);
2. ``igtv prepare`` of the IGTV cohort's DICOM (SUV, PET->CT, QC, PNGs, volumes, patient-level split) and its Fig. 2
   report;
3. stage 1: 2D CIPA pre-training on the GTV volumes (``igtv/configs/demo_pretrain.yaml``): patches of 96 px at 2 mm,
   half centred on a tumour, a quarter on hot organs (negatives), the rest anywhere in the body;
4. stage 2: 2.5D CIPA + SIM fine-tuning on the IGTV volumes from stage 1 (``igtv/configs/demo_finetune.yaml``);
5. ``igtv predict`` on a phantom patient that no model has seen (its own seed): RTSTRUCT, NIfTI, Dice, false
   positive / negative volume and false lesions against its true IGTV (all its lesions), ``report.html``;
6. whole-patient evaluation of the IGTV test split (``igtv evaluate``'s default protocol).

Small CIPA width and short schedules (6 + 10 epochs of 512 patches) so it ends in about 15-19 minutes on a 2-core
CPU, venv build included (15 min 32 s on a clean clone on the Intel VM of session 40, 18 min 34 s at a slower
moment of it); the paper-size runs use the other configs.
``quick=True`` shrinks everything further for smoke tests.
"""

from __future__ import annotations

import time
from pathlib import Path

from igtv.phantom.cohort import generate_cohort
from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY, PhantomConfig

UNSEEN_SEED = 2026  # the held-out patient's seed; the training cohorts use seeds 0 and 1


def _demo_config(name: str, root: Path, quick: bool, init: str = ""):
    from igtv.config import load_config, replace, shipped_config
    from igtv.training.config import RunConfig

    cfg = load_config(RunConfig, shipped_config(name))
    cfg = replace(cfg, data=replace(cfg.data, root=str(root)), init=init)
    if quick:
        model = cfg.model.rsplit("_", 1)[0] + "_tiny"
        cfg = replace(
            cfg,
            model=model,
            data=replace(cfg.data, size=64, spacing_mm=0.0, patch=32, samples_per_epoch=8, eval_samples=8),
            train=replace(cfg.train, epochs=1, max_steps_per_epoch=2, batch_size=2),
        )
    return cfg


def run_demo(out: str | Path, workers: int = 2, quick: bool = False, train: bool = True) -> dict[str, Path]:
    """Run the demo into ``out``; returns the paths it made. Re-running reuses finished phantoms and datasets."""
    from igtv.data.prepare import PrepareConfig, prepare_dataset
    from igtv.data.report import dataset_report
    from igtv.phantom.dataset import write_prepared_cohort

    out = Path(out)
    start = time.monotonic()

    def stage(text: str) -> None:  # a stage header with the time spent so far, so users see where the minutes go
        m, sec = divmod(int(time.monotonic() - start), 60)
        print(f"{text} [{m} min {sec:02d} s so far]")

    scale = 0.125 if quick else 1.0
    size = 64 if quick else 256
    qc = 0.0 if quick else 3.0
    warm = None
    if train and not quick:  # the scan kernels compile in the background while the data is made (igtv.models.warmup;
        # not in --quick, the tests' mode: there the test processes compile the same kernels themselves)
        from igtv.models.warmup import start_warm_up

        warm = start_warm_up([_demo_config(n, out, quick).model for n in ("demo_pretrain.yaml", "demo_finetune.yaml")])
    stage("[1/6] phantom cohorts: GTV straight into a dataset; IGTV as DICOM CT, PET, RTSTRUCT (ground truth)")
    gtv_cfg = PrepareConfig(roi="GTV", size=size, workers=workers, min_suv_max=qc)
    prep_gtv = write_prepared_cohort(
        PhantomConfig(
            cohort="gtv", patients=3 if quick else 24, seed=0, matrix_scale=scale, workers=workers, write_pclt=False
        ),
        out / "dataset_gtv",
        gtv_cfg,
    )
    igtv = generate_cohort(
        PhantomConfig(
            cohort="igtv", patients=3 if quick else 32, seed=1, matrix_scale=scale, workers=workers, write_pclt=False
        ),
        out / "phantom_igtv",
        preview=True,
    )
    paths = {"dataset_gtv": prep_gtv.out_dir, "igtv_cohort": igtv.out_dir, "preview": igtv.out_dir / "preview.png"}
    stage("[2/6] igtv prepare: the IGTV cohort's DICOM -> dataset (PNGs for the paper's protocol, volumes for patches)")
    prep_cfg = PrepareConfig(size=size, workers=workers, min_suv_max=qc)
    prep = prepare_dataset(igtv.out_dir, out / "dataset_igtv", prep_cfg, pseudonym_key=PHANTOM_PSEUDONYM_KEY)
    for name, p in (("GTV", prep_gtv), ("IGTV", prep)):
        print(f"      {name}: {p.rois_kept} ROIs kept, {p.rois_excluded} excluded by QC (see qc_report.csv)")
    paths["dataset"] = prep.out_dir
    paths["dataset_report"] = dataset_report(prep.out_dir)
    if train:
        from igtv.training.trainer import train as run_training

        if warm is not None:
            warm.join()
        stage("[3/6] stage 1: 2D pre-training on the GTV cohort")
        s1 = run_training(_demo_config("demo_pretrain.yaml", prep_gtv.out_dir, quick), out / "run_pretrain")
        stage("[4/6] stage 2: 2.5D + SIM fine-tuning on the IGTV cohort, weights transferred from stage 1")
        s2 = run_training(
            _demo_config("demo_finetune.yaml", prep.out_dir, quick, init=str(out / "run_pretrain" / "best.pt")),
            out / "run_finetune",
        )
        print(
            f"      stage 1 best validation IoU {s1.best_iou:.3f} (epoch {s1.best_epoch}); "
            f"stage 2 best validation IoU {s2.best_iou:.3f} (epoch {s2.best_epoch})"
        )
        paths["pretrain"] = out / "run_pretrain" / "best.pt"
        paths["finetune"] = out / "run_finetune" / "best.pt"
        from igtv.inference.predict import predict_dicom

        stage("[5/6] igtv predict on a new phantom patient (never seen in training or validation)")
        unseen = generate_cohort(
            PhantomConfig(cohort="igtv", patients=1, seed=UNSEEN_SEED, matrix_scale=scale, workers=1, write_pclt=False),
            out / "phantom_unseen",
        )
        patient = unseen.out_dir / "I0001" / "dicom"
        pred = predict_dicom(
            patient, paths["finetune"], out / "predict", compare=patient / "RTSTRUCT_truth.dcm", device="auto"
        )
        c = pred.stats["compare"]
        print(
            f"      {len(pred.stats['lesions'])} lesion(s), {pred.stats['prediction']['total_volume_cc']:.1f} cc "
            f"predicted vs {c['truth_cc']:.1f} cc true IGTV: Dice {c['dice']:.3f}, HD95 {c['hd95_mm']:.1f} mm, "
            f"FP {c['false_positive_cc']:.1f} cc, FN {c['false_negative_cc']:.1f} cc; lesions found "
            f"{c['lesions_hit']}/{c['lesions_true']} ({c['missed_lesion_cc']:.1f} cc missed), false lesions "
            f"{c['false_lesions']} ({c['false_lesion_cc']:.1f} cc)"
        )
        paths["rtstruct"] = pred.files["rtstruct"]
        paths["report"] = pred.files["report"]
        from igtv.experiments.whole_patient import WholePatientConfig, evaluate_whole_patients

        stage("[6/6] whole-patient evaluation of the IGTV test split (the predict pipeline, nothing from the truth)")
        try:
            ev = evaluate_whole_patients(
                paths["finetune"], prep.out_dir, out / "evaluate", WholePatientConfig(bootstrap=200), progress=False
            )
            for r in ev["rows"]:
                print(
                    f"      test patient: 3D Dice {r['dice_3d']:.3f}, FP {r['false_positive_cc']:.1f} cc, "
                    f"FN {r['false_negative_cc']:.1f} cc, lesions {r['lesions_hit']}/{r['lesions_true']}, "
                    f"false lesions {r['false_lesions']}"
                )
            paths["evaluate"] = out / "evaluate" / "whole_patient.json"
        except ValueError as exc:  # a quick cohort may have no test patient with volumes
            print(f"      skipped: {exc}")
    stage("done")
    for key, path in paths.items():
        print(f"{key:15s} {path}")
    return paths
