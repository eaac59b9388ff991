"""Vendor the DeidentifyConfig schemas of the installed google-api-python-client.

Writes ``src/dicom_deid/data/healthcare-v1-deidentify-schemas.json``: the schemas of the
client's bundled ``healthcare.v1`` discovery document reachable by ``$ref`` from
``dicom_deid.api_schema.ROOTS``, with the document's revision. Run it after upgrading
the client (``tests/unit/test_api_schema_vendored.py`` says when)::

    .venv/bin/python tools/vendor_api_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import googleapiclient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dicom_deid import api_schema  # noqa: E402

DISCOVERY = (Path(googleapiclient.__file__).parent
             / "discovery_cache" / "documents" / "healthcare.v1.json")
TARGET = ROOT / "src" / "dicom_deid" / api_schema.VENDORED


def main() -> None:
    document = api_schema.vendored(json.loads(DISCOVERY.read_text()))
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{TARGET.relative_to(ROOT)}: {len(document['schemas'])} schemas, "
          f"revision {document['revision']}")


if __name__ == "__main__":
    main()
