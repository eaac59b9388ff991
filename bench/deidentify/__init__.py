"""Parts of ``bench/deidentify_throughput.py``, the file de-identification benchmark.

``corpus`` (the mixed CT / MR / multi-frame corpus written to disk), ``tools`` (ours,
the peers and the ``cp -r`` floor: how each is found, installed and invoked),
``runner`` (one measured run: cache, wall time, CPU, peak RSS, output check),
``audit`` (what each tool actually changes, on one file of each kind), ``report``
(markdown) and ``peer_deid`` (the pydicom/deid driver, run in the peers' venv). The
script holds the command line and the run order.
"""
