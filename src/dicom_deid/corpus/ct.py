"""Synthetic CT-like instances: 512x512, 16-bit MONOCHROME2, Explicit VR Little Endian.

Why CT: it is the bulk of what a DICOM store holds (hundreds of ~0.5 MB slices per
series), so it is the shape that throughput and memory figures should be measured on.
Why synthetic: real studies carry PHI and cannot be fetched on these machines, so the
header is filled with made-up values that have the *shape* of PHI (names, IDs,
dates, institution) -- which a de-identification project needs to exercise -- while
belonging to nobody.

Everything is derived from one integer seed: UIDs through
:func:`pydicom.uid.generate_uid` with fixed entropy sources, pixels and header values
through a NumPy generator seeded per series. The same seed therefore gives the same
bytes on every machine, for given pydicom and NumPy versions (pydicom writes its own
version into the file meta; NumPy only promises stable random streams within a
version), which is what makes a benchmark reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# Made-up but plausible values. Names follow the DICOM PN form FAMILY^GIVEN and are
# visibly synthetic so that nobody mistakes a generated file for a real patient's.
_FAMILY = ("SYNTHETIC", "PHANTOM", "TESTCASE", "SAMPLE")
_GIVEN = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL")
_INSTITUTION = "Synthetic General Hospital"
_MANUFACTURER = "dicom-deid synthetic"
_BASE_DATE = date(2021, 1, 4)

# HU values of the phantom's materials.
_AIR, _LUNG, _FAT, _SOFT, _CANCELLOUS, _CORTICAL = -1000.0, -850.0, -100.0, 40.0, 250.0, 1200.0


@dataclass(frozen=True)
class CTSeriesSpec:
    """How one reconstruction looks; two kinds alternate so both pixel encodings occur.

    Unsigned 12-in-16-bit with a -1024 intercept and signed 16-bit with a 0 intercept
    are the two encodings scanners actually emit; code that reads pixels (rendering,
    burnt-in text checks) must handle both, so a corpus should contain both.
    """

    description: str
    kernel: str
    slice_thickness: float
    window_center: int
    window_width: int
    signed: bool
    noise_hu: float

    @property
    def rescale_intercept(self) -> int:
        return 0 if self.signed else -1024


SERIES_KINDS: tuple[CTSeriesSpec, ...] = (
    CTSeriesSpec("AXIAL 5.0 SOFT TISSUE", "STANDARD", 5.0, 40, 400, False, 12.0),
    CTSeriesSpec("AXIAL 1.25 LUNG", "LUNG", 1.25, -600, 1500, True, 25.0),
)


@dataclass(frozen=True)
class CTInstance:
    """One generated instance: its identifying UIDs and its Part 10 file bytes.

    The UIDs are carried alongside the bytes so that a caller can address the instance
    over WADO-RS (or check what came back) without parsing the file again.
    """

    study_uid: str
    series_uid: str
    sop_uid: str
    data: bytes


def _uid(seed: int, *parts: object) -> str:
    """A UID that depends only on the seed and the path to the object it names.

    The parts are joined with a separator into one entropy source because
    ``generate_uid`` concatenates its sources bare: (study 1, series 11) and
    (study 11, series 1) would otherwise hash alike and share a UID.
    """
    path = "/".join(["dicom-deid-ct", str(seed), *map(str, parts)])
    return str(generate_uid(entropy_srcs=[path]))


@lru_cache(maxsize=4)
def _axes(rows: int, columns: int, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in mm: x as a row vector, y as a column vector.

    Kept one-dimensional so that shapes are drawn by broadcasting: squaring two
    vectors and adding them once is several times cheaper than squaring whole grids,
    and drawing dominates the cost of generating a corpus.
    """
    x = (np.arange(columns, dtype=np.float32) - (columns - 1) / 2) * np.float32(spacing)
    y = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * np.float32(spacing)
    return x[np.newaxis, :], y[:, np.newaxis]


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float,
             b: float) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _phantom_hu(rows: int, columns: int, spacing: float, t: float, noise_hu: float,
                rng: np.random.Generator) -> np.ndarray:
    """A chest-like slice in HU: body, fat rim, two lungs, spine, table, noise.

    ``t`` in [0, 1] is the position along the scan; organ sizes vary with it so that
    neighbouring slices differ as in a real volume (identical slices would let any
    deduplicating or compressing layer look unrealistically good).
    """
    x, y = _axes(rows, columns, spacing)
    hu = np.full((rows, columns), _AIR, dtype=np.float32)
    swell = 1.0 + 0.06 * np.sin(np.pi * t)
    body_a, body_b = 165.0 * swell, 115.0 * swell
    hu[_ellipse(x, y, 0.0, 0.0, body_a, body_b)] = _FAT
    hu[_ellipse(x, y, 0.0, 0.0, body_a - 12.0, body_b - 10.0)] = _SOFT
    lung = 0.35 + 0.65 * np.sin(np.pi * min(max(t, 0.02), 0.98))
    for side in (-1.0, 1.0):
        hu[_ellipse(x, y, side * 72.0, -8.0, 52.0 * lung, 78.0 * lung)] = _LUNG
    hu[_ellipse(x, y, 0.0, 78.0, 20.0, 18.0)] = _CORTICAL
    hu[_ellipse(x, y, 0.0, 78.0, 15.0, 13.0)] = _CANCELLOUS
    hu[(y > body_b + 18.0) & (y < body_b + 26.0) & (np.abs(x) < 180.0)] = 150.0
    hu += rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(noise_hu)
    return hu


