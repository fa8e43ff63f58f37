"""The C decoder of genotype calls (`_calls.c`), where it can be used.

It reads a cyvcf2 record's packed FORMAT block itself, after the parse and without the
GIL, instead of four numpy matrices per record built under it. That relies on cyvcf2's
and htslib's memory layout (see the C file), so it is used only with a cyvcf2 release it
was checked against, and a file's first record is checked too. Everywhere else (no C
compiler at install, another cyvcf2, a GT, DP, GQ or AD field typed String) the calls go
the numpy way in `vcf.py`, value for value the same (tests/test_genotype_decoder.py).
"""
import logging
import sys

import cyvcf2
import numpy as np
import pyarrow as pa

try:
    from assets.genomics import _calls
except ImportError:  # built at install when a C compiler is there (pyproject: ext-modules)
    _calls = None

log = logging.getLogger(__name__)

ACCEPTED_CYVCF2 = ("0.34.0",)
WANTED = ("GT", "DP", "GQ", "AD")
_INTEGER, _FLOAT = (1, 2, 3), 5  # BCF int8, int16, int32; float


def unavailable() -> str | None:
    """Why the C decoder cannot be used here, or None when it can."""
    if _calls is None:
        return "the C extension assets.genomics._calls was not built (no C compiler at install?)"
    if cyvcf2.__version__ not in ACCEPTED_CYVCF2:
        return f"cyvcf2 {cyvcf2.__version__} is not a release the decoder was checked against"
    if sys.byteorder != "little":
        return "BCF's little-endian values on a big-endian machine"
    return None


class Formats:
    """One file's FORMAT layouts met so far: whether the C decoder takes each (GT, DP, GQ
    and AD, where present, hold integers, or floats but for GT), and the header ids of
    those four keys."""

    def __init__(self):
        self.verdicts: dict[tuple, bool] = {}
        self.ids: dict[str, int] = {}

    def native(self, record) -> bool:
        layout = _calls.layout(record)  # (key id << 4 | type) per field: ~0.3 µs
        verdict = self.verdicts.get(layout)
        if verdict is None:
            verdict = self.verdicts[layout] = self._learn(layout, record.FORMAT)
        return verdict

    def _learn(self, layout: tuple, names: list[str]) -> bool:
        verdict = len(layout) == len(names)
        for code, name in zip(layout, names):
            if name in WANTED:
                self.ids[name] = code >> 4
                kind = code & 15
                verdict = verdict and (kind in _INTEGER or kind == _FLOAT and name != "GT")
        return verdict

    def key_ids(self) -> tuple[int, ...]:
        return tuple(self.ids.get(k, -1) for k in WANTED)


def formats_for(record, samples: int) -> Formats | None:
    """A file's `Formats`, given its first record; None (the numpy path) when the decoder
    cannot be used or the record does not look as the decoder expects."""
    why = unavailable()
    if why is None and _calls.head(record) != (record.POS - 1, samples, len(record.ALT) + 1):
        why = "a cyvcf2 record does not have the layout the decoder expects"
    if why is not None:
        log.warning("VCF calls decoded with numpy, not the C decoder: %s.", why)
        return None
    return Formats()


def columns(records: list, samples: int, formats: Formats) -> dict:
    """The call columns of `records`, all of one file: `codes` (the GT codes of vcf.py's
    `_gt_codes`, -1 without GT), `codes_fit` (False when a call has more alleles or a
    higher ploidy than a code holds) and the Arrow arrays `alleles`, `phased`,
    `alt_count`, `dp`, `gq`, `ad`."""
    out = _calls.decode(records, samples, formats.key_ids())
    rows = len(records) * samples

    def ints(values, valid) -> pa.Array:
        return pa.Array.from_buffers(pa.int64(), rows, [pa.py_buffer(valid), pa.py_buffer(values)])

    def lists(offsets, values, item_valid, row_valid, count) -> pa.Array:
        items = pa.Array.from_buffers(pa.int64(), count, [pa.py_buffer(item_valid), pa.py_buffer(values)])
        return pa.Array.from_buffers(pa.list_(pa.int64()), rows,
                                     [pa.py_buffer(row_valid), pa.py_buffer(offsets)], children=[items])

    return dict(
        codes=np.frombuffer(out["codes"], np.int64, rows), codes_fit=out["codes_fit"],
        alleles=lists(*out["alleles"]),
        phased=pa.Array.from_buffers(pa.bool_(), rows, [None, pa.py_buffer(out["phased"])]),
        alt_count=pa.Array.from_buffers(pa.int64(), rows, [None, pa.py_buffer(out["alt_count"])]),
        dp=ints(out["dp"], out["dp_valid"]), gq=ints(out["gq"], out["gq_valid"]),
        ad=lists(*out["ad"]),
    )
