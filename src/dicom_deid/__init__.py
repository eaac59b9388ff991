"""DICOM de-identification: engine, local Cloud Healthcare API server and CLI."""

__version__ = "0.1.0"

# Root of the UIDs this project mints (implementation class UID, regenerated UIDs).
# A UUID-derived root under 2.25 needs no registration (PS3.5 B.2).
UID_ROOT = "2.25."
IMPLEMENTATION_CLASS_UID = "2.25.108154916125413245417468542183735021157"
IMPLEMENTATION_VERSION_NAME = "DICOM_DEID_010"