def _pixels(hu: np.ndarray, spec: CTSeriesSpec) -> bytes:
    """Stored values for ``hu`` in the series' encoding, clipped to its BitsStored."""
    stored = np.rint(hu - spec.rescale_intercept)
    if spec.signed:
        return np.clip(stored, -2048, 3071).astype("<i2").tobytes()
    return np.clip(stored, 0, 4095).astype("<u2").tobytes()


def _ds(value: float) -> str:
    """A DS string; formatted here because DS allows at most 16 characters."""
    text = f"{round(value, 6) + 0.0:.10g}"  # + 0.0 turns -0.0 into 0
    if len(text) > 16:
        raise ValueError(f"{value} does not fit a DS value")
    return text


def ct_dataset(seed: int, study: int, series: int, index: int, count: int, *,
               rows: int = 512, columns: int = 512,
               rng: np.random.Generator | None = None) -> Dataset:
    """Slice ``index`` of ``count`` in series ``series`` of study ``study``, as a Dataset.

    Each study is its own synthetic patient. ``rng`` lets a caller that generates a
    whole series reuse one generator (cheaper, and still deterministic because slices
    are drawn in order); without it the slice gets a generator of its own.
    """
    if rng is None:
        rng = np.random.default_rng([seed, study, series, index])
    spec = SERIES_KINDS[series % len(SERIES_KINDS)]
    patient = np.random.default_rng([seed, study])  # same patient values in every series
    family = _FAMILY[int(patient.integers(len(_FAMILY)))]
    given = _GIVEN[int(patient.integers(len(_GIVEN)))]
    birth = _BASE_DATE - timedelta(days=int(patient.integers(20 * 365, 85 * 365)))
    study_day = _BASE_DATE + timedelta(days=int(patient.integers(0, 3 * 365)))
    sex = ("F", "M")[int(patient.integers(2))]
    study_hour = 8 + int(patient.integers(0, 10))
    age = (study_day - birth).days // 365
    fov = 380.0  # mm; over 512 columns that is the usual 0.742 mm pixel
    spacing = fov / columns
    step = spec.slice_thickness
    z = -step * index
    t = index / max(count - 1, 1)

    study_date = study_day.strftime("%Y%m%d")
    study_time = f"{study_hour:02d}1500"
    series_time = f"{study_hour:02d}{16 + series:02d}00"
    # One slice every quarter second from the start of the series.
    seconds = study_hour * 3600 + (16 + series) * 60 + index * 0.25
    content_time = (f"{int(seconds) // 3600:02d}{int(seconds) // 60 % 60:02d}"
                    f"{int(seconds) % 60:02d}.{round(seconds % 1 * 1e6):06d}")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    sop_uid = _uid(seed, study, series, index)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = content_time
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = study_time
    ds.SeriesTime = series_time
    ds.AcquisitionTime = ds.ContentTime = content_time
    ds.AccessionNumber = f"SYN{seed % 1000:03d}{study:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = _MANUFACTURER
    ds.InstitutionName = _INSTITUTION
    ds.InstitutionAddress = "1 Example Road, Nowhere"
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StationName = "SYNCT01"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = spec.description
    ds.OperatorsName = "OPERATOR^SYNTHETIC"
    ds.ManufacturerModelName = "Phantom 512"
    ds.PatientName = f"{family}^{given}{study:03d}"
    ds.PatientID = f"SYN-{seed}-{study:05d}"
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = sex
    ds.PatientAge = f"{min(age, 999):03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _ds(spec.slice_thickness)
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.DeviceSerialNumber = f"SN{seed % 100000:05d}"
    ds.SoftwareVersions = "synthetic-1"
    ds.ReconstructionDiameter = _ds(fov)
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = str(180 + int(rng.integers(0, 60)))
    ds.Exposure = "90"
    ds.ConvolutionKernel = spec.kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(seed, study)
    ds.SeriesInstanceUID = _uid(seed, study, series)
    ds.StudyID = f"{study + 1}"
    ds.SeriesNumber = series + 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [_ds(-(columns - 1) * spacing / 2),
                               _ds(-(rows - 1) * spacing / 2), _ds(z)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = _uid(seed, study, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = _ds(z)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if spec.signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if spec.signed else 0
    ds.WindowCenter = str(spec.window_center)
    ds.WindowWidth = str(spec.window_width)
    ds.RescaleIntercept = str(spec.rescale_intercept)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.BurnedInAnnotation = "NO"
    hu = _phantom_hu(rows, columns, spacing, t, spec.noise_hu, rng)
    ds.PixelData = _pixels(hu, spec)
    ds["PixelData"].VR = "OW"
    return ds


def _to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _layout(total: int, studies: int, series_per_study: int) -> list[tuple[int, int, int]]:
    """(study, series, slice count) for each series, spreading ``total`` evenly.

    Earlier series take the remainder, so every count from 1 upwards is possible.
    """
    n_series = studies * series_per_study
    if total < 1 or n_series < 1:
        raise ValueError("need at least one instance, one study and one series per study")
    base, extra = divmod(total, n_series)
    out = []
    for k in range(n_series):
        size = base + (1 if k < extra else 0)
        if size:
            out.append((k // series_per_study, k % series_per_study, size))
    return out


def iter_ct_corpus(total: int, seed: int = 0, *, studies: int = 5, series_per_study: int = 2,
                   rows: int = 512, columns: int = 512) -> Iterator[CTInstance]:
    """Yield ``total`` instances as Part 10 bytes, series by series, study by study.

    A generator, so a caller that streams instances somewhere does not need the whole
    corpus (about 0.5 MB per 512x512 slice) in memory at once.
    """
    for study, series, count in _layout(total, studies, series_per_study):
        rng = np.random.default_rng([seed, study, series])
        for index in range(count):
            ds = ct_dataset(seed, study, series, index, count, rows=rows, columns=columns,
                            rng=rng)
            yield CTInstance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                             str(ds.SOPInstanceUID), _to_bytes(ds))


def ct_corpus(total: int, seed: int = 0, *, studies: int = 5, series_per_study: int = 2,
              rows: int = 512, columns: int = 512) -> list[CTInstance]:
    """All of :func:`iter_ct_corpus` as a list (for callers that time uploads of it)."""
    return list(iter_ct_corpus(total, seed, studies=studies,
                               series_per_study=series_per_study, rows=rows, columns=columns))
