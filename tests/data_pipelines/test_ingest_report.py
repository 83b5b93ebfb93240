"""The ingest summary reports each skipped file once, grouped by reason (120 foreign-grid files make
one line, not 240)."""

from __future__ import annotations

from data_pipelines.ingest import IngestReport, skipped_lines


def test_files_skipped_for_one_reason_make_one_line() -> None:
    why = "StoreError: grid mismatch: {} is on grid [A] but store s.zarr holds grid [B]; refusing it"
    skipped = [(f"/in/f{i}.h5", why.format(f"f{i}.h5")) for i in range(120)]
    skipped.append(("/in/bad.h5", "OSError: truncated file"))
    lines = skipped_lines(skipped)
    assert lines == [
        "  skipped 120 files (f0.h5, f1.h5, f2.h5, ... (117 more)): StoreError: grid mismatch: <file> is on "
        "grid [A] but store s.zarr holds grid [B]; refusing it",
        "  skipped bad.h5: OSError: truncated file",
    ]
    report = IngestReport(store="s.zarr", skipped=skipped)  # type: ignore[arg-type]
    assert report.summary().count("\n") == 2
