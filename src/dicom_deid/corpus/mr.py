"""Synthetic MR instances: 256x256, 12-in-16-bit MONOCHROME2, MR Image Storage.

The second most common shape in a store after CT: many small single-frame slices
(128 KiB of pixels each), so per-file costs (opening, parsing, writing headers) weigh
more than in CT. The header is fuller than the CT one in the places a
de-identification must reach: nested sequences that carry UIDs, dates and IDs
(request attributes, referenced procedure step, referenced localizer), a private
block that quotes the patient the way vendor headers do, and patient-level values
(weight, size) that the basic profile removes.

Patients are shared with :mod:`dicom_deid.corpus.ct`: study ``k`` of a given seed is
the same synthetic person (same name, ID, birth date) in both, scanned here a week
after the CT study, so a tool that shifts dates per patient has cross-modality
consistency to keep. Everything is derived from one integer seed, as in the CT
module: the same seed gives the same bytes for given pydicom and NumPy versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from .ct import (
    _BASE_DATE,
    _FAMILY,
    _GIVEN,
    _INSTITUTION,
    _MANUFACTURER,
    CTInstance,
    _axes,
    _ds,
    _ellipse,
    _layout,
    _to_bytes,
)

#: The private creator of the vendor-like block; its data element quotes the patient.
PRIVATE_CREATOR = "DICOM-DEID SYNTHETIC MR"
PRIVATE_GROUP = 0x0029


@dataclass(frozen=True)
class Patient:
    """The patient-level values of study ``study``: the same person in every modality."""

    name: str
    patient_id: str
    birth: date
    sex: str
    ct_day: date
    hour: int
    weight_kg: int
    size_m: float

    def age_on(self, day: date) -> str:
        return f"{min((day - self.birth).days // 365, 999):03d}Y"


def patient(seed: int, study: int) -> Patient:
    """Draws in the same order as :func:`dicom_deid.corpus.ct.ct_dataset`, so the name,
    ID, birth date, sex and CT study day agree with the CT corpus of the same seed."""
    rng = np.random.default_rng([seed, study])
    family = _FAMILY[int(rng.integers(len(_FAMILY)))]
    given = _GIVEN[int(rng.integers(len(_GIVEN)))]
    birth = _BASE_DATE - timedelta(days=int(rng.integers(20 * 365, 85 * 365)))
    ct_day = _BASE_DATE + timedelta(days=int(rng.integers(0, 3 * 365)))
    sex = ("F", "M")[int(rng.integers(2))]
    hour = 8 + int(rng.integers(0, 10))
    weight = int(rng.integers(50, 110))
    size = round(float(rng.uniform(1.5, 1.95)), 2)
    return Patient(f"{family}^{given}{study:03d}", f"SYN-{seed}-{study:05d}", birth, sex,
                   ct_day, hour, weight, size)


@dataclass(frozen=True)
class MRSeriesSpec:
    """One pulse sequence: its name, timing and the signal of each tissue under it."""

    description: str
    protocol: str
    scanning_sequence: str
    sequence_variant: str
    tr: float
    te: float
    ti: float | None
    flip: float
    echo_train: int
    # Signal of air, bone, fat/scalp, CSF, grey matter, white matter (arbitrary units).
    signal: tuple[float, float, float, float, float, float]
    window_center: int
    window_width: int


SERIES_KINDS: tuple[MRSeriesSpec, ...] = (
    MRSeriesSpec("AX T1 SE", "t1_se_tra", "SE", "NONE", 500.0, 12.0, None, 90.0, 1,
                 (0.0, 60.0, 1500.0, 250.0, 800.0, 1150.0), 700, 1400),
    MRSeriesSpec("AX T2 FSE", "t2_tse_tra", "SE", "SK", 4000.0, 95.0, None, 150.0, 16,
                 (0.0, 40.0, 900.0, 2600.0, 1200.0, 800.0), 1200, 2600),
    MRSeriesSpec("AX FLAIR", "t2_tirm_tra_dark-fluid", "SE\\IR", "SK\\SP", 9000.0, 85.0,
                 2500.0, 150.0, 16, (0.0, 40.0, 700.0, 120.0, 1300.0, 900.0), 800, 1600),
)


def _uid(seed: int, *parts: object) -> str:
    """As in the CT module, with its own prefix so MR and CT UIDs never coincide."""
    path = "/".join(["dicom-deid-mr", str(seed), *map(str, parts)])
    return str(generate_uid(entropy_srcs=[path]))


def brain_signal(rows: int, columns: int, spacing: float, t: float,
                 signal: tuple[float, ...], noise: float,
                 rng: np.random.Generator) -> np.ndarray:
    """An axial head slice: scalp, skull, CSF rim, grey and white matter, ventricles.

    ``t`` in [0, 1] runs from the skull base to the vertex; the head and ventricles
    change size with it so neighbouring slices differ. The noise is Rician (magnitude
    of a complex Gaussian), as in magnitude MR images, so the background is not flat.
    """
    air, bone, fat, csf, grey, white = signal
    x, y = _axes(rows, columns, spacing)
    img = np.full((rows, columns), air, dtype=np.float32)
    size = 0.55 + 0.45 * np.sin(np.pi * min(max(t, 0.05), 0.95))
    a, b = 78.0 * size, 96.0 * size
    img[_ellipse(x, y, 0.0, 0.0, a, b)] = fat
    img[_ellipse(x, y, 0.0, 0.0, a - 5.0, b - 5.0)] = bone
    img[_ellipse(x, y, 0.0, 0.0, a - 11.0, b - 11.0)] = csf
    img[_ellipse(x, y, 0.0, 0.0, a - 14.0, b - 14.0)] = grey
    img[_ellipse(x, y, 0.0, 0.0, a - 22.0, b - 22.0)] = white
    vent = max(0.0, np.sin(np.pi * t) - 0.3)
    if vent > 0:
        for side in (-1.0, 1.0):
            img[_ellipse(x, y, side * 9.0, -6.0, 5.0 * vent + 2.0, 24.0 * vent + 4.0)] = csf
    re = img + rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(noise)
    im = rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(noise)
    return np.sqrt(re * re + im * im)


def _referenced(seed: int, *parts: object, sop_class: str = MRImageStorage) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = _uid(seed, *parts)
    return item


def request_attributes(seed: int, study: int, accession: str, prefix: str) -> Sequence:
    """A RequestAttributesSequence item: IDs of the order, which the basic profile removes
    or replaces, nested one level down where a flat tag list does not reach."""
    item = Dataset()
    item.AccessionNumber = accession
    item.RequestedProcedureID = f"{prefix}RP{study:05d}"
    item.ScheduledProcedureStepID = f"{prefix}SPS{study:05d}"
    item.RequestedProcedureDescription = "MRI HEAD WITHOUT CONTRAST"
    item.StudyInstanceUID = _uid(seed, study, "requested")
    return Sequence([item])


def _private_block(ds: Dataset, p: Patient, day: date) -> None:
    """A vendor-like private block whose bytes quote the patient, as CSA headers do."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    header = (f"PatientName={p.name};PatientID={p.patient_id};"
              f"Date={day:%Y%m%d};Coil=HeadNeck_20\0").encode("ascii")
    block.add_new(0x10, "OB", header + (b"\0" if len(header) % 2 else b""))


