"""The report: Markdown tables of speed, ratios, memory at two sizes, and the audit."""

from __future__ import annotations

COMMAND = ".venv/bin/python bench/deidentify_throughput.py --install-peers"


def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _kinds(out: dict, manifest: dict) -> str:
    parts = []
    for kind, k in manifest["kinds"].items():
        got = out["kinds"].get(kind, 0)
        if k["instances"] and got != k["instances"]:
            parts.append(f"{kind.upper()} {got}/{k['instances']}")
    if out.get("unreadable"):
        parts.append(f"{out['unreadable']} unreadable")
    if out.get("no_sop_class_uid"):
        parts.append(f"{out['no_sop_class_uid']} without SOP Class UID")
    if out["kinds"].get("other"):
        parts.append(f"{out['kinds']['other']} of another SOP class")
    return ", ".join(parts)


def _corpus_line(m: dict) -> str:
    kinds = "; ".join(f"{v['instances']} {v['label']} ({v['bytes'] / 1e6:,.0f} MB)"
                      for v in m["kinds"].values() if v["instances"])
    return f"{m['instances']} instances, {m['bytes'] / 1e6:,.0f} MB: {kinds}"


def speed_table(size: dict) -> list[str]:
    m = size["manifest"]
    lines = [f"Corpus: {_corpus_line(m)}; page cache {size['cache']} before every run.", "",
             "| tool | files out | seconds (to disk) | s to exit | instances/s | MB/s "
             "| cores busy | peak RSS tree (MiB) | largest process (MiB) | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in size["runs"].items():
        if "skipped" in r:
            lines.append(f"| {name} | – | – | – | – | – | – | – | – | skipped: {r['skipped']} |")
            continue
        notes = []
        if r["returncode"]:
            notes.append(f"exit {r['returncode']}")
        if r.get("timed_out"):
            notes.append("timed out")
        if k := _kinds(r["output"], m):
            notes.append(k)
        lines.append(
            f"| {name} | {r['output']['files']}/{m['instances']} | {r['seconds']:.1f} "
            f"| {r['exit_s']:.1f} | {_f(r['instances_per_s'])} | {_f(r['mb_per_s'])} "
            f"| {r['cores']:.2f} | {_f(r['peak_rss_mib'])} | {_f(r['max_proc_rss_mib'])} "
            f"| {'; '.join(notes) or 'ok'} |")
    return lines


def ratio_table(size: dict) -> list[str]:
    runs = {k: v for k, v in size["runs"].items() if "skipped" not in v}
    ours = [k for k in runs if k.startswith("ours")]
    peers = [k for k in runs if not k.startswith("ours") and k != "cp"]
    if not ours:
        return ["Ours not measured, so no ratios."]
    head = "| ours | " + " | ".join(f"vs {p}" for p in peers) + " | × cp -r floor (time) |"
    lines = ["Speed-up = ours instances/s ÷ peer instances/s (> 1: ours faster). "
             "Floor = ours seconds ÷ `cp -r` seconds (1.0 would be pure copying).",
             "A peer marked * did not write every file, so its rate is flattering.", "",
             head, "|---|" + "---:|" * (len(peers) + 1)]
    for o in ours:
        cells = []
        for p in peers:
            star = "" if runs[p]["complete"] else "*"
            cells.append(f"{runs[o]['instances_per_s'] / runs[p]['instances_per_s']:.2f}"
                         f"{star}")
        floor = (f"{runs[o]['seconds'] / runs['cp']['seconds']:.2f}"
                 if "cp" in runs else "–")
        lines.append(f"| {o} | " + " | ".join(cells) + f" | {floor} |")
    return lines


#: Issue 19's goals, on the full corpus, for ours with its default workers: (peer,
#: kind, limit). "time": ours seconds / peer seconds at most the limit; "speed": ours
#: instances/s / peer instances/s at least the limit.
GOALS = (("dcmanon-equal", "time", 1.0), ("dcmanon", "time", 1.5), ("dicognito", "speed", 3.0),
         ("deid", "speed", 3.0), ("cp", "time", 2.0))


def _default_ours(runs: dict) -> str | None:
    ours = [k for k in runs if k.startswith("ours")]
    return max(ours, key=lambda k: int(k.split("=")[1].rstrip(")")), default=None)


def goals_table(size: dict) -> list[str]:
    runs = {k: v for k, v in size["runs"].items() if "skipped" not in v}
    ours = _default_ours(runs)
    if ours is None:
        return []
    lines = [f"Goals ({ours}, one run): time = ours seconds ÷ peer seconds; speed = ours "
             "instances/s ÷ peer instances/s.", "",
             "| against | measure | ratio | goal | met |", "|---|---|---:|---|---|"]
    for peer, kind, limit in GOALS:
        if peer not in runs:
            lines.append(f"| {peer} | {kind} | – | | not measured |")
            continue
        if kind == "time":
            ratio = runs[ours]["seconds"] / runs[peer]["seconds"]
            met = ratio <= limit
            goal = f"≤ {limit:.1f}×"
        else:
            ratio = runs[ours]["instances_per_s"] / runs[peer]["instances_per_s"]
            met = ratio >= limit
            goal = f"≥ {limit:.1f}×"
        lines.append(f"| {peer} | {kind} | {ratio:.2f}× | {goal} | {'yes' if met else 'NO'} |")
    return lines


def startup_table(startup: dict) -> list[str]:
    if not startup:
        return []
    lines = ["One CT slice through each tool (spawn to exit, warm, median of 5); for ours "
             "also `python -X importtime` of the same run:", "",
             "| tool | median s | min–max s | import time | pydicom / numpy imported |",
             "|---|---:|---:|---:|---|"]
    for name, r in startup.items():
        if "error" in r:
            lines.append(f"| {name} | – | – | – | {r['error']} |")
            continue
        imports = f"{r['imports_ms']:.0f} ms" if "imports_ms" in r else "–"
        heavy = (", ".join(m for m in r["heavy_imported"] if m != "tqdm") or "neither"
                 ) if "heavy_imported" in r else "–"
        lines.append(f"| {name} | {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} "
                     f"| {imports} | {heavy} |")
    return lines


def memory_table(sizes: list[dict]) -> list[str]:
    if len(sizes) < 2:
        return []
    small, full = sizes[0], sizes[-1]
    ns, nf = small["manifest"]["instances"], full["manifest"]["instances"]
    lines = [f"Peak RSS of the process tree (MiB) at {ns} and {nf} instances "
             "(largest single process in brackets):", "",
             f"| tool | {ns} instances | {nf} instances | growth | flat? |",
             "|---|---:|---:|---:|---|"]
    for name, r in full["runs"].items():
        a = small["runs"].get(name, {})
        if "skipped" in r or "skipped" in a or not a:
            continue
        growth = r["peak_rss_mib"] - a["peak_rss_mib"]
        flat = growth <= max(16.0, 0.10 * a["peak_rss_mib"])
        lines.append(f"| {name} | {_f(a['peak_rss_mib'])} ({_f(a['max_proc_rss_mib'])}) "
                     f"| {_f(r['peak_rss_mib'])} ({_f(r['max_proc_rss_mib'])}) "
                     f"| {growth:+.0f} | {'yes' if flat else 'NO'} |")
    return lines


def audit_table(audit: dict) -> list[str]:
    if not audit:
        return []
    tools = list(audit)
    labels = list(next(iter(audit.values())))
    lines = ["What each tool does to one CT, one MR and one Enhanced MR instance "
             "('kept' on a PHI row is a leak; 'changed' = replaced by another value):", "",
             "| attribute | " + " | ".join(tools) + " |",
             "|---|" + "---|" * len(tools)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(audit[t].get(label, "–") for t in tools)
                     + " |")
    return lines


def markdown(res: dict) -> str:
    lines = [f"Reproduce: `{res['command']}`", ""]
    lines.append("Tools: " + "; ".join(f"**{k}** = {v['describe']} [{v['version']}]"
                                       for k, v in res["tools"].items()) + ".")
    lines.append(f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['memory_gib']} GiB; "
                 f"work dir {res['work_dir']} (corpus and outputs on the same file system).")
    lines.append("Seconds run from spawning the tool to the end of a `sync` after it exits; "
                 "rates are on the input corpus. Peers are single-process but dcmanon, "
                 "run one process per core; ours uses `--workers` as named. Every tool "
                 "had one untimed warm-up run first, "
                 "with Python allowed to write bytecode caches (this environment sets "
                 "PYTHONDONTWRITEBYTECODE=1).")
    for size in res["sizes"]:
        lines += ["", f"### {size['manifest']['instances']} instances", ""]
        lines += speed_table(size)
        lines += [""] + ratio_table(size)
    if res["sizes"] and (goals := goals_table(res["sizes"][-1])):
        lines += ["", "### Goals", ""] + goals
    if start := startup_table(res.get("startup", {})):
        lines += ["", "### Start-up", ""] + start
    if mem := memory_table(res["sizes"]):
        lines += ["", "### Memory", ""] + mem
    if audit := audit_table(res.get("audit", {})):
        lines += ["", "### What the tools change", ""] + audit
    errors = {k: v for k, v in res.get("log_excerpts", {}).items() if v}
    if errors:
        lines += ["", "### Tool messages (first distinct error/warning lines)", ""]
        for k, v in errors.items():
            lines.append(f"- {k}: " + " ⏎ ".join(f"`{x}`" for x in v))
    return "\n".join(lines)
