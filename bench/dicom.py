"""Bronze DICOM ingestion throughput against the single-core pydicom floor, by size.

The floor is a plain loop of `pydicom.dcmread(path, stop_before_pixels=True)` on one
core over the same files, in the same run. Ours is the whole bronze ingestion: walk,
stat, hash, header parse on every core (DICOM JSON model, bulk values marked), the Delta
MERGE and the ingest log. Files are written before timing starts: one template per
modality from `medlake.generate`, copied with new UIDs (PatientID, UIDs and accession
vary as in an archive). These templates have no sequences, so every file takes the
parser's byte-level path, and they repeat most values from file to file, which that path
converts once (`assets/imaging/dicom.py` `_SEEN`: more hits than a varied archive
gives); a file with sequences or another transfer syntax is read by
pydicom (about the floor's cost plus the JSON conversion). Run: `make bench` (or
`.venv/bin/python bench/dicom.py [n ...]`).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid


def write_files(root: Path, n: int, templates: list[pydicom.Dataset]) -> list[Path]:
    """n instances: studies of 10 instances across 100 patients, cycling the templates."""
    paths = []
    for i in range(n):
        ds = templates[(i // 10) % len(templates)]
        if i % 10 == 0:
            study, series = generate_uid(), generate_uid()
            ds.PatientID = f"MRN{(i // 10) % 100:08d}"
            ds.AccessionNumber = f"ACC{i // 10:010d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i % 10 + 1
        folder = root / study
        folder.mkdir(exist_ok=True)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def templates() -> list[pydicom.Dataset]:
    from medlake.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), patients=12, seed=3)
        by_modality = {}
        for f in sorted((Path(tmp) / "dicom").rglob("*.dcm")):
            ds = pydicom.dcmread(f)
            by_modality.setdefault(ds.Modality, ds)
    return list(by_modality.values())


def floor(paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        pydicom.dcmread(p, stop_before_pixels=True)
    return time.perf_counter() - t


def one_size(n: int, tmpl: list[pydicom.Dataset]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = tmp
        os.environ["MEDLAKE_LAKE_URI"] = str(Path(tmp) / "lake")
        from assets.imaging.dicom import DICOM
        from medlake.ingest import ingest

        # Warm-up: one file into a throwaway lake, so the first timing does not carry
        # the libraries' one-off lazy imports (the floor's pydicom is warm too).
        warm = Path(tmp) / "warm"
        warm.mkdir()
        write_files(warm, 1, tmpl)
        os.environ["MEDLAKE_LAKE_URI"] = str(Path(tmp) / "lake-warm")
        ingest(DICOM, warm, "warm-up")
        os.environ["MEDLAKE_LAKE_URI"] = str(Path(tmp) / "lake")
        landing = Path(tmp) / "landing" / "dicom"
        landing.mkdir(parents=True)
        paths = write_files(landing, n, tmpl)
        floor_s = floor(paths)
        t = time.perf_counter()
        summary = ingest(DICOM, landing, "bench")
        ours_s = time.perf_counter() - t
        assert summary.rows["bronze.dicom_instances"] == n, summary
        t = time.perf_counter()
        again = ingest(DICOM, landing, "bench-2")
        rerun_s = time.perf_counter() - t
        assert again.files_skipped == n
        # The same ingestion on one process, into a fresh lake: what the pool buys here.
        os.environ["MEDLAKE_LAKE_URI"] = str(Path(tmp) / "lake-1")
        t = time.perf_counter()
        ingest(DICOM, landing, "bench-1", workers=1)
        one_s = time.perf_counter() - t
        return dict(n=n, floor_s=floor_s, ours_s=ours_s, rerun_s=rerun_s, one_s=one_s)


def main(sizes: list[int]) -> None:
    tmpl = templates()
    print(f"{os.cpu_count()} cores; {len(tmpl)} modality templates "
          f"({', '.join(t.Modality for t in tmpl)})")
    print(f"{'files':>7} {'floor hdr/s':>12} {'ours hdr/s':>11} {'ours/floor':>11} "
          f"{'ours s':>8} {'1-process hdr/s':>16} {'unchanged re-run s':>19}")
    results = []
    for n in sizes:
        r = one_size(n, tmpl)
        results.append(r)
        print(f"{n:>7} {n / r['floor_s']:>12.0f} {n / r['ours_s']:>11.0f} "
              f"{r['floor_s'] / r['ours_s']:>10.2f}x {r['ours_s']:>8.1f} "
              f"{n / r['one_s']:>16.0f} {r['rerun_s']:>19.2f}",
              flush=True)
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\n{b['n'] / a['n']:.0f}x the files took {b['ours_s'] / a['ours_s']:.1f}x the "
              f"time (linear growth would be {b['n'] / a['n']:.0f}x).")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000, 20000])
