"""The de-identification engine: Airflow-free and HTTP-free (pydicom, numpy).

The PS3.15 confidentiality table and the Cloud Healthcare API's DeidentifyConfig
schema are data here, not hand-written lists, so the engine applies the standard
and accepts the API's configuration exactly.
"""
