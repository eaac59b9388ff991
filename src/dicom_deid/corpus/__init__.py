"""DICOM corpora: synthetic ones made on the spot, and the real files registry packages ship.

Benchmarks and tests need many realistic instances, but real studies carry PHI and
cannot be fetched here, so they are generated from a seed: the same seed gives the
same bytes, so a figure measured on one machine can be reproduced on another.
"""

from __future__ import annotations

from .ct import CTInstance, CTSeriesSpec, ct_corpus, ct_dataset, iter_ct_corpus

__all__ = ["CTInstance", "CTSeriesSpec", "ct_corpus", "ct_dataset", "iter_ct_corpus"]
