"""Which step failed on which element: the reason an instance fails, with no value in it.

On-call engineers read a failed instance's reason to tell a corrupt file from a bug,
so every failure says the step (reading, a profile action, pixel decode, pixel
encode, writing) and the element's tag with its dictionary keyword, a path of tags
for an element inside sequences. Exception messages from pydicom and codecs quote
values, so only the exception's type travels with it.
"""

from __future__ import annotations

from .dictionary import keyword as keyword_for_tag

READING, PROFILE, PIXEL_DECODE, PIXEL_ENCODE, WRITING = (
    "reading", "profile action", "pixel decode", "pixel encode", "writing")


def tag_label(tag: int) -> str:
    """``(0010,0010) PatientName``: the tag and, for a public one, its keyword."""
    keyword = keyword_for_tag(tag) if not tag >> 16 & 1 else ""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {keyword}" if keyword else "")


class ElementFailure(Exception):
    """``step`` failed on the element at ``path`` (outermost tag first)."""

    def __init__(self, step: str, tag: int, cause: BaseException | str) -> None:
        self.step = step
        self.path = [tag]
        self.cause = cause if isinstance(cause, str) else type(cause).__name__
        super().__init__(step, tag)

    def inside(self, tag: int) -> ElementFailure:
        """The same failure, seen from the sequence ``tag`` that holds the element."""
        self.path.insert(0, tag)
        return self

    def __str__(self) -> str:
        where = " > ".join(tag_label(t) for t in self.path)
        return f"{self.step} failed at {where}: {self.cause}"
