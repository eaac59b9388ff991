"""The report: markdown tables of the results, and the goals they are held against."""

from __future__ import annotations

COMMAND = "make bench  (runs .venv/bin/python bench/server_throughput.py)"
GOAL_STOW = 200.0
GOAL_DISK_SHARE = 0.5


def _fmt(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _share(p: dict, disk: float | None) -> str:
    return f"{p['mb_per_s'] / disk:.0%}" if disk and not p["name"].startswith("STOW") else "–"


def markdown(res: dict) -> str:
    ours, peer = res["ours"], res.get("peer", {}).get("phases", {})
    d = res["disk"]
    disk = d["reference_mb_per_s"]
    c = res["corpus"]
    src = res["source"]
    lines = [
        f"Reproduce: `{COMMAND}`",
        "",
        f"Server code: commit {src['commit'][:12] or '?'}"
        + (" with uncommitted changes in src/dicom_deid/server"
           if src["server_changes_uncommitted"] else "") + ".",
        f"Corpus: {c['instances']} synthetic CT instances, 512x512x16 bit "
        f"({c['mb']:.0f} MB, {c['series']} series, seed {c['seed']}); "
        f"{res['args']['threads']} client threads; {res['args']['batch']} instances per STOW "
        f"request; median of {res['args']['repeat']} runs.",
        f"Disk ({d['file_bytes'] / 1024**3:.1f} GiB probe on the data dir's file system): "
        f"write+fsync {_fmt(d['write_fsync_mb_per_s'])} MB/s, sequential read cold "
        f"{_fmt(d.get('read_cold_mb_per_s'))} MB/s, O_DIRECT (8 MiB, queue depth 1) "
        f"{_fmt(d.get('read_direct_mb_per_s'))} MB/s, page cache "
        f"{_fmt(d.get('read_warm_mb_per_s'))} MB/s. Share of disk = MB/s / "
        f"{_fmt(disk)} MB/s ({d['reference']}).",
        "",
        "| phase | ours inst/s | ours MB/s | share of disk | server CPU | client CPU "
        "| peer inst/s | peer MB/s | peer share of disk | peer CPU | ours/peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, p in ours.items():
        q = peer.get(key)
        if q:
            theirs = (f"{_fmt(q['instances_per_s'])} | {_fmt(q['mb_per_s'])} "
                      f"| {_share(q, disk)} | {q['server_cpu_share']:.0%} "
                      f"| {p['instances_per_s'] / q['instances_per_s']:.2f}")
        else:
            theirs = "– | – | – | – | –"
        lines.append(
            f"| {p['name']} | {_fmt(p['instances_per_s'])} | {_fmt(p['mb_per_s'])} "
            f"| {_share(p, disk)} | {p['server_cpu_share']:.0%} | {p['client_cpu_share']:.0%} "
            f"| {theirs} |")
    lines.append("")
    lines.append("CPU shares are of one core (the machine has "
                 f"{res['machine']['cpus']}); 'client' includes curl child processes.")
    files = ours.get("files_direct_cold")
    if files:
        shares = [f"{p['name'].split(' (')[0]}: {p['mb_per_s'] / files['mb_per_s']:.0%}"
                  for k, p in ours.items() if k.startswith("wado") and "_cold_" in k]
        lines.append("Cold retrieval as a share of reading the same instance files directly "
                     f"({files['mb_per_s']:.0f} MB/s, {files['name']}): " + "; ".join(shares)
                     + ".")
    mem = res["memory"]
    lines += [
        "",
        "Ours, RSS (MiB) after each 250 stored instances: "
        + ", ".join(f"{n}: {v:.0f}" for n, v in mem["checkpoints"])
        + f"; peak {mem['peak_mib']:.0f} MiB over the run.",
    ]
    if res.get("peer", {}).get("skipped"):
        lines.append(f"Peer: skipped ({res['peer']['skipped']}).")
    elif res.get("peer"):
        pm = res["peer"]["memory"]
        lines.append(f"Peer ({res['peer']['name']}), RSS (MiB) after each 250 stored: "
                     + ", ".join(f"{n}: {v:.0f}" for n, v in pm["checkpoints"])
                     + f"; peak {pm['peak_mib']:.0f} MiB.")
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in res["goals"]:
        met = "n/a" if g["met"] is None else "yes" if g["met"] else "NO"
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {met} |")
    return "\n".join(lines)


def goals(res: dict) -> list[dict]:
    ours, disk = res["ours"], res["disk"]["reference_mb_per_s"]
    out = []
    stow = ours["stow_requests"]["instances_per_s"]
    out.append({"goal": "STOW-RS throughput (requests client)",
                "target": f">= {GOAL_STOW:.0f} instances/s",
                "measured": f"{stow:.0f} instances/s", "met": stow >= GOAL_STOW})
    for key in ("wado_instance_cold_curl", "wado_series_cold_curl", "wado_instance_warm_curl",
                "wado_series_warm_curl"):
        if key in ours and disk:
            share = ours[key]["mb_per_s"] / disk
            out.append({"goal": f"{ours[key]['name']} vs disk sequential read",
                        "target": f">= {GOAL_DISK_SHARE:.0%} of {disk:.0f} MB/s",
                        "measured": f"{ours[key]['mb_per_s']:.0f} MB/s = {share:.0%}",
                        "met": share >= GOAL_DISK_SHARE})
    mem = res["memory"]
    out.append({"goal": "memory flat as the store grows",
                "target": "RSS growth, first to last checkpoint, <= max(16 MiB, 10%)",
                "measured": f"{mem['growth_mib']:+.1f} MiB over {mem['span_instances']} more "
                            "instances", "met": mem["flat"]})
    return out


def profile_markdown(profile: dict) -> str:
    lines = ["Profile of the server (py-spy; 'gil' = samples of the thread holding the GIL, "
             "'wall' = all non-idle threads):"]
    for key, s in profile.items():
        lines += ["", f"{key} ({s['samples']} samples, {s['rate_under_profiler']} under the "
                      "profiler; threads: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in s["threads"]) + ")",
                  "", "| where | share |", "|---|---:|"]
        lines += [f"| {k} | {v:.0%} |" for k, v in s["categories"] if v >= 0.01]
        lines.append("| top leaf functions: " + ", ".join(
            f"{k} {v:.0%}" for k, v in s["self"][:6]) + " | |")
    return "\n".join(lines)
