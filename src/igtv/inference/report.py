"""``report.html`` of a prediction: one self-contained page (images inlined), no patient names or IDs.

Axial CT/PET fusion slices with the contour, coronal and sagittal PET maximum-intensity projections with the
projected contour, the lesion table, the model, and a "not for clinical use" line.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from igtv.geometry import Geometry

PRED_COLOUR = "#00e000"
TRUTH_COLOUR = "#ff2020"


def choose_axial_slices(mask: np.ndarray, pet_suv: np.ndarray, n: int = 6) -> list[int]:
    """Slices to show: the largest cross-section and slices spread over the mask's extent (the hottest PET slice
    when the mask is empty)."""
    area = mask.reshape(mask.shape[0], -1).sum(1)
    nz = np.nonzero(area)[0]
    if nz.size == 0:
        return [int(np.argmax(pet_suv.reshape(pet_suv.shape[0], -1).max(1)))]
    picks = {int(np.argmax(area))}
    picks.update(int(v) for v in np.linspace(nz[0], nz[-1], num=min(n, nz.size)).round())
    ordered = sorted(picks)
    while len(ordered) > n:  # drop the pick closest to a neighbour, never the largest
        gaps = np.diff(ordered)
        i = int(np.argmin(gaps)) + 1
        if ordered[i] == int(np.argmax(area)):
            i -= 1
        ordered.pop(i)
    return ordered


def body_box(ct_hu: np.ndarray, margin: int = 8) -> tuple[slice, slice]:
    """In-plane (row, column) slices around the body (CT > -400 HU on any slice), so panels show the patient."""
    body = (ct_hu > -400).any(axis=0)
    rows, cols = np.nonzero(body)
    if rows.size == 0:
        return slice(None), slice(None)
    return (
        slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
        slice(max(cols.min() - margin, 0), cols.max() + margin + 1),
    )


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="black")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _contour(ax, mask2d: np.ndarray, colour: str, extent=None) -> None:
    if mask2d.any() and not mask2d.all():
        ax.contour(mask2d.astype(float), levels=[0.5], colors=[colour], linewidths=1.2, extent=extent, origin="upper")


def axial_figure(ct_hu, pet_suv, mask, geom: Geometry, slices: list[int], reference=None) -> str:
    """Fusion panels (CT lung window, PET SUV 0..max overlay) with the contour(s); base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sx, sy, _ = geom.spacing_mm
    vmax = max(float(np.percentile(pet_suv[mask], 99)) if mask.any() else float(pet_suv.max()), 1.0)
    rs, cs = body_box(ct_hu)
    cols = len(slices)
    fig, axes = plt.subplots(1, cols, figsize=(3.0 * cols, 3.2), facecolor="black", squeeze=False)
    for ax, z in zip(axes[0], slices, strict=True):
        ax.imshow(np.clip(ct_hu[z][rs, cs], -1350, 150), cmap="gray", aspect=sy / sx)
        pet = np.ma.masked_less(pet_suv[z][rs, cs], 0.15 * vmax)
        ax.imshow(pet, cmap="hot", alpha=0.45, vmin=0, vmax=vmax, aspect=sy / sx)
        _contour(ax, mask[z][rs, cs], PRED_COLOUR)
        if reference is not None:
            _contour(ax, reference[z][rs, cs], TRUTH_COLOUR)
        ax.set_title(f"slice {z}", color="white", fontsize=9)
        ax.axis("off")
    return _png(fig)


