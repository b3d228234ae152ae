"""The ``igtv`` command. Each subcommand only parses its arguments and calls one API function."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from igtv import __version__
from igtv.data.windows import PRESETS
from igtv.inference.sliding import DEFAULT_OVERLAP


def _phantom(args: argparse.Namespace) -> int:
    from igtv.config import load_config, replace
    from igtv.phantom.cohort import generate_cohort
    from igtv.phantom.config import PhantomConfig

    cfg = load_config(PhantomConfig, args.config) if args.config else PhantomConfig()
    if args.stats:
        from igtv.phantom.stats import phantom_stats

        over = {"patients": args.patients or 3, "seed": args.seed, "cohort": args.cohort,
                "matrix_scale": args.matrix_scale, "randomize": args.randomize or None}  # fmt: skip
        phantom_stats(replace(cfg, **{k: v for k, v in over.items() if v is not None}))
        return 0
    if not args.out:
        raise SystemExit("igtv phantom: --out is required (or --stats to print realism statistics)")
    overrides = {
        "patients": args.patients,
        "seed": args.seed,
        "cohort": args.cohort,
        "matrix_scale": args.matrix_scale,
        "workers": args.workers,
        "pclt_size": args.pclt_size,
        "write_pclt": False if args.no_pclt else None,
        "randomize": True if args.randomize else None,
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.prepared:
        from igtv.data.prepare import PrepareConfig
        from igtv.phantom.dataset import write_prepared_cohort

        prep = PrepareConfig(preset=args.preset, roi="GTV" if cfg.cohort == "gtv" else "IGTV", size=args.size,
                             workers=cfg.workers)  # fmt: skip
        res = write_prepared_cohort(replace(cfg, write_pclt=False), args.out, prep)
        print(
            f"prepared phantom dataset ({cfg.cohort}, {cfg.patients} patients, {res.samples} samples, no DICOM) in "
            f"{res.out_dir} [{res.processed} simulated, {res.skipped} already there, {res.seconds:.1f} s]"
        )
        return 0
    result = generate_cohort(cfg, args.out, preview=args.preview)
    print(
        f"phantom cohort ({cfg.cohort}, {cfg.patients} patients) in {result.out_dir} "
        f"[{result.generated} generated, {result.skipped} already there, {result.seconds:.1f} s]"
    )
    if args.preview:
        print(f"preview: {result.out_dir / 'preview.png'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from igtv.experiments.demo import run_demo

    run_demo(args.out, workers=args.workers, quick=args.quick)
    return 0


def _postprocess_cfg(args: argparse.Namespace):
    from igtv.inference.lesions import PostprocessConfig

    return PostprocessConfig(
        min_volume_cc=args.min_volume_cc, min_suv_max=args.min_suv, thorax_margin_mm=args.thorax_margin_mm,
        min_mean_hu=args.min_mean_hu, max_bone_fraction=args.max_bone_fraction,
        max_surround_suv_fraction=args.max_surround_suv_fraction,
        lung_focal_suv_fraction=args.lung_focal_suv_fraction,
        focal_connect_suv_fraction=args.focal_connect_suv_fraction, max_cold_core_share=args.max_cold_core_share,
        cold_core_max_lung_contact=args.cold_core_max_lung_contact,
        cold_core_object_fraction=args.cold_core_object_fraction,
        cold_core_object_min_suv=args.cold_core_object_min_suv,
        cold_min_volume_cc=args.cold_min_volume_cc, cold_min_lung_contact=args.cold_min_lung_contact,
        cold_min_suv_max=args.cold_min_suv, hull_fill_suv_fraction=args.hull_fill_suv_fraction,
        grow_suv_fraction=args.grow_suv_fraction, grow_max_mm=args.grow_max_mm,
        grow_min_suv_fraction=args.grow_min_suv_fraction, grow_wide_mm=args.grow_wide_mm,
        uptake_reach_mm=args.uptake_reach_mm,
    )  # fmt: skip


def _add_postprocess_args(p: argparse.ArgumentParser) -> None:
    from igtv.inference.lesions import PostprocessConfig

    d = PostprocessConfig()
    p.add_argument("--min-volume-cc", type=float, default=d.min_volume_cc, help="drop components below this (0: off)")
    p.add_argument("--min-suv", type=float, default=d.min_suv_max,
                   help="drop components with SUVmax below this (0: off; -1: the SUVmax QC of the model's training "
                        "data, the paper's 3.0, else 2.5)")  # fmt: skip
    p.add_argument("--thorax-margin-mm", type=float, default=d.thorax_margin_mm,
                   help="keep components touching the lungs + mediastinum grown by this margin (0: off)")  # fmt: skip
    p.add_argument("--min-mean-hu", type=float, default=d.min_mean_hu,
                   help="drop components whose mean CT is below this (air; -1024: off)")  # fmt: skip
    p.add_argument("--max-bone-fraction", type=float, default=d.max_bone_fraction,
                   help="drop components with more than this share of voxels > 300 HU (1: off)")  # fmt: skip
    p.add_argument("--max-surround-suv-fraction", type=float, default=d.max_surround_suv_fraction,
                   help="drop components that are not a focus of uptake: the 90th percentile SUV of the soft tissue "
                        "5-15 mm around them is at least this share of their SUVmax (0: off)")  # fmt: skip
    p.add_argument("--lung-focal-suv-fraction", type=float, default=d.lung_focal_suv_fraction,
                   help="... or this share for a component of lung density (mean CT < -50 HU, >= 30 %% of its border "
                        "lung): a core found inside a faint tumour's breathing smear (0: as any other)")  # fmt: skip
    p.add_argument("--focal-connect-suv-fraction", type=float, default=d.focal_connect_suv_fraction,
                   help="... reading only the surround that the component's uptake reaches through voxels of SUV "
                        ">= this share of its SUVmax: a tumour beside a hotter organ (0: all of it)")  # fmt: skip
    p.add_argument("--max-cold-core-share", type=float, default=d.max_cold_core_share,
                   help="drop components whose axial convex hulls hold at least this share of cold voxels (SUV < 0.4 "
                        "x their SUVmax) and whose border is mostly not lung: the myocardium around the blood pool "
                        "(0: off)")  # fmt: skip
    p.add_argument("--cold-core-max-lung-contact", type=float, default=d.cold_core_max_lung_contact,
                   help="... when less than this share of their in-plane border is lung")  # fmt: skip
    p.add_argument("--cold-core-object-fraction", type=float, default=d.cold_core_object_fraction,
                   help="... read the cold core also on the hulls of the PET object a component belongs to: the "
                        "voxels within 30 mm connected to it with SUV >= this share of its SUVmax (an arc of the "
                        "myocardium ring; 0: the component alone)")  # fmt: skip
    p.add_argument("--cold-core-object-min-suv", type=float, default=d.cold_core_object_min_suv,
                   help="... and >= this SUV (0: no floor)")  # fmt: skip
    p.add_argument("--cold-min-volume-cc", type=float, default=d.cold_min_volume_cc,
                   help="keep a component below --min-suv when the CT shows a solid mass of at least this "
                        "volume bordered by lung (0: off; -1: 5 cc for models trained with cold lesions, "
                        "else off)")  # fmt: skip
    p.add_argument("--cold-min-lung-contact", type=float, default=d.cold_min_lung_contact,
                   help="share of that mass's in-plane border that must be lung")  # fmt: skip
    p.add_argument("--cold-min-suv", type=float, default=d.cold_min_suv_max,
                   help="SUVmax a cold mass must still reach to be kept (default 1.0)")  # fmt: skip
    p.add_argument("--hull-fill-suv-fraction", type=float, default=d.hull_fill_suv_fraction,
                   help="add, per slice, the voxels of each kept component's convex hull with SUV >= this share of "
                        "its SUVmax (0: off)")  # fmt: skip
    p.add_argument("--grow-suv-fraction", type=float, default=d.grow_suv_fraction,
                   help="then grow each kept component into the connected voxels with SUV >= this share of its "
                        "SUVmax within --grow-max-mm, unless the growth runs into that reach (an organ's uptake; "
                        "0: off)")  # fmt: skip
    p.add_argument("--grow-max-mm", type=float, default=d.grow_max_mm, help="how far a component may grow (mm)")
    p.add_argument("--grow-min-suv-fraction", type=float, default=d.grow_min_suv_fraction,
                   help="try lower shares first, from this one up in steps of 0.05, and take the lowest whose "
                        "growth stays inside the reach (0: only --grow-suv-fraction)")  # fmt: skip
    p.add_argument("--grow-wide-mm", type=float, default=d.grow_wide_mm,
                   help="a component whose every growth runs into --grow-max-mm tries again within this reach (a "
                        "large mass of which the model found a part; 0: off)")  # fmt: skip
    p.add_argument("--uptake-reach-mm", type=float, default=d.uptake_reach_mm,
                   help="predict only tiles within this reach of uptake that --min-suv (or --cold-min-suv) can keep "
                        "(0: every tile of the thorax region)")  # fmt: skip


def _one_model(args: argparse.Namespace, what: str) -> str:
    if len(args.model) > 1:
        raise ValueError(f"{what} takes one --model; ensembles are for --dicom and the whole-patient protocol")
    return args.model[0]


def _predict(args: argparse.Namespace) -> int:
    if args.pclt:
        from igtv.inference.pclt import predict_pclt

        summary = predict_pclt(
            args.pclt, _one_model(args, "--pclt"), args.out, split=args.split, device=args.device, tta=args.tta,
            batch_size=args.batch_size or 8, preset=args.preset, threshold=args.threshold,
        )  # fmt: skip
        print(f"{summary['slices']} slices predicted into {args.out}")
        if "mean_dice" in summary:
            print(f"mean per-slice Dice {summary['mean_dice']:.4f}, IoU {summary['mean_iou']:.4f}")
        return 0
    from igtv.inference.predict import predict_dicom

    result = predict_dicom(
        args.dicom, args.model, args.out, device=args.device, roi_name=args.roi_name, tta=args.tta,
        postprocess_cfg=_postprocess_cfg(args),
        compare=args.compare, compare_roi=args.compare_roi, batch_size=args.batch_size, preset=args.preset,
        precision=args.precision, overlap=args.overlap, threshold=args.threshold,
    )  # fmt: skip
    lesions = result.stats["lesions"]
    print(
        f"{len(lesions)} lesion(s), {result.stats['prediction']['total_volume_cc']:.2f} cc, "
        f"in {result.stats['prediction']['seconds']:.1f} s"
    )
    if "compare" in result.stats:
        c = result.stats["compare"]
        print(f"against the reference: Dice {c['dice']:.3f}, HD95 {c['hd95_mm']:.1f} mm")
    print(f"report: {result.files['report']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from igtv.experiments.evaluate import EvalConfig, evaluate_checkpoint

    if args.protocol == "whole-patient":
        from igtv.experiments.whole_patient import WholePatientConfig, evaluate_whole_patients

        wcfg = WholePatientConfig(split=args.split, tta=args.tta, postprocess=_postprocess_cfg(args),
                                  precision=args.precision, bootstrap=args.bootstrap, seed=args.seed,
                                  threshold=args.threshold, cache_probabilities=args.keep_maps,
                                  ignore_qc_excluded=not args.score_excluded_rois)  # fmt: skip
        s = evaluate_whole_patients(args.model, args.data, args.out, wcfg, args.device)
        w = s["whole_patient"]
        print(
            f"whole patient, {w['patients']} patients: 3D Dice mean {w['dice_3d']['mean']:.4f} "
            f"[{w['dice_3d']['ci95'][0]:.4f}, {w['dice_3d']['ci95'][1]:.4f}], median {w['dice_3d']['median']:.4f} "
            f"(all ROIs, QC-excluded ones too: mean {w['dice_3d_all_lesions']['mean']:.4f}); "
            f"HD95 median {w['hd95_3d_mm'].get('median', float('nan')):.1f} mm; per patient FP "
            f"{w['false_positive_cc']['mean']:.1f} cc ({w['false_lesion_cc']['mean']:.1f} in false lesions), FN "
            f"{w['false_negative_cc']['mean']:.1f} cc ({w['missed_lesion_cc']['mean']:.1f} in missed lesions); "
            f"lesions hit {w['lesions_hit']}/{w['lesions_true']}, false lesions {w['false_lesions']}"
            + ("" if w.get("false_lesions_avoid") is None else f" ({w['false_lesions_avoid']} on marked nodes)")
            + f"; written to {args.out}"
        )
        return 0
    cfg = EvalConfig(convention=args.convention, bootstrap=args.bootstrap, seed=args.seed, tta=args.tta,
                     threshold=args.threshold)  # fmt: skip
    model = _one_model(args, "the paper protocol")
    summary = evaluate_checkpoint(model, args.data, args.split, args.out, cfg, args.device).summary
    h = summary["headline"]
    print(
        f"{summary['slices']} slices of {summary['patients']} patients ({args.convention} convention): "
        + ", ".join(f"{k} {v['value']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" for k, v in h.items())
        + f" (HD95 in {summary['hd95_unit']}); written to {args.out}"
    )
    return 0


def _table2(args: argparse.Namespace) -> int:
    from igtv.experiments.table2 import run_table2

    run_table2(
        args.out, data=args.data, pretrain_data=args.pretrain_data, budget=args.budget, workers=args.workers,
        device=args.device, seeds=tuple(int(v) for v in args.seeds.split(",")) if args.seeds else None,
        rows=tuple(args.rows.split(",")) if args.rows else None, extra_data=tuple(args.extra_data or ()),
    )  # fmt: skip
    print(f"{args.out}/table2.md, table2.csv, table2.json, fig4.png")
    print((Path(args.out) / "table2.md").read_text())
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from igtv.models import list_models
    from igtv.models.info import model_info

    names = list_models() if args.name == "all" else [args.name]
    for name in names:
        info = model_info(name, args.size)
        print(
            f"{name:26s} {info['params_m']:8.2f} M params  {info['gflops']:8.2f} GFLOPs at {args.size}x{args.size} "
            f"(dense {info['gflops_dense']:.2f} + scan {info['gflops_scan']:.2f})"
        )
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from igtv.config import load_config, replace
    from igtv.data.prepare import PrepareConfig, prepare_dataset, read_pseudonym_key

    cfg = load_config(PrepareConfig, args.config) if args.config else PrepareConfig()
    overrides = {"preset": args.preset, "roi": args.roi, "workers": args.workers, "size": args.size, "seed": args.seed}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    key = read_pseudonym_key(args.pseudonym_key) if args.pseudonym_key else None
    r = prepare_dataset(args.dicom, args.out, cfg, pseudonym_key=key)
    print(
        f"prepared {r.out_dir}: {r.patients} patients ({r.processed} processed, {r.skipped} already done, "
        f"{len(r.failed)} failed), {r.rois_kept} ROIs kept, {r.rois_excluded} excluded by QC, {r.samples} samples "
        f"in {r.seconds:.1f} s; QC report: {r.out_dir / 'qc_report.csv'}"
    )
    for f in r.failed:
        print(f"  failed {f['patient']}: {f['error']}", file=sys.stderr)
    if r.failed:
        print(f"igtv prepare: error: {len(r.failed)} of {r.patients} patients failed (listed above)", file=sys.stderr)
        return 2
    return 0


def _suv(args: argparse.Namespace) -> int:
    from igtv.dicom.series import export_suv

    scale = export_suv(args.pet_dir, args.out, args.type)
    factors = scale.factors
    shown = f"{factors[0]:.6g}" if factors.min() == factors.max() else f"{factors.min():.6g}..{factors.max():.6g}"
    print(f"SUV{scale.kind} ({scale.unit}) factor {shown} (rule: {scale.rule})")
    for note in scale.notes:
        print(f"  note: {note}")
    print(f"wrote {args.out}")
    return 0


def _dataset_report(args: argparse.Namespace) -> int:
    from igtv.data.report import dataset_report

    print(dataset_report(args.dataset, args.out))
    return 0


def _export_nnunet(args: argparse.Namespace) -> int:
    from igtv.data.nnunet import export_nnunet

    print(export_nnunet(args.dataset, args.out, args.id, args.name))
    return 0


def torchrun_args(args: argparse.Namespace) -> list[str]:
    """The ``igtv.train`` arguments each DDP process gets: the parsed ones, without ``--nproc``."""
    argv = ["--config", args.config]
    for flag, value in (("--data", args.data), ("--out", args.out), ("--init", args.init), ("--device", args.device)):
        if value:
            argv += [flag, value]
    for item in args.set or []:
        argv += ["--set", item]
    return argv + (["--resume"] if args.resume else [])


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from igtv.config import load_config, replace
    from igtv.training.config import RunConfig, apply_overrides

    if args.nproc and args.nproc > 1:
        from torch.distributed.run import main as torchrun

        torchrun([f"--nproc_per_node={args.nproc}", "-m", "igtv.train", *torchrun_args(args)])
        return 0
    from igtv.training.trainer import train

    cfg = load_config(RunConfig, args.config)
    cfg = apply_overrides(cfg, args.set or [])
    changes = {"data": replace(cfg.data, root=args.data)} if args.data else {}
    if args.init:
        changes["init"] = args.init
    if args.device:
        changes["device"] = args.device
    cfg = replace(cfg, **changes)
    if args.command == "finetune" and not cfg.init and not args.resume:
        raise ValueError("finetune needs --init RUN/best.pt (the stage-1 checkpoint)")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(cfg, out, resume=args.resume)
    print(f"best validation IoU {result.best_iou:.4f} at epoch {result.best_epoch}; checkpoints in {out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from igtv.experiments.benchmark import BenchConfig, format_table, run_benchmark
    from igtv.io import write_text_atomic

    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip())
    cfg = BenchConfig(device=args.device, quick=args.quick, predict_model=args.model or "", sections=sections,
                      size=args.size)  # fmt: skip
    result = run_benchmark(cfg, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json:
        write_text_atomic(Path(args.json), json.dumps(result, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from igtv.dicom.suv import SUV_TYPES

    parser = argparse.ArgumentParser(prog="igtv", description="IGTV/GTV lung tumour contouring on PET/CT.")
    parser.add_argument("--version", action="version", version=f"igtv {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "phantom",
        help="generate a breathing-motion PET/CT phantom cohort as DICOM",
        description="Generate synthetic thorax PET/CT patients (DICOM CT, PET, RTSTRUCT with GTV and "
        "IGTV), NIfTI ground truth and the PCLT20K PNG layout.",
    )
    p.add_argument("--out", help="output folder (required unless --stats)")
    p.add_argument("--patients", type=int, help="number of patients (default 10)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--cohort", choices=["gtv", "igtv"], help="gtv: PCLT20K-like scanner; igtv: LUCID-like mix")
    p.add_argument("--matrix-scale", type=float, help="1.0 = 512x512 CT; smaller for quick tests")
    p.add_argument("--workers", type=int, help="parallel processes")
    p.add_argument("--pclt-size", type=int, help="side of the PCLT20K PNGs (default 512)")
    p.add_argument("--no-pclt", action="store_true", help="skip the PCLT20K PNG export")
    p.add_argument("--config", help="PhantomConfig YAML (command-line options override it)")
    p.add_argument("--preview", action="store_true", help="also save preview.png of the first patient")
    p.add_argument("--randomize", action="store_true",
                   help="domain randomisation: wide intensity, noise, PSF, voxel-size, body-size and distractor "
                        "ranges (pre-training data); the default is the realistic mode")  # fmt: skip
    p.add_argument("--prepared", action="store_true",
                   help="write a prepared training dataset (igtv prepare's layout: PNGs, volumes, split) straight "
                        "from the simulation, with no DICOM (1.4x faster), for pre-training data")  # fmt: skip
    p.add_argument("--preset", choices=sorted(PRESETS), default="lucid", help="with --prepared: windows (as prepare)")
    p.add_argument("--size", type=int, default=512, help="with --prepared: PNG side (as prepare)")
    p.add_argument("--stats", action="store_true",
                   help="print realism statistics (HU percentiles, organ SUV means, tissue shares) of --patients "
                        "simulated patients next to the literature ranges; writes nothing")  # fmt: skip
    p.set_defaults(func=_phantom)

    d = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded phantom",
        description="The whole pipeline on the embedded phantom: generate GTV and IGTV cohorts, prepare them, "
        "pre-train 2D on GTV, fine-tune 2.5D+SIM on IGTV, predict an unseen patient (RTSTRUCT, NIfTI, report) and "
        "evaluate the test split whole-patient. 20-45 minutes on 2 CPU cores, depending on the CPU's speed.",
    )
    d.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    d.add_argument("--quick", action="store_true", help="small grids, for a smoke test")
    d.set_defaults(func=_demo)
    q = sub.add_parser(
        "prepare",
        help="clinical PET/CT DICOM -> 2.5D training dataset (PCLT20K layout)",
        description="Read CT, PET and RTSTRUCT/SEG of every patient under ROOT, compute SUV, resample PET to CT, "
        "apply QC (ROI >= 3 cc, SUVmax >= 3) and write PNGs, metadata, QC report and a patient-level split.",
    )
    q.add_argument("--dicom", required=True, help="root folder of the DICOM exams (any tree)")
    q.add_argument("--out", required=True, help="dataset folder")
    q.add_argument("--preset", choices=sorted(PRESETS), help="windows: lucid (default) or pclt20k")
    q.add_argument("--roi", help="ROI name to extract (matches NAME, NAME_2, ...; default IGTV)")
    q.add_argument("--workers", type=int, help="parallel processes (default 1)")
    q.add_argument("--size", type=int, help="PNG side (default 512)")
    q.add_argument("--seed", type=int, help="split seed (default 0)")
    q.add_argument("--config", help="PrepareConfig YAML (command-line options override it)")
    q.add_argument(
        "--pseudonym-key",
        metavar="FILE",
        help="key file (one line of hex) for the patient pseudonyms: the same key gives the same pseudonyms, and so "
        "the same training order, in every dataset prepared with it (default: a new random key per dataset)",
    )
    q.set_defaults(func=_prepare)
    s = sub.add_parser(
        "suv",
        help="PET DICOM series -> SUV NIfTI",
        description="SUV of one PET series (QIBA rules, any Units) on the PET grid, written as NIfTI; prints the "
        "factor and every rule applied.",
    )
    s.add_argument("pet_dir", help="folder holding one PET series")
    s.add_argument("--out", required=True, help="output .nii.gz")
    s.add_argument(
        "--type",
        default="bw",
        choices=SUV_TYPES,
        help="normalisation: body weight (default), lean body mass (James/Morgan, James 128, Janmahasatian), "
        "body surface area (Du Bois, cm2/ml) or ideal body weight",
    )
    s.set_defaults(func=_suv)
    r = sub.add_parser("dataset-report", help="Fig. 2-style statistics PNG of a prepared dataset")
    r.add_argument("dataset", help="folder made by igtv prepare")
    r.add_argument("--out", help="PNG path (default DATASET/dataset_report.png)")
    r.set_defaults(func=_dataset_report)
    e = sub.add_parser("export-nnunet", help="export a prepared dataset in nnU-Net v2 raw format")
    e.add_argument("dataset", help="folder made by igtv prepare")
    e.add_argument("--out", required=True, help="nnUNet_raw folder")
    e.add_argument("--id", type=int, default=501, help="nnU-Net dataset id (default 501)")
    e.add_argument("--name", default="IGTV", help="dataset name and label (default IGTV)")
    e.set_defaults(func=_export_nnunet)
    for name, helptext in (
        ("train", "train a model (stage 1: 2D GTV pre-training)"),
        ("finetune", "fine-tune from a checkpoint (stage 2: 2.5D + SIM on IGTV)"),
    ):
        t = sub.add_parser(name, help=helptext, description=helptext + "; torchrun-compatible (DDP).")
        t.add_argument(
            "--config", required=True, help="run config YAML: a file, or a shipped one by name (pretrain_gtv.yaml)"
        )
        t.add_argument("--data", help="dataset folder (overrides data.root)")
        t.add_argument("--out", help="run folder (default runs/<config name>)")
        t.add_argument("--init", help="checkpoint to transfer weights from (stage 2: RUN/best.pt)")
        t.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.lr=1e-4"
        )
        t.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
        t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default from config: auto)")
        t.add_argument("--nproc", type=int, help="launch N DDP processes with torchrun on this machine")
        t.set_defaults(func=_train)
    p = sub.add_parser(
        "predict",
        help="contour a new patient's PET/CT DICOM (RTSTRUCT + NIfTI + stats + report)",
        description="Predict the IGTV of one patient's PET/CT DICOM folder, or of PNG slices in the PCLT20K layout.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dicom", help="one patient's folder with a CT and a PET series (any tree)")
    src.add_argument("--pclt", help="a PNG dataset in the PCLT20K layout (or made by igtv prepare)")
    p.add_argument("--model", required=True, nargs="+",
                   help="checkpoint, e.g. runs/finetune_igtv/best.pt; several (--dicom only): an ensemble, the mean "
                        "of their probabilities (e.g. the seeds of one configuration)")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--roi-name", default="IGTV", help="ROI name in the RTSTRUCT (default IGTV)")
    p.add_argument("--tta", action="store_true", help="average with the left-right flip, training's one (2x slower)")
    _add_precision(p)
    _add_threshold(p)
    _add_postprocess_args(p)
    p.add_argument("--compare", help="reference RTSTRUCT: adds Dice, HD95, FP/FN volumes to stats.json")
    p.add_argument("--compare-roi", help="ROI of --compare to use (default: like --roi-name)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="slices (or sliding-window tiles) per forward pass (default: 8; on CUDA 32 tiles of 96 px, "
                   "or as many pixels)")  # fmt: skip
    p.add_argument(
        "--overlap", type=float, default=DEFAULT_OVERLAP,
        help=f"sliding-window tile overlap of patch-trained models (default {DEFAULT_OVERLAP}; 0.5 is ~1.8x slower)",
    )  # fmt: skip
    p.add_argument("--preset", choices=sorted(PRESETS), help="windows (default: the checkpoint's)")
    p.add_argument("--split", default="test", help="--pclt: train, val, test or all (default test)")
    p.set_defaults(func=_predict)
    ev = sub.add_parser("evaluate", help="per-slice and per-patient metrics of a checkpoint on a dataset split")
    ev.add_argument("--model", required=True, nargs="+",
                    help="checkpoint (RUN/best.pt); several (whole-patient protocol): their ensemble")  # fmt: skip
    ev.add_argument("--data", required=True, help="PNG dataset (PCLT20K layout or igtv prepare output)")
    ev.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test", "all"],
        help="all: every patient of the dataset (a cohort no training saw; default test)",
    )
    ev.add_argument("--out", required=True, help="folder for per_slice.csv, per_patient.csv, summary.json")
    ev.add_argument("--convention", choices=["paper", "cipa"], default="paper", help="see igtv.experiments.evaluate")
    ev.add_argument("--bootstrap", type=int, default=1000, help="patient-level bootstrap resamples (0: none)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--tta", action="store_true")
    ev.add_argument("--score-excluded-rois", action="store_true",
                    help="whole patient: score against every ROI, the ones the dataset's QC excluded too (default: "
                         "those are ignored, as in the paper's cohort)")  # fmt: skip
    ev.add_argument("--keep-maps", action="store_true",
                    help="whole patient: keep each checkpoint's probability maps beside it (probabilities/<split>/) "
                         "and reuse them, so another --threshold or post-processing setting costs only the "
                         "post-processing")  # fmt: skip
    _add_precision(ev)
    _add_threshold(ev)
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ev.add_argument(
        "--protocol", choices=["whole-patient", "slices"], default="whole-patient",
        help="whole-patient: the predict pipeline on every patient's volumes, scored in 3D (FP/FN cc, lesions) and on "
        "the ROI slices; slices: the paper's protocol on the dataset's PNGs (truth-windowed for lucid datasets)",
    )  # fmt: skip
    _add_postprocess_args(ev)
    ev.set_defaults(func=_evaluate)
    tb = sub.add_parser("table2", help="run the paper's Table II ablation end to end")
    tb.add_argument("--out", required=True)
    tb.add_argument("--data", help="IGTV dataset (default: a generated phantom cohort)")
    tb.add_argument("--pretrain-data", help="GTV dataset for 2D pre-training (default: phantom GTV cohort)")
    tb.add_argument("--budget", choices=["quick", "long", "paper", "smoke"], default="quick")
    tb.add_argument("--workers", type=int, default=2)
    tb.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    tb.add_argument(
        "--seeds",
        help="comma-separated seeds instead of the budget's (e.g. 0 now, 0,1,2 later: saved rows are reused)",
    )
    tb.add_argument(
        "--rows",
        help="comma-separated row keys to run (default: the budget's rows; quick and long leave out unet; "
        "all: every row; e.g. sim_ft,25d_ft,pet41)",
    )
    tb.add_argument(
        "--extra-data", nargs="+", metavar="COHORT",
        help="prepared cohorts no model saw (e.g. igtv phantom --prepared --seed 99): every row is also scored on all "
        "their patients, and the table's comparisons are read over the test and these patients together",
    )  # fmt: skip
    tb.set_defaults(func=_table2)
    b = sub.add_parser(
        "bench",
        help="speed and memory: selective scan, models, whole-patient predict, prepare",
        description="Measure the selective scan (each implementation, the four encoder stages of a 512 x 512 input), "
        "the models' forward and training step, igtv predict of a 100+ slice phantom patient and igtv prepare, "
        "on this machine, and print one Markdown table.",
    )
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    b.add_argument("--quick", action="store_true", help="one repeat for the slow figures (< 5 min on 2 cores)")
    b.add_argument("--json", help="also write every figure to this JSON file")
    b.add_argument("--model", help="the demo's checkpoint, for the predict row (default: its untrained twin)")
    b.add_argument("--sections", default="scan,models,predict,prepare,phantom", help="comma-separated subset to run")
    b.add_argument("--size", type=int, default=512, help="input side of the model section (default 512)")
    b.set_defaults(func=_bench)
    m = sub.add_parser(
        "model-info",
        help="print parameters and GFLOPs of a registered model",
        description="Parameters and forward GFLOPs (multiply-adds) of a registered model.",
    )
    m.add_argument("name", help="registered model name (e.g. cipa_25d_sim_t) or 'all'")
    m.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    m.set_defaults(func=_model_info)
    return parser


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto",
        help="forward passes: auto = AMP on CUDA, fp32 on CPU; bf16 = bfloat16 autocast (for CPUs with AVX512-BF16)",
    )  # fmt: skip


def _add_threshold(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold", type=float, default=None,
        help="probability threshold of the masks, between 0 and 1 (default: the checkpoint's, train.predict_threshold "
        "or else train.threshold of its config)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, KeyError, FloatingPointError) as exc:  # bad input, a full disk, a missing file
        print(f"igtv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