def mr_dataset(seed: int, study: int, series: int, index: int, count: int, *,
               rows: int = 256, columns: int = 256,
               rng: np.random.Generator | None = None) -> Dataset:
    """Slice ``index`` of ``count`` in MR series ``series`` of study ``study``."""
    if rng is None:
        rng = np.random.default_rng([seed, study, series, index, 1])
    spec = SERIES_KINDS[series % len(SERIES_KINDS)]
    p = patient(seed, study)
    day = p.ct_day + timedelta(days=7)
    fov = 230.0
    spacing = fov / columns
    thickness, gap = 5.0, 1.0
    z = -40.0 + (thickness + gap) * index
    t = index / max(count - 1, 1)

    study_date = day.strftime("%Y%m%d")
    study_time = f"{p.hour:02d}3000"
    series_time = f"{p.hour:02d}{32 + 4 * series:02d}00"
    seconds = p.hour * 3600 + (32 + 4 * series) * 60 + index * 1.5
    content_time = (f"{int(seconds) // 3600:02d}{int(seconds) // 60 % 60:02d}"
                    f"{int(seconds) % 60:02d}.{round(seconds % 1 * 1e6):06d}")
    accession = f"SYM{seed % 1000:03d}{study:05d}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    sop_uid = _uid(seed, study, series, index)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = content_time
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = study_time
    ds.SeriesTime = series_time
    ds.AcquisitionTime = ds.ContentTime = content_time
    ds.AccessionNumber = accession
    ds.Modality = "MR"
    ds.Manufacturer = _MANUFACTURER
    ds.InstitutionName = _INSTITUTION
    ds.InstitutionAddress = "1 Example Road, Nowhere"
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StationName = "SYNMR01"
    ds.StudyDescription = "MRI HEAD WITHOUT CONTRAST"
    ds.SeriesDescription = spec.description
    ds.InstitutionalDepartmentName = "Neuroradiology"
    ds.PerformingPhysicianName = "PERFORMER^SYNTHETIC"
    ds.OperatorsName = "OPERATOR^SYNTHETIC"
    ds.ManufacturerModelName = "Phantom MR 1.5T"
    ds.ReferencedPerformedProcedureStepSequence = Sequence([
        _referenced(seed, study, "mpps", sop_class="1.2.840.10008.3.1.2.3.3")])
    ds.ReferencedImageSequence = Sequence([_referenced(seed, study, "localizer", k)
                                           for k in range(3)])
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth.strftime("%Y%m%d")
    ds.PatientSex = p.sex
    ds.PatientAge = p.age_on(day)
    ds.PatientSize = _ds(p.size_m)
    ds.PatientWeight = str(p.weight_kg)
    ds.BodyPartExamined = "HEAD"
    ds.ScanningSequence = spec.scanning_sequence.split("\\")
    ds.SequenceVariant = spec.sequence_variant.split("\\")
    ds.ScanOptions = ["SAT1"] if spec.ti is None else ["IR"]
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = f"*{spec.protocol.split('_')[1]}2d1_{spec.echo_train}"
    ds.AngioFlag = "N"
    ds.SliceThickness = _ds(thickness)
    ds.RepetitionTime = _ds(spec.tr)
    ds.EchoTime = _ds(spec.te)
    if spec.ti is not None:
        ds.InversionTime = _ds(spec.ti)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "63.676"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "1.5"
    ds.SpacingBetweenSlices = _ds(thickness + gap)
    ds.EchoTrainLength = str(spec.echo_train)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "150"
    ds.DeviceSerialNumber = f"SN{(seed + 7) % 100000:05d}"
    ds.SoftwareVersions = "synthetic-1"
    ds.ProtocolName = spec.protocol
    ds.TransmitCoilName = "Body"
    ds.ReceiveCoilName = "HeadNeck_20"
    ds.AcquisitionMatrix = [0, columns, rows, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = _ds(spec.flip)
    ds.SAR = _ds(round(float(rng.uniform(0.2, 2.5)), 4))
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(seed, study)
    ds.SeriesInstanceUID = _uid(seed, study, series)
    ds.StudyID = f"MR{study + 1}"
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
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = str(spec.window_center)
    ds.WindowWidth = str(spec.window_width)
    ds.BurnedInAnnotation = "NO"
    ds.RequestAttributesSequence = request_attributes(seed, study, accession, "M")
    ds.PerformedProcedureStepStartDate = study_date
    ds.PerformedProcedureStepStartTime = study_time
    ds.PerformedProcedureStepID = f"MPPS{study:05d}"
    _private_block(ds, p, day)
    img = brain_signal(rows, columns, spacing, t, spec.signal, 30.0, rng)
    ds.PixelData = np.clip(np.rint(img), 0, 4095).astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def iter_mr_corpus(total: int, seed: int = 0, *, studies: int = 5, series_per_study: int = 3,
                   rows: int = 256, columns: int = 256) -> Iterator[CTInstance]:
    """Yield ``total`` MR instances as Part 10 bytes, series by series, study by study.

    Instances come as :class:`~dicom_deid.corpus.ct.CTInstance` (UIDs plus bytes; the
    name is historical, nothing in it is CT-specific).
    """
    for study, series, count in _layout(total, studies, series_per_study):
        rng = np.random.default_rng([seed, study, series, 1])
        for index in range(count):
            ds = mr_dataset(seed, study, series, index, count, rows=rows, columns=columns,
                            rng=rng)
            yield CTInstance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                             str(ds.SOPInstanceUID), _to_bytes(ds))


def mr_corpus(total: int, seed: int = 0, **kwargs: int) -> list[CTInstance]:
    """All of :func:`iter_mr_corpus` as a list."""
    return list(iter_mr_corpus(total, seed, **kwargs))
