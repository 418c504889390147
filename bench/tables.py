"""Markdown tables for BENCHMARKS.md from rookery-bench's JSON rows:
Rookery and the socket.io peer side by side, with the ratio.
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


def ratio(ours, theirs, higher_is_better):
    if not ours or not theirs:
        return "–"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.2f}×"


def get(row, *path):
    if row is None:
        return None
    for key in path:
        row = row[key]
    return row


current = None
for (scenario, setting), peers in pairs.items():
    r, s = peers.get("rookery"), peers.get("socketio")
    if scenario != current:
        current = scenario
        print(f"\n#### {scenario}\n")
        if scenario == "idle":
            print("| setting | Rookery B/conn | socket.io B/conn | Rookery's advantage | dropped (R / S) |")
            print("|---|---|---|---|---|")
        else:
            print("| setting | delivered/s R / S | p50 ms R / S | p99 ms R / S | max ms R / S | ack p99 ms R / S | missing R / S | throughput ratio | p99 ratio |")
            print("|---|---|---|---|---|---|---|---|---|")
    if scenario == "idle":
        rb = get(r, "rss_per_connection") or 0
        sb = get(s, "rss_per_connection") or 0
        print(f"| {setting} | {rb:.0f} | {sb:.0f} | {ratio(rb, sb, False)} | {get(r, 'missing')} / {get(s, 'missing')} |")
        continue
    fmt = lambda v: "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")
    both = lambda *path: f"{fmt(get(r, *path))} / {fmt(get(s, *path))}"
    print(
        f"| {setting} | {both('delivered_per_s')} | {both('delivery', 'p50_ms')} | {both('delivery', 'p99_ms')} "
        f"| {both('delivery', 'max_ms')} | {both('ack', 'p99_ms')} | {get(r, 'missing')} / {get(s, 'missing')} "
        f"| {ratio(get(r, 'delivered_per_s'), get(s, 'delivered_per_s'), True)} "
        f"| {ratio(get(r, 'delivery', 'p99_ms'), get(s, 'delivery', 'p99_ms'), False)} |"
    )
