"""Local Cloud Healthcare API v1 server (datasets, DICOM stores, DICOMweb, operations).

It speaks the subset of the v1 REST and DICOMweb contract that the pipeline uses, so
that the same client code talks to Google or to this server; only the endpoint differs.
"""
