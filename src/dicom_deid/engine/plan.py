"""A DeidentifyConfig turned into the decisions the engine makes per attribute.

The config is the Cloud Healthcare API's own JSON (checked against its schema
first), so one file drives both backends. Parsing it once per run, rather than per
instance, keeps the per-instance work to table lookups.

Where the API's documentation leaves a choice open, the choice made here is:

* ``keepList`` / ``removeList`` may be given with a ``filterProfile`` (the API makes
  them alternatives); they then override the profile for the tags they name.
* A ``keepList`` alone means what the API documents: "List of tags to keep. Remove all
  other tags." Only the listed tags stay, plus the SOP Class and SOP Instance UIDs the
  file meta must repeat (PS3.10) so the output stays a valid file; no profile adds
  anything, not even the de-identification marks. A ``removeList`` alone: "List of
  tags to remove. Keep all other tags." (the keep-all profile minus those tags).
* Whatever keeps a UID (a keep list, the keep-all profile) still replaces it unless
  ``skipIdRedaction`` is set: the API regenerates UIDs "by default" and names
  ``skipIdRedaction`` as the way to keep them.
* ``skipIdRedaction`` keeps *every* UID (the Retain UIDs Option), not only the four
  instance UIDs the API names: keeping those four while replacing the UIDs that
  refer to them would leave references pointing nowhere.
* A ``dateShiftConfig`` in ``config.text`` also selects the Retain Longitudinal
  Temporal Information with Modified Dates Option of the basic profile: dates are
  shifted per patient instead of emptied.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import re2

from ..api_schema import ConfigError, validate
from .dictionary import tag_for_keyword

KEEP_ALL = "KEEP_ALL_PROFILE"
#: Not an API enum value: the profile of a ``keepList`` given without a
#: ``filterProfile`` (keep the listed tags, remove all others).
KEEP_LIST = "KEEP_LIST_ONLY"
MINIMAL = "MINIMAL_KEEP_LIST_PROFILE"
BASIC = "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"
TAG_CONTENTS = "DEIDENTIFY_TAG_CONTENTS"

# What Cloud DLP calls the infoTypes this engine detects (see infotypes.py).
INFO_TYPES = ("PERSON_NAME", "DATE", "AGE", "PHONE_NUMBER", "EMAIL_ADDRESS", "LOCATION",
              "MEDICAL_RECORD_NUMBER", "US_SOCIAL_SECURITY_NUMBER", "URL", "IP_ADDRESS")
ALL_TEXT = "REDACT_ALL_TEXT"
SENSITIVE_TEXT = "REDACT_SENSITIVE_TEXT"
_METHODS = ("redactConfig", "characterMaskConfig", "replaceWithInfoTypeConfig",
            "cryptoHashConfig", "dateShiftConfig")


@dataclass(frozen=True)
class Transformation:
    """What to do with a span of detected text of some infoTypes."""

    method: str  # one of _METHODS
    info_types: frozenset[str]  # empty: any infoType
    mask: str = "*"
    key: bytes | None = None

    def applies_to(self, info_type: str) -> bool:
        return not self.info_types or info_type in self.info_types


@dataclass(frozen=True)
class CustomRegex:
    """A config ``customRegexes`` entry, compiled with RE2.

    RE2 is the syntax Google's de-identification takes for regexes (Cloud DLP's custom
    infoTypes, which the Healthcare API's image redaction builds on), and it matches in
    time linear in the text: a pattern such as ``(a+)+$`` made Python's backtracking
    ``re`` hold a worker for minutes on one line of burned-in text. Patterns that need
    backtracking (backreferences, lookaround) are refused as config errors."""

    pattern: re2._Regexp
    groups: tuple[int, ...] = ()

    def matches(self, text: str) -> bool:
        for match in self.pattern.finditer(text):
            if not self.groups or any(match.group(g) for g in self.groups):
                return True
        return False


@dataclass(frozen=True)
class ImagePlan:
    """``config.image`` parsed once per run."""

    mode: str = "REDACT_NO_TEXT"
    regexes: tuple[CustomRegex, ...] = ()

    @property
    def redacts(self) -> bool:
        """Whether pixels are searched at all (custom regexes apply in any mode)."""
        return self.mode in (ALL_TEXT, SENSITIVE_TEXT) or bool(self.regexes)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print the pattern to stderr; the error says it


def compile_re2(source: str, where: str) -> re2._Regexp:
    """``source`` compiled by RE2 (memory bounded by its ``max_mem``); a config error
    naming ``where`` and RE2's reason otherwise."""
    try:
        return re2.compile(source, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise ConfigError(where, f"not a valid RE2 regular expression ({reason[:200]}); "
                          "RE2 has no backreferences or lookaround") from None


def image_plan(image: dict | None, path: str = "config.image") -> ImagePlan:
    """Parse ``config.image``; a regex that does not compile is a config error."""
    image = image or {}
    regexes = []
    for i, entry in enumerate(image.get("customRegexes") or ()):
        where = f"{path}.customRegexes[{i}]"
        source = entry.get("pattern") or ""
        if not source:
            raise ConfigError(f"{where}.pattern", "is required")
        pattern = compile_re2(source, f"{where}.pattern")
        groups = tuple(entry.get("groupIndexes") or ())
        bad = [g for g in groups if not 0 <= g <= pattern.groups]
        if bad:
            raise ConfigError(f"{where}.groupIndexes",
                              f"group {bad[0]} does not exist (the pattern has {pattern.groups})")
        regexes.append(CustomRegex(pattern, groups))
    mode = image.get("textRedactionMode") or "REDACT_NO_TEXT"
    if mode == "TEXT_REDACTION_MODE_UNSPECIFIED":
        mode = "REDACT_NO_TEXT"
    return ImagePlan(mode, tuple(regexes))


@dataclass(frozen=True)
class Plan:
    """Everything the engine needs to de-identify one instance, decided once per run."""

    profile: str
    key: bytes
    keep: frozenset[int] = frozenset()
    remove: frozenset[int] = frozenset()
    retain_uids: bool = False
    retain_safe_private: bool = False
    date_key: bytes | None = None  # set: dates are shifted per patient, not emptied
    transformations: tuple[Transformation, ...] = ()
    exclude: frozenset[str] = frozenset()
    options: tuple[str, ...] = field(default=())
    image: ImagePlan = ImagePlan()
    # The profile's action per (tag, at top level, inside a replaced sequence), filled
    # as tags are met: the same few hundred tags recur in every instance of a run.
    decisions: dict[tuple[int, bool, bool], str] = field(
        default_factory=dict, compare=False, hash=False, repr=False)

    def transformation(self, info_type: str) -> Transformation | None:
        """The transformation for ``info_type``; the last one that names it wins."""
        if info_type in self.exclude:
            return None
        found = None
        for item in self.transformations:
            if item.applies_to(info_type):
                found = item
        return found


def parse_tag(text: str, path: str) -> int:
    """A tag given by keyword (``PatientID``) or hex (``00100020``, ``(0010,0020)``)."""
    value = text.strip()
    tag = tag_for_keyword(value)
    if tag is not None:
        return int(tag)
    digits = value.strip("()").replace(",", "").replace(" ", "")
    if len(digits) == 8:
        try:
            tag = int(digits, 16)
        except ValueError:
            tag = -1
        if 0 <= tag <= 0xFFFFFFFF:
            return tag
    raise ConfigError(path, "is neither a DICOM keyword nor an 8-digit hex tag")


def _key(text: str | None, path: str) -> bytes | None:
    if text is None:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise ConfigError(path, "must be base64") from None
    if len(raw) not in (16, 24, 32):
        raise ConfigError(path, "must be an AES-128/192/256 key (16, 24 or 32 bytes)")
    return raw


def _transformations(items: list[dict], path: str, default_key: bytes) -> list[Transformation]:
    out = []
    for i, item in enumerate(items):
        chosen = [m for m in _METHODS if m in item]
        if len(chosen) != 1:
            raise ConfigError(f"{path}[{i}]", "must set exactly one of " + ", ".join(_METHODS))
        method = chosen[0]
        body = item[method] or {}
        if "kmsWrapped" in body:
            raise ConfigError(f"{path}[{i}].{method}.kmsWrapped",
                              "Cloud KMS keys are not available locally; give cryptoKey")
        info_types = frozenset(item.get("infoTypes") or ())
        key = _key(body.get("cryptoKey"), f"{path}[{i}].{method}.cryptoKey") or default_key
        mask = body.get("maskingCharacter") or "*"
        if len(mask) != 1:
            raise ConfigError(f"{path}[{i}].{method}.maskingCharacter", "must be one character")
        out.append(Transformation(method, info_types, mask, key))
    return out


def build_plan(config: dict | None, key: bytes, *, retain_safe_private: bool = False) -> Plan:
    """Check ``config`` against the API schema and decide how to apply it.

    ``key`` is the run's secret: it keys UID replacement and, when the config gives
    no ``cryptoKey`` of its own, date shifting and hashing. The same key on the same
    input gives byte-identical output.
    """
    config = config or {}
    validate(config)
    dicom = config.get("dicom") or {}
    text = config.get("text") or {}
    profile = dicom.get("filterProfile") or KEEP_ALL
    if profile == "TAG_FILTER_PROFILE_UNSPECIFIED":
        profile = KEEP_ALL
    keep = frozenset(parse_tag(t, f"config.dicom.keepList.tags[{i}]")
                     for i, t in enumerate((dicom.get("keepList") or {}).get("tags") or ()))
    remove = frozenset(parse_tag(t, f"config.dicom.removeList.tags[{i}]")
                       for i, t in enumerate((dicom.get("removeList") or {}).get("tags") or ()))
    if dicom.get("filterProfile") is None and dicom.get("keepList") is not None:
        profile = KEEP_LIST
        # "Remove all other tags": the safe private elements too, unless listed.
        retain_safe_private = False
    transformations = _transformations(
        list(text.get("transformations") or ()), "config.text.transformations", key)
    transformations += _transformations(
        list(text.get("additionalTransformations") or ()),
        "config.text.additionalTransformations", key)
    date_key = next((t.key for t in transformations if t.method == "dateShiftConfig"), None)
    if not transformations:
        # The API's default for detected text: replace it with the infoType's name.
        transformations = [Transformation("replaceWithInfoTypeConfig", frozenset(), key=key)]
    retain_uids = bool(dicom.get("skipIdRedaction"))
    options = []
    if retain_uids:
        options.append("rtnUIDsOpt")
    if retain_safe_private:
        options.append("rtnSafePrivOpt")
    if date_key is not None:
        options.append("rtnLongModifDatesOpt")
    image = image_plan(config.get("image"))
    if image.mode in (ALL_TEXT, SENSITIVE_TEXT):
        options.append("cleanPixOpt")
    return Plan(
        profile=profile, key=key, keep=keep, remove=remove, retain_uids=retain_uids,
        retain_safe_private=retain_safe_private, date_key=date_key,
        transformations=tuple(transformations),
        exclude=frozenset(text.get("excludeInfoTypes") or ()),
        options=tuple(options), image=image)