def mip_figure(pet_suv, mask, geom: Geometry, reference=None, box: tuple[slice, slice] | None = None) -> str:
    """Coronal and sagittal PET MIPs (superior up) with the projected contour(s); base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sx, sy, sz = geom.spacing_mm
    vmax = max(float(np.percentile(pet_suv, 99.9)), 1.0)
    if box is not None:  # crop the projections to the body
        pet_suv, mask = pet_suv[:, box[0], box[1]], mask[:, box[0], box[1]]
        reference = None if reference is None else reference[:, box[0], box[1]]
    fig, axes = plt.subplots(1, 2, figsize=(8, 5), facecolor="black")
    views = (("coronal MIP", 1, sz / sx), ("sagittal MIP", 2, sz / sy))
    for ax, (title, axis, aspect) in zip(axes, views, strict=True):
        mip = pet_suv.max(axis=axis)[::-1]  # superior at the top
        ax.imshow(mip, cmap="gray_r", vmin=0, vmax=vmax, aspect=aspect)
        _contour(ax, mask.any(axis=axis)[::-1], PRED_COLOUR)
        if reference is not None:
            _contour(ax, reference.any(axis=axis)[::-1], TRUTH_COLOUR)
        ax.set_title(title, color="white", fontsize=10)
        ax.axis("off")
    return _png(fig)


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key, "")
            if isinstance(v, list | tuple):
                v = ", ".join(format(x, fmt) if fmt and isinstance(x, int | float) else str(x) for x in v)
            elif fmt and isinstance(v, int | float):
                v = format(v, fmt)
            cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_report(
    *,
    ct_hu: np.ndarray,
    pet_suv: np.ndarray,
    mask: np.ndarray,
    geom: Geometry,
    stats: dict,
    model_facts: dict,
    reference: np.ndarray | None = None,
) -> str:
    """The HTML text. Arrays are in head-first axial orientation (``[z, y, x]``, identity direction)."""
    shown = mask if reference is None else (mask | reference)
    slices = choose_axial_slices(shown, pet_suv)
    axial = axial_figure(ct_hu, pet_suv, mask, geom, slices, reference)
    mips = mip_figure(pet_suv, mask, geom, reference, body_box(ct_hu))
    lesions = _table(
        stats["lesions"],
        [
            ("lesion", "#", ""),
            ("volume_cc", "MTV (cc)", ".2f"),
            ("suv_max", "SUVmax", ".2f"),
            ("suv_mean", "SUVmean", ".2f"),
            ("suv_peak", "SUVpeak", ".2f"),
            ("tlg", "TLG", ".1f"),
            ("centroid_mm", "centroid (mm, LPS)", ".1f"),
            ("slice_range", "slices", "d"),
        ],
    )
    compare = ""
    if stats.get("compare"):
        c = stats["compare"]
        compare = "<h2>Against the reference contour</h2>" + _table(
            [c],
            [
                ("dice", "Dice", ".3f"),
                ("hd95_mm", "HD95 (mm)", ".1f"),
                ("surface_dice_2mm", "surface Dice 2 mm", ".3f"),
                ("false_positive_cc", "FP (cc)", ".2f"),
                ("false_negative_cc", "FN (cc)", ".2f"),
                ("volume_difference_cc", "volume diff (cc)", ".2f"),
                ("lesions_hit", "lesions found", "d"),
                ("lesions_true", "true lesions", "d"),
                ("false_lesions", "false lesions", "d"),
                ("false_lesion_cc", "false lesions (cc)", ".2f"),
                ("missed_lesion_cc", "missed lesions (cc)", ".2f"),
            ],
        )
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in model_facts.items()
    )
    info = stats["prediction"]
    legend = f'<span style="color:{PRED_COLOUR}">&#9632; prediction</span>'
    if reference is not None:
        legend += f' &nbsp; <span style="color:{TRUTH_COLOUR}">&#9632; reference</span>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>igtv prediction report</title>
<style>
body {{ font-family: sans-serif; background: #111; color: #eee; margin: 1.5em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
td, th {{ border: 1px solid #555; padding: 3px 8px; text-align: right; }}
th {{ background: #222; }}
.warn {{ background: #7a1f1f; color: #fff; padding: 0.6em 1em; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head><body>
<div class="warn">Research software: NOT FOR CLINICAL USE. Every contour must be reviewed by a qualified person.</div>
<h1>igtv prediction: {html.escape(info["roi_name"])}</h1>
<p>{len(stats["lesions"])} lesion(s), total {info["total_volume_cc"]:.2f} cc; CT grid {info["ct_shape_zyx"]} voxels of
{", ".join(f"{v:.2f}" for v in info["ct_spacing_mm"])} mm; {info["seconds"]:.1f} s on {html.escape(info["device"])}.
{legend}</p>
<h2>Axial PET/CT fusion</h2><img alt="axial fusion" src="data:image/png;base64,{axial}">
<h2>PET maximum-intensity projections</h2><img alt="PET MIPs" src="data:image/png;base64,{mips}">
<h2>Lesions</h2>{lesions}
<p>MTV: contoured volume; SUVpeak: highest mean SUV in a 1 cc sphere centred in the lesion; TLG = MTV x SUVmean.
SUV: {html.escape(info["suv"])}.</p>
{compare}
<h2>Model</h2><table>{facts}</table>
<p>Generated by igtv {html.escape(info["igtv_version"])}.</p>
</body></html>
"""
