"""Synthetic multi-frame instances: Enhanced MR Image Storage, 30-60 frames of 256x256x16.

Enhanced (multi-frame) objects are where flat, tag-list de-identification falls short:
a few megabytes of pixels in one file, and PHI-shaped values spread through nested
functional groups -- a frame acquisition date-time in every per-frame item, UIDs in
the dimension organisation and in referenced-image items inside the shared groups,
request attributes with IDs. A tool that only looks at top-level elements leaves
those behind; a tool that materialises every frame pays for it in memory.

Layout: each series is one instance (one acquisition, as scanners write enhanced
objects); its frame count is drawn from ``frames`` per series. Patients are those of
:mod:`dicom_deid.corpus.ct` for the same seed and study index (scanned two weeks after
the CT study). Everything is derived from the seed, as in the other corpus modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

from .ct import _INSTITUTION, _MANUFACTURER, CTInstance, _ds, _layout, _to_bytes
from .mr import SERIES_KINDS, brain_signal, patient, request_attributes


def _uid(seed: int, *parts: object) -> str:
    path = "/".join(["dicom-deid-mf", str(seed), *map(str, parts)])
    return str(generate_uid(entropy_srcs=[path]))


def _item(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _dt(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S.%f")


def frame_count(seed: int, study: int, series: int, frames: tuple[int, int]) -> int:
    """The number of frames of one series' instance, in ``frames`` (inclusive)."""
    lo, hi = frames
    return int(np.random.default_rng([seed, study, series, 2]).integers(lo, hi + 1))


