"""Airflow integration of dicom-deid: Cloud Healthcare API hook, operators, trigger, links.

One package under ``plugins/`` so that every Airflow component (scheduler, workers,
triggerer, API server) imports the same code: a trigger must be importable outside
the DAG bundle. The modules are imported by name (``dicom_deid_airflow.hooks.healthcare``
and so on); this file stays free of imports so that importing the package costs
nothing and pulls neither Airflow nor the Google client libraries.
"""
