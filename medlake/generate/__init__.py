"""Deterministic, realistic multimodal hospital sample data (FHIR, DICOM, VCF).

Public API: `generate(landing, patients, seed=42, bad_files=False, ndjson=False, progress=None)`
returning a `GenerateResult`. See medlake/generate/core.py for the layout and conventions.
"""

from medlake.generate.core import GenerateResult, generate

__all__ = ["GenerateResult", "generate"]