def enhanced_mr_dataset(seed: int, study: int, series: int, n_frames: int, *,
                        rows: int = 256, columns: int = 256) -> Dataset:
    """The one instance of series ``series`` of study ``study``: ``n_frames`` frames."""
    rng = np.random.default_rng([seed, study, series, 3])
    spec = SERIES_KINDS[series % len(SERIES_KINDS)]
    p = patient(seed, study)
    day = p.ct_day + timedelta(days=14)
    start = datetime(day.year, day.month, day.day, p.hour, 45 + series % 10, 0)
    fov = 230.0
    spacing = fov / columns
    thickness = 3.0
    accession = f"SYE{seed % 1000:03d}{study:05d}"
    study_uid = _uid(seed, study)
    series_uid = _uid(seed, study, series)
    sop_uid = _uid(seed, study, series, "instance")
    frame_of_ref = _uid(seed, study, "frame-of-reference")
    dim_org = _uid(seed, study, series, "dimension-organization")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.InstanceCreationDate = day.strftime("%Y%m%d")
    ds.InstanceCreationTime = start.strftime("%H%M%S")
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = day.strftime("%Y%m%d")
    ds.StudyTime = f"{p.hour:02d}4000"
    ds.SeriesTime = ds.ContentTime = start.strftime("%H%M%S")
    ds.AcquisitionDateTime = _dt(start)
    ds.AccessionNumber = accession
    ds.Modality = "MR"
    ds.Manufacturer = _MANUFACTURER
    ds.InstitutionName = _INSTITUTION
    ds.InstitutionAddress = "1 Example Road, Nowhere"
    ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
    ds.StationName = "SYNMR02"
    ds.StudyDescription = "MRI HEAD 3D"
    ds.SeriesDescription = f"3D {spec.description}"
    ds.OperatorsName = "OPERATOR^SYNTHETIC"
    ds.ManufacturerModelName = "Phantom MR 3T"
    ds.ReferencedPerformedProcedureStepSequence = Sequence([_item(
        ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.3",
        ReferencedSOPInstanceUID=_uid(seed, study, "mpps"))])
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth.strftime("%Y%m%d")
    ds.PatientSex = p.sex
    ds.PatientAge = p.age_on(day)
    ds.PatientWeight = str(p.weight_kg)
    ds.BodyPartExamined = "HEAD"
    ds.DeviceSerialNumber = f"SN{(seed + 11) % 100000:05d}"
    ds.SoftwareVersions = "synthetic-1"
    ds.ProtocolName = f"{spec.protocol}_3d"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"MRE{study + 1}"
    ds.SeriesNumber = 100 + series
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = frame_of_ref
    ds.PositionReferenceIndicator = ""
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = "3"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.AcquisitionContrast = "T1" if series % len(SERIES_KINDS) == 0 else "T2"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.ImageComments = f"Acquired for {p.name.replace('^', ' ').title()}"
    ds.BurnedInAnnotation = "NO"
    ds.RequestAttributesSequence = request_attributes(seed, study, accession, "E")

    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=dim_org)])
    ds.DimensionIndexSequence = Sequence([
        _item(DimensionOrganizationUID=dim_org, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=dim_org, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111,
              DimensionDescriptionLabel="In-Stack Position Number"),
    ])

    timing = _item(RepetitionTime=_ds(spec.tr), FlipAngle=_ds(spec.flip),
                   EchoTrainLength=spec.echo_train, RFEchoTrainLength=spec.echo_train,
                   GradientEchoTrainLength=0,
                   SpecificAbsorptionRateSequence=Sequence([_item(
                       SpecificAbsorptionRateDefinition="IEC_HEAD",
                       SpecificAbsorptionRateValue=round(float(rng.uniform(0.2, 2.5)), 4))]))
    shared = _item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[_ds(spacing), _ds(spacing)],
                                              SliceThickness=_ds(thickness))]),
        PlaneOrientationSequence=Sequence([_item(
            ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])]),
        MRImageFrameTypeSequence=Sequence([_item(
            FrameType=["ORIGINAL", "PRIMARY", "M", "NONE"], PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
            ComplexImageComponent="MAGNITUDE", AcquisitionContrast=ds.AcquisitionContrast)]),
        MRTimingAndRelatedParametersSequence=Sequence([timing]),
        MREchoSequence=Sequence([_item(EffectiveEchoTime=spec.te)]),
        PixelValueTransformationSequence=Sequence([_item(
            RescaleIntercept="0", RescaleSlope="1", RescaleType="US")]),
        FrameVOILUTSequence=Sequence([_item(WindowCenter=str(spec.window_center),
                                            WindowWidth=str(spec.window_width))]),
        ReferencedImageSequence=Sequence([_item(
            ReferencedSOPClassUID="1.2.840.10008.5.1.4.1.1.4",
            ReferencedSOPInstanceUID=_uid(seed, study, "localizer", k),
            PurposeOfReferenceCodeSequence=Sequence([_item(
                CodeValue="121311", CodingSchemeDesignator="DCM",
                CodeMeaning="Localizer")])) for k in range(3)]),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    planes = []
    for k in range(n_frames):
        moment = start + timedelta(seconds=2.5 * k)
        per_frame.append(_item(
            FrameContentSequence=Sequence([_item(
                FrameAcquisitionNumber=k + 1,
                FrameReferenceDateTime=_dt(moment),
                FrameAcquisitionDateTime=_dt(moment),
                FrameAcquisitionDuration=2500.0,
                StackID="1", InStackPositionNumber=k + 1,
                DimensionIndexValues=[1, k + 1])]),
            PlanePositionSequence=Sequence([_item(ImagePositionPatient=[
                _ds(-(columns - 1) * spacing / 2), _ds(-(rows - 1) * spacing / 2),
                _ds(-60.0 + thickness * k)])]),
        ))
        planes.append(brain_signal(rows, columns, spacing, k / max(n_frames - 1, 1),
                                   spec.signal, 25.0, rng))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)

    ds.NumberOfFrames = n_frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.clip(np.rint(np.stack(planes)), 0, 4095).astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def iter_multiframe_corpus(total: int, seed: int = 0, *, studies: int = 5,
                           frames: tuple[int, int] = (30, 60), rows: int = 256,
                           columns: int = 256) -> Iterator[CTInstance]:
    """Yield ``total`` Enhanced MR instances (one per series), spread over ``studies``."""
    if frames[0] < 1 or frames[1] < frames[0]:
        raise ValueError(f"bad frame range {frames}")
    for study, _, count in _layout(total, studies, 1):
        for series in range(count):
            n = frame_count(seed, study, series, frames)
            ds = enhanced_mr_dataset(seed, study, series, n, rows=rows, columns=columns)
            yield CTInstance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                             str(ds.SOPInstanceUID), _to_bytes(ds))


def multiframe_corpus(total: int, seed: int = 0, **kwargs: object) -> list[CTInstance]:
    """All of :func:`iter_multiframe_corpus` as a list."""
    return list(iter_multiframe_corpus(total, seed, **kwargs))
