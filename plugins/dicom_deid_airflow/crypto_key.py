"""The pipeline's own crypto key: one secret that makes runs agree with each other.

Google generates a new date-shift key for every de-identification operation whose
``dateShiftConfig`` (or ``cryptoHashConfig``) names no ``cryptoKey``, so two nightly
runs would shift the same patient's dates by different amounts. An incremental
destination needs the same key in every run: it is kept in an Airflow Variable whose
name marks it secret (Airflow masks it in logs and the UI; a Secret Manager backend can
serve it), read by the operator that sends the request and put into the request only,
never into a template field, an XCom or a log line. The ledger's digests are keyed by
the same secret (a key derived from it), so they reveal no UID to whoever reads the
bucket.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac

#: The Variable holding the key: base64 of 16, 24 or 32 random bytes (AES-128/192/256,
#: as ``cryptoKey`` requires). "secret" in the name makes Airflow mask its value.
CRYPTO_KEY_VARIABLE = "dicom_deid_crypto_secret"
#: Transformations whose result depends on a key.
KEYED_METHODS = ("dateShiftConfig", "cryptoHashConfig")


class CryptoKeyError(ValueError):
    """The Variable is missing or malformed (the message never quotes its value)."""


def decode_key(text: str | None, variable: str = CRYPTO_KEY_VARIABLE) -> bytes:
    """The raw key of a Variable's base64 text, checked as the API checks ``cryptoKey``."""
    if not text or not text.strip():
        raise CryptoKeyError(
            f"Variable {variable} is not set: set it to a base64 AES key (e.g. the "
            "output of `openssl rand -base64 32`) once, and keep it; a new key gives "
            "new date shifts and a new ledger")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoKeyError(f"Variable {variable} is not base64") from None
    if len(raw) not in (16, 24, 32):
        raise CryptoKeyError(f"Variable {variable} must hold a 16, 24 or 32-byte key "
                             f"(base64); it holds {len(raw)} bytes")
    return raw


def read_crypto_key(variable: str = CRYPTO_KEY_VARIABLE) -> bytes:
    """The key from Airflow's Variables (or the secrets backend behind them)."""
    from airflow.sdk import Variable

    return decode_key(Variable.get(variable, default=None), variable)


def with_crypto_key(config: dict, key: bytes) -> dict:
    """A copy of ``config`` whose keyed text transformations without a key of their own
    use ``key``. A transformation that names its own ``cryptoKey`` or ``kmsWrapped``
    keeps it: the config's author chose it."""
    out = copy.deepcopy(config)
    text = out.get("text") or {}
    encoded = base64.b64encode(key).decode()
    for field in ("transformations", "additionalTransformations"):
        for item in text.get(field) or ():
            for method in KEYED_METHODS:
                if method in item:
                    body = item[method] if isinstance(item[method], dict) else {}
                    if "cryptoKey" not in body and "kmsWrapped" not in body:
                        body["cryptoKey"] = encoded
                    item[method] = body
    return out


def digest(key: bytes, purpose: str, value: str) -> str:
    """A keyed digest of ``value`` (128 bits, hex) under a key derived for ``purpose``:
    equal values give equal digests under one secret, and nothing else can be learnt
    from them."""
    derived = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
    return hmac.new(derived, value.encode(), hashlib.sha256).hexdigest()[:32]
