"""Seed ensembles of a Table II run: each learnt row's seeds as one model, the mean of their probabilities.

nnU-Net ships the ensemble of its folds; this is the same reading for Table II's seeds, next to the per-seed mean
the table reports. Each seed's probability maps are kept when it is scored (``WholePatientConfig.
cache_probabilities``), so an ensemble costs its post-processing and scoring only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

ENSEMBLE_RESULT = "ensemble_result.json"


def shared_with(run_dir: Path) -> int | None:
    """The seed whose model a seed's row is (an applied row of the one shared pre-training), else None."""
    saved = run_dir / "row_result.json"
    return json.loads(saved.read_text()).get("same_model_as_seed") if saved.exists() else None


def one_model(out: Path, key: str, seeds) -> bool:
    """Whether every seed's ``key`` row is one model (the applied rows of one shared pre-training, whose seeds'
    results are marked ``same_model_as_seed``). An ensemble of copies of one model is that model, so its reading is
    the first seed's, not a second one."""
    models = set()
    for s in seeds:
        run = out / "runs" / f"seed{s}" / key
        if not (run / "row_result.json").exists():
            return False
        same = shared_with(run)
        models.add(s if same is None else same)
    return len(models) == 1


def score_ensembles(selected, out: Path, seeds, data: Path, b, bootstrap: int, device: str) -> dict[str, dict]:
    """Each learnt row's seeds as one ensemble (the mean of their probabilities), scored whole patient on the test
    split: ``row key -> {"whole", "rows"}``. The seeds' maps were kept when they were scored, so this costs the
    post-processing; a result newer than every member checkpoint is reused, and a row whose seeds are one model
    (:func:`one_model`) gets that model's own reading."""
    from igtv.experiments.whole_patient import WholePatientConfig, evaluate_whole_patients
    from igtv.io import write_text_atomic

    if not b.whole_patient or len(seeds) < 2 or not (data / "volumes").is_dir():
        return {}
    found = {}
    for r in selected:
        ckpts = [out / "runs" / f"seed{s}" / r.key / "best.pt" for s in seeds]
        if r.rule or not all(c.exists() for c in ckpts):
            continue
        own = json.loads((ckpts[0].parent / "row_result.json").read_text()) if one_model(out, r.key, seeds) else {}
        if own.get("whole") and own.get("whole_rows"):
            found[r.key] = {"whole": own["whole"], "rows": own["whole_rows"], "seeds": list(seeds), "one_model": True}
            continue
        dest = out / "ensembles" / r.key
        saved = dest / ENSEMBLE_RESULT
        if saved.exists() and saved.stat().st_mtime > max(c.stat().st_mtime for c in ckpts):
            found[r.key] = json.loads(saved.read_text())
            continue
        t_row = time.perf_counter()
        wcfg = WholePatientConfig(split="test", overlap=b.overlap, bootstrap=bootstrap, cache_probabilities=True)
        s = evaluate_whole_patients(ckpts, data, dest, wcfg, device, progress=False)
        found[r.key] = {"whole": s["whole_patient"], "rows": s["rows"], "seeds": list(seeds)}
        write_text_atomic(saved, json.dumps(found[r.key], default=float))
        print(
            f"[table2] {r.label}, ensemble of seeds {list(seeds)}: whole patient 3D Dice "
            f"{s['whole_patient']['dice_3d']['mean'] * 100:.2f} ({time.perf_counter() - t_row:.0f} s)"
        )
    return found
