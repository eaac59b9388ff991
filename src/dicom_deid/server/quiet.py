"""No DICOM value reaches the server's output: its stderr, stdout and log lines.

Libraries quote the values they choke on. pydicom warns and logs ``Invalid value for
VR UI: '<value>'`` or ``Unknown encoding '<value>'`` on reads the server makes in many
places (ingest, metadata, QIDO, retrieve, rendering, export), exception messages do the
same in tracebacks, and a deeply nested sequence made pydicom log one line per level
(hundreds per read). Wrapping every read would miss the next one, so :func:`install`
sets, once per process and before any request, rules that hold for all of them:

- warnings are ignored, and ``PYTHONWARNINGS=ignore`` is set for child processes (the
  spawned de-identification pool inherits the environment, not the filters);
- pydicom's logger says nothing (its messages are built from values);
- every log record is rewritten as it is made: a logger outside this project and
  uvicorn has its message withheld (its level and name stay), and an exception or
  stack attached to any record becomes one line, its type and place
  (:func:`errors.describe`), never its message;
- uncaught exceptions (main thread, other threads, unraisable) are logged that way too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from . import errors

log = logging.getLogger("dicom_deid.server")

#: Loggers whose messages are written by code that never puts a value in them.
_OWN = ("dicom_deid", "uvicorn")


def install() -> None:
    """Apply the rules above to this process (idempotent); its children inherit them by
    fork, or by the environment when spawned (they call this again, from the pool's
    initializer, for the logging rules)."""
    os.environ["PYTHONWARNINGS"] = "ignore"
    warnings.simplefilter("ignore")
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.setLevel(logging.CRITICAL + 1)
    # A filter as well as the level: importing the engine sets the level back to ERROR.
    pydicom_log.addFilter(_drop)
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "quiet", False):
        logging.setLogRecordFactory(_scrubbing(factory))
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread
    sys.unraisablehook = _unraisable


def _drop(_record: logging.LogRecord) -> bool:
    return False


def _own(name: str) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in _OWN)


def _scrubbing(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        scrub(record)
        return record

    make.quiet = True  # type: ignore[attr-defined]
    return make


def scrub(record: logging.LogRecord) -> None:
    """Reduce ``record`` to one line that cannot hold a value: see the module's rules.

    The message is formatted here, so a bad format cannot make logging print the
    arguments itself ("--- Logging error ---" shows them)."""
    if _own(record.name):
        try:
            text = record.getMessage().rstrip()
        except Exception:
            text = f"unformattable message from {record.name}"
    else:
        text = f"{record.levelname} from {record.name} withheld: it may quote DICOM values"
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None:
        text = f"{text} ({errors.describe(exc)})"
    record.msg, record.args = text, ()
    record.exc_info, record.exc_text, record.stack_info = None, None, None


def _uncaught(kind: type[BaseException], exc: BaseException, _tb: object) -> None:
    log.critical("uncaught exception: %s", errors.describe(exc) if exc else kind.__name__)


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    exc = args.exc_value
    log.error("uncaught exception in a thread: %s",
              errors.describe(exc) if exc else args.exc_type.__name__)


def _unraisable(args: Any) -> None:  # sys.UnraisableHookArgs; its object's repr may quote
    exc = args.exc_value
    log.warning("exception ignored: %s",
                errors.describe(exc) if exc else getattr(args.exc_type, "__name__", "?"))
