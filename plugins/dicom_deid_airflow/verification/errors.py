"""The exception a verification run raises, in a module of its own.

Every layer of the package raises it (a DICOMweb call, the OCR model, the run), so it
sits below all of them and none has to import another just to raise it.
"""

from __future__ import annotations

__all__ = ["VerificationError"]


class VerificationError(RuntimeError):
    """Verification could not run (a store unreachable, an instance unreadable).

    The message names the step and the HTTP status or exception class only: no UIDs
    of the source, no values.
    """
