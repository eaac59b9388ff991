"""Parts of ``bench/server_throughput.py``, the DICOMweb throughput and memory benchmark.

``measure`` (RSS sampling, timed phases, client threads), ``disk`` (page cache, disk
probe, direct file reads), ``dicomweb_load`` (STOW/WADO load and round-trip check),
``our_server`` (stores of ``dicom-deid serve``), ``peers`` (Orthanc), ``workload`` (the
timed phases run against either server), ``profiling`` (py-spy pass) and ``report``
(markdown tables and goals). The script holds the command line and the run order.
"""
