"""engine.dictionary answers what pydicom.datadict answers, for every tag it knows.

The byte path reads pydicom's generated dictionary module by its file (so that
pydicom itself is never imported); this checks the lookups built on it against
pydicom's own, for every standard tag, every repeating-group row and tags neither
knows.
"""

from __future__ import annotations

import pydicom.datadict as pd
from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary

from dicom_deid.engine import dictionary


def _pydicom_vr(tag: int) -> str | None:
    try:
        return pd.dictionary_VR(tag)
    except KeyError:
        return None


def test_every_standard_tag_has_pydicom_s_vr_and_keyword() -> None:
    assert len(DicomDictionary) > 4000
    for tag in DicomDictionary:
        assert dictionary.vr(tag) == pd.dictionary_VR(tag)
        assert dictionary.keyword(tag) == pd.keyword_for_tag(tag)
        keyword = pd.keyword_for_tag(tag)
        assert dictionary.tag_for_keyword(keyword) == pd.tag_for_keyword(keyword)


def test_repeating_groups_private_and_unknown_tags_match_pydicom() -> None:
    tags = [int(mask.replace("x", fill), 16) for mask in RepeatersDictionary
            for fill in "02E"]
    tags += [0x00091010, 0x7FE11010, 0x00190010, 0x00080001, 0xFFFFFFFF]
    for tag in tags:
        found = dictionary.entry(tag)
        assert (found[0] if found else None) == _pydicom_vr(tag), hex(tag)
        assert dictionary.vr_or_un(tag) == (_pydicom_vr(tag) or "UN")
        assert dictionary.keyword(tag) == pd.keyword_for_tag(tag)
    assert dictionary.tag_for_keyword("NotAKeyword") is None
