"""Drive pydicom/deid over a directory tree, as its documentation shows; run in the peers' venv.

``python peer_deid.py SRC DST``: for each directory under SRC that holds files,
``get_identifiers`` then ``replace_identifiers`` with deid's default recipe (no
``deid=`` argument), ``save=True`` into the same relative directory under DST.

One call per directory, not one for the whole tree: ``save_dicom`` names outputs by
base name only, so a per-directory output folder is what keeps the tree; it also bounds
what ``get_identifiers`` holds (every element of every file it is given) to one series.
Not imported by the benchmark: it has to run with the peers' own pydicom and deid.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    src, dst = argv
    from deid.dicom import get_identifiers, replace_identifiers

    done = 0
    for dirpath, _, names in sorted(os.walk(src)):
        files = [os.path.join(dirpath, n) for n in sorted(names)]
        if not files:
            continue
        out = os.path.join(dst, os.path.relpath(dirpath, src))
        os.makedirs(out, exist_ok=True)
        ids = get_identifiers(files)
        replace_identifiers(files, ids=ids, save=True, output_folder=out)
        done += len(files)
    print(f"deid: {done} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
