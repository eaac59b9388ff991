"""Verification sampling: check a de-identification run on a reproducible random sample.

Why a sample, and why here: the de-identification engine checks itself, but a check that
shares the engine's view of the data (its keyword lists, its traversal, its OCR) misses
exactly what the engine misses. This package looks at the result only from outside, the
way a reviewer on Google Cloud would: through DICOMweb (QIDO-RS and WADO-RS) on the
source and destination stores, with no access to the engine, the server or the
de-identification key. (It borrows three pieces of the engine's client API, which the
import-graph test allows: rendering a frame to grey, finding Tesseract's model, and
approximate matching of OCR text, so that the verifier and the de-identifier agree on
what a frame shows and on what counts as a misread, not on what to look for.)

How pairs are found: the destination has new UIDs (an HMAC of a key the Airflow side does
not know), so a sampled destination instance is matched to its source through attributes
that de-identification keeps: SOP Class, matrix size, frame count, instance / series /
acquisition numbers and slice position. When more than one source instance fits, the
SHA-256 of the pixel data decides (metadata-only de-identification copies it byte for
byte); without an exact match (pixel redaction), the candidate whose decoded pixels
equal the destination's almost everywhere (90 %, 5 points ahead of the next). Candidates
with identical pixels and attributes (twins) cannot be told apart: the destination is
checked against each and fails a check failing against any. A destination instance that
cannot be matched otherwise is a row with status ``unmatched``: counted, and a failure.

What is checked per pair (one boolean column and one reason column each; reasons name
attributes and rules, never values):

* ``uids_changed``: Study, Series, SOP Instance and Frame of Reference UIDs differ from
  the source, no source UID occurs in the destination header, and the mapping is
  consistent over the sample (one source study -> one destination study, and back; the
  same for series);
* ``phi_removed``: each identifying attribute is absent, empty or different in the
  destination, and none of the source's identifying values (4 characters or more)
  occurs anywhere in the destination header bytes (pixel data excluded);
* ``dates_ok``: with date shifting, every date differs and the intervals between the
  study date and the birth, series, acquisition and content dates are kept; without,
  every source date is gone, empty or replaced;
* ``clinical_kept``: modality, body part, geometry, windowing, rescale and pixel
  description equal the source's where the source has them;
* ``pixels_clean`` (only where pixel redaction was requested: every instance, or the
  modalities routed to it; empty elsewhere): frame 0 of the
  destination, rendered to 8-bit grey and read with Tesseract, contains none of the
  source's identifying values (letters and digits only, 5 characters or more, allowing
  one misread per six characters). Whole-frame OCR misses text on noisy backgrounds,
  so a pass here is evidence, not proof; a failure is a certain leak.

Nothing with PHI leaves this package: the CSV holds a SHA-256 prefix of the source SOP
Instance UID (never the UID), destination UIDs, modalities, booleans, counts and
reasons; logs hold counts; exceptions name the step and the HTTP status only.

The modules, lowest first (each imports only those above it):

* :mod:`.errors`: ``VerificationError``, the one exception a run raises;
* :mod:`.dicomweb`: QIDO/WADO calls with nothing identifying in logs or exceptions;
* :mod:`.values`: comparable forms of values from pydicom and the DICOM JSON model;
* :mod:`.matching`: pairing a destination instance with its source;
* :mod:`.checks`: the header checks (UIDs, PHI, dates, clinical attributes);
* :mod:`.pixel_text`: the burned-in-text check (OCR of the destination frame);
* :mod:`.run`: ``sample_and_verify``, the CSV table and ``read_verification_table``.

Import names from the module that holds them; this package exports nothing itself.
"""
