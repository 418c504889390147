"""Markdown tables for BENCHMARKS.md from rookery-bench's JSON rows:
Rookery and the socket.io peer side by side, with the ratio, and where the
run measured them too, Rookery with SQLITE_SYNCHRONOUS=normal
(ROOKERY_NORMAL=1), an older build (ROOKERY_BEFORE) and Sockudo (fanout
and idle; "–" where it has no row).
    python3 bench/tables.py bench/results/results.json
"""
import json
import sys
from collections import OrderedDict

rows = json.load(open(sys.argv[1]))
pairs = OrderedDict()
for row in rows:
    key = (row["scenario"], row["setting"])
    pairs.setdefault(key, {})[row["peer"]] = row
with_before = any(row["peer"] == "rookery-before" for row in rows)
SHORT = {"rookery": "R", "rookery-normal": "R normal", "rookery-before": "before", "socketio": "S", "sockudo": "Sockudo"}
present = {row["peer"] for row in rows}
order = [peer for peer in SHORT if peer in present or peer in ("rookery", "socketio")]


def ratio(ours, theirs, higher_is_better):
    if not ours or not theirs:
        return "–"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.2f}×"


def get(row, *path):
    if row is None:
        return None
    for key in path:
        row = row.get(key)
        if row is None:
            return None
    return row


current = None
names = " / ".join(SHORT[peer] for peer in order)
for (scenario, setting), peers in pairs.items():
    r, b, s = peers.get("rookery"), peers.get("rookery-before"), peers.get("socketio")
    side = [peers.get(peer) for peer in order]
    if scenario != current:
        current = scenario
        print(f"\n#### {scenario}\n")
        if scenario == "idle":
            print(f"| setting | B/conn {names} | Rookery's advantage | dropped {names} |")
            print("|---|---|---|---|")
        else:
            extra = " p99 before→now |" if with_before else ""
            print(f"| setting | delivered/s {names} | p50 ms {names} | p99 ms {names} | max ms {names} | ack p99 ms {names} | missing {names} | server CPU ms per 1000 delivered {names} | throughput ratio | p99 ratio |{extra}")
            print("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_before else ""))
    fmt = lambda v: "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")
    every = lambda *path: " / ".join(fmt(get(row, *path)) for row in side)
    def count(row):
        if row is None:
            return "–"
        refused = row.get("refused") or 0
        return f"{row['missing']}" + (f" (+{refused} refused)" if refused else "")
    counts = " / ".join(count(row) for row in side)
    if scenario == "idle":
        rb = get(r, "rss_per_connection") or 0
        sb = get(s, "rss_per_connection") or 0
        print(f"| {setting} | {every('rss_per_connection')} | {ratio(rb, sb, False)} | {counts} |")
        continue
    line = (
        f"| {setting} | {every('delivered_per_s')} | {every('delivery', 'p50_ms')} | {every('delivery', 'p99_ms')} "
        f"| {every('delivery', 'max_ms')} | {every('ack', 'p99_ms')} | {counts} | {every('cpu_ms_per_1000')} "
        f"| {ratio(get(r, 'delivered_per_s'), get(s, 'delivered_per_s'), True)} "
        f"| {ratio(get(r, 'delivery', 'p99_ms'), get(s, 'delivery', 'p99_ms'), False)} |"
    )
    if with_before:
        line += f" {ratio(get(r, 'delivery', 'p99_ms'), get(b, 'delivery', 'p99_ms'), False)} |"
    print(line)
