"""QIDO person-name wildcard matching: the server's walk against the regex it replaced.

The local server once matched ``PatientName`` wildcards with a regex built from the
pattern (``*`` -> ``.*``, ``?`` -> ``.``), which backtracks exponentially on patterns
such as ``*?*?...#``; it now walks the pattern (``server.catalog.wildcard_match``).
This times both on one long name for a growing number of ``*?`` pairs and prints the
ratio. The regex is stopped at 7 pairs: each more costs about 6x.

    .venv/bin/python bench/qido_wildcards.py
"""

from __future__ import annotations

import re
import time

from dicom_deid.server.catalog import wildcard_match

NAME = "Mustermann-Schmidt^Maximilian Alexander^von".casefold()


def _regex(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern), re.DOTALL)


def _best(fn, repeat: int = 3) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"name: {len(NAME)} characters; pattern: '*?' x n + '#' (matches nothing)")
    print("| n | regex (before) | walk (now) | regex / walk |")
    print("| --- | --- | --- | --- |")
    for n in range(4, 8):
        pattern = "*?" * n + "#"
        rx = _regex(pattern)
        before = _best(lambda rx=rx: rx.fullmatch(NAME))
        now = _best(lambda pattern=pattern: wildcard_match(pattern, NAME))
        print(f"| {n} | {before * 1e3:.1f} ms | {now * 1e6:.0f} µs | {before / now:,.0f}x |")


if __name__ == "__main__":
    main()
