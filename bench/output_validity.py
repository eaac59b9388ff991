"""Output validity per profile on the real-world corpus: the README's table.

For each filter profile: outputs, outputs dciodvfy could check, new dciodvfy errors
(errors the input did not have) and dcmdump +E errors, with the checks of
``tests/unit/test_output_validity.py``.

    .venv/bin/python bench/output_validity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
sys.path.insert(0, str(ROOT / "src"))

from test_output_validity import PROFILES, check_corpus  # noqa: E402

from dicom_deid.corpus import realworld  # noqa: E402


def main() -> None:
    files = realworld.files()
    results = check_corpus(files)
    print(f"{len(files)} files")
    print("| profile | outputs | checked by dciodvfy | new dciodvfy errors | dcmdump errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for profile in PROFILES:
        outputs = [r for r in results if profile not in r.refused]
        checked = sum(1 for r in outputs if r.input_checked)
        new = sum(len(r.new_errors.get(profile, ())) for r in results)
        dumps = sum(1 for r in results if profile in r.dcmdump)
        print(f"| `{profile}` | {len(outputs)} | {checked} | {new} | {dumps} |")


if __name__ == "__main__":
    main()
