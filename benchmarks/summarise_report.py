"""Print the key scores of an evaluation report folder as one Markdown table (the model card's rows).

    python benchmarks/summarise_report.py reports/radar-mix-val-ablation [label ...]

Columns: windows scored, CSI at 1 mm/h (mean over lead times) and its ratio to extrapolation's,
CSI at the first lead, frequency bias at 1 mm/h, CRPS (mm/h) and its ratio to extrapolation's,
spread/RMSE over all leads (ensembles), member 0's RALSD (dB), seconds per forecast. Scores are read
from the report; a model scored on a subset of the windows is compared with extrapolation on that
subset (from the per-window sums), so every ratio is on the same windows.
"""

from __future__ import annotations

import sys

from nowcast.evaluation.events import score_on_windows
from nowcast.evaluation.results import load_run


def main(folder: str, labels: list[str]) -> None:
    _, results = load_run(folder)
    ref = results.get("extrapolation")
    print("| model | windows | CSI 1 mm/h | × extrap. | first lead | bias 1 mm/h | CRPS (mm/h) | × extrap. "
          "| spread/RMSE | RALSD (dB) | s/forecast |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label in labels or list(results):
        r = results[label]
        if r.get("status") != "ok":
            print(f"| {label} | {r.get('status')}: {r.get('error')} |")
            continue
        s, windows = r["scores"], list(r["per_window"]["window_indices"])
        csi, crps = s["csi"]["1.0"]["mean"], s["crps"]["mean"]
        ref_csi = score_on_windows(ref, ("csi", "1.0"), windows) if ref else None
        ref_crps = score_on_windows(ref, ("crps",), windows) if ref else None
        spread = (s.get("ensemble") or {}).get("spread_skill", {}).get("ratio_all_leads")
        cells = [label, str(len(windows)), f"{csi:.3f}", f"{csi / ref_csi:.2f}" if ref_csi else "–",
                 f"{s['csi']['1.0']['per_lead'][0]:.3f}", f"{s['bias']['1.0']['mean']:.2f}", f"{crps:.4f}",
                 f"{crps / ref_crps:.2f}" if ref_crps else "–",
                 f"{spread:.2f}" if spread is not None else "–", f"{s['ralsd']['mean']:.1f}",
                 f"{r['speed']['seconds_per_forecast']:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
