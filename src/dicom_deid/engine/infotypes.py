"""Finding identifying text inside DICOM values, by Cloud DLP infoType name.

Cloud DLP is not available offline, and the libraries that recognise names in prose
need language models downloaded from outside the package registries. So detection
here is deliberately explainable and local:

* PHONE_NUMBER: Google's ``phonenumbers`` library (the port of libphonenumber),
  lenient matching with US as the default region.
* EMAIL_ADDRESS, URL, IP_ADDRESS, US_SOCIAL_SECURITY_NUMBER: regular expressions.
* DATE: numeric (``2021-03-04``, ``03/04/2021``, ``04.03.2021``, ``20210304``) and
  written (``4 March 2021``, ``Mar 4, 2021``, ``March 2021``) forms.
* AGE: ``45-year-old``, ``45 yo``, ``age 45``, DICOM ``045Y``.
* MEDICAL_RECORD_NUMBER: a value after an ID cue (``MRN``, ``ID``, ``accession``...),
  long digit runs, and identifier-shaped tokens mixing letters and 4+ digits
  (sizes such as ``512x512`` and values with units are left alone).
* PERSON_NAME: words after a title or role cue (``Dr``, ``Mrs``, ``patient``,
  ``seen by``...), and DICOM ``FAMILY^GIVEN`` forms.
* LOCATION: street addresses and named institutions (``... Hospital``, ``Clinic``).
* The instance's own identifying values (its patient's name parts, IDs, accession,
  institution, physicians' names) wherever they occur in its free text, with the
  infoType of the attribute they came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers

# Whole attributes whose value *is* an identifier of a given infoType, for the
# DEIDENTIFY_TAG_CONTENTS profile. PN values are PERSON_NAME, DA/DT are DATE and AS
# is AGE by VR; everything else of a text VR is searched as free text.
ATTRIBUTE_INFO_TYPES: dict[str, str] = {
    **dict.fromkeys((
        "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID",
        "MedicalRecordLocator", "AdmissionID", "RequestedProcedureID", "PerformedProcedureStepID",
        "ScheduledProcedureStepID", "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest", "ServiceEpisodeID",
        "DeviceSerialNumber", "PlateID", "CassetteID", "GantryID", "DetectorID", "StationName",
        "RETIRED_OtherPatientIDs", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
        "IssuerOfAdmissionID",
    ), "MEDICAL_RECORD_NUMBER"),
    **dict.fromkeys((
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PatientAddress",
        "RegionOfResidence", "CountryOfResidence", "MilitaryRank", "BranchOfService",
        "CurrentPatientLocation", "PatientInstitutionResidence", "ScheduledStudyLocation",
        "ScheduledProcedureStepLocation", "PerformedLocation", "ResponsibleOrganization",
    ), "LOCATION"),
    **dict.fromkeys(("PatientTelephoneNumbers",), "PHONE_NUMBER"),
    **dict.fromkeys(("PatientAge",), "AGE"),
}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    info_type: str


_MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
           r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_NAME = r"[A-Z][A-Za-z'\-]+(?![\w])|[A-Z]\."
_UNIT = re.compile(r"\d+(?:[.,]\d+)?(?:x\d+(?:[.,]\d+)?)+|\d+(?:[.,]\d+)?"
                   r"(?:mm|cm|ms|kv|kvp|mas|ma|hz|khz|mhz|t|mgy|gy|s|sec|min|ml|deg|bpm)",
                   re.IGNORECASE)

_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("EMAIL_ADDRESS", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("URL", re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)),
    ("IP_ADDRESS", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    ("US_SOCIAL_SECURITY_NUMBER", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("US_SOCIAL_SECURITY_NUMBER",
     re.compile(r"(?i:\bSSN|social security(?: number)?)\s*[:#]?\s*(\d{9})\b")),
    ("DATE", re.compile(r"\b(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b")),
    ("DATE", re.compile(r"\b(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.]"
                        r"(?:19|20)?\d{2}\b")),
    ("DATE", re.compile(r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b")),
    ("DATE", re.compile(r"\b(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+" + _MONTHS
                        + r",?\s+(?:19|20)\d{2}\b", re.IGNORECASE)),
    ("DATE", re.compile(r"\b" + _MONTHS + r"\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?\s+"
                        r"(?:19|20)\d{2}\b", re.IGNORECASE)),
    ("DATE", re.compile(r"\b" + _MONTHS + r",?\s+(?:19|20)\d{2}\b", re.IGNORECASE)),
    ("AGE", re.compile(r"\b\d{1,3}[\s-]*(?:years?|yrs?|y)[\s-]*old\b", re.IGNORECASE)),
    ("AGE", re.compile(r"\b\d{1,3}\s?(?:y/?o|yo)\b", re.IGNORECASE)),
    ("AGE", re.compile(r"(?<=\bage )\d{1,3}\b|(?<=\bage: )\d{1,3}\b|(?<=\baged )\d{1,3}\b",
                       re.IGNORECASE)),
    ("AGE", re.compile(r"\b0\d\d[DWMY]\b")),
    ("MEDICAL_RECORD_NUMBER", re.compile(
        r"(?i:\b(?:MRN|MR#|MR no\.?|medical record(?: number)?|patient id|pid|id|accession"
        r"(?: number| no\.?)?|acc(?:ession)?#?|record(?: number| no\.?)?)\s*[:#]?\s*)"
        r"([A-Z0-9][A-Z0-9-]{3,})", re.IGNORECASE)),
    ("MEDICAL_RECORD_NUMBER", re.compile(r"\b\d{7,}\b")),
    ("PERSON_NAME", re.compile(
        r"(?i:(?:\b(?:dr|doctor|mr|mrs|ms|miss|prof|professor|patient|pt|physician|radiologist|"
        r"technologist|tech|nurse|operator|surgeon|attending|resident|name|seen by|referred by|"
        r"signed by|read by|reviewed by|dictated by|performed by|ordered by)\b\.?:?\s+)+)"
        r"((?:" + _NAME + r")(?:[\s^,]+(?:" + _NAME + r")){0,2})")),
    ("PERSON_NAME", re.compile(r"\b[A-Za-z][A-Za-z'\-]*\^[A-Za-z'\-^]+")),
    ("LOCATION", re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][A-Za-z]*\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|"
        r"Lane|Ln|Drive|Way|Court|Ct|Place|Pl|Terrace|Parkway|Square|Sq)\b\.?")),
    ("LOCATION", re.compile(
        r"\b(?:[A-Z][A-Za-z'&-]*\s+){1,4}(?:Hospital|Clinic|Medical Center|Medical Centre|"
        r"Infirmary|Health System|Healthcare|Imaging Center|Radiology)\b")),
)
_TOKEN = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9-]{5,}\b")


def _identifier_tokens(text: str) -> Iterable[Span]:
    """Tokens shaped like IDs: letters and at least four digits, not a size or a unit."""
    for m in _TOKEN.finditer(text):
        token = m.group()
        digits = sum(c.isdigit() for c in token)
        if digits >= 4 and digits < len(token) and not _UNIT.fullmatch(token):
            yield Span(m.start(), m.end(), "MEDICAL_RECORD_NUMBER")


def find(text: str, known: dict[str, str] | None = None) -> list[Span]:
    """Spans of identifying text in ``text``, non-overlapping, in order.

    ``known`` maps the instance's own identifying values (upper-case) to their
    infoType; every occurrence of one of them is a span whatever its shape.
    """
    spans: list[Span] = []
    for info_type, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            start, end = (m.start(1), m.end(1)) if m.lastindex else (m.start(), m.end())
            if end > start:
                spans.append(Span(start, end, info_type))
    for m in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE):
        # Lenient matching also takes sizes such as "512x512 1" for a number with an
        # extension; a phone number written in a report has no letters in it.
        if not any(c.isalpha() for c in m.raw_string):
            spans.append(Span(m.start, m.end, "PHONE_NUMBER"))
    spans.extend(_identifier_tokens(text))
    if known:
        upper = text.upper()
        for value, info_type in known.items():
            start = upper.find(value)
            while start >= 0:
                end = start + len(value)
                before = upper[start - 1] if start else " "
                after = upper[end] if end < len(upper) else " "
                if not before.isalnum() and not after.isalnum():
                    spans.append(Span(start, end, info_type))
                start = upper.find(value, end)
    return _merge(spans)


def _merge(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one; the infoType of the longest one wins."""
    spans.sort(key=lambda s: (s.start, -(s.end - s.start)))
    out: list[Span] = []
    for span in spans:
        if out and span.start < out[-1].end:
            last = out[-1]
            if span.end > last.end:
                longer = span if span.end - span.start > last.end - last.start else last
                out[-1] = Span(last.start, span.end, longer.info_type)
            continue
        out.append(span)
    return out
