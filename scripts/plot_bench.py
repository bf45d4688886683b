#!/usr/bin/env python3
"""Benchmark result JSON files -> PNG charts.

  .venv/bin/python scripts/plot_bench.py RESULT.json [...] --out-dir DIR

Understands:
  compare.json (scripts/compare_llamacpp.sh)   -> throughput_vs_concurrency.png (kvserve vs llama.cpp,
                                                 one line per model) and latency_pp_tg.png (pp512/tg128 bars)
  `kvserve bench throughput --json` files      -> throughput_vs_concurrency.png (output and total tok/s)
  `kvserve bench serve --json` / bench/serve_bench.py --output files
                                               -> latency_percentiles.png (TTFT/TPOT/ITL/E2E p50/p90/p99)
  `kvserve bench serve --sweep R1,R2,... --json` -> serve_sweep.png (output tok/s against TTFT and TPOT
                                                 p50, one line per mode, points labelled by request rate)
Prints the paths it wrote.
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def kind(d):
    if isinstance(d, dict) and d.get("kind") == "serve_sweep":
        return "sweep"
    if isinstance(d, dict) and "rows" in d and "npl" in d:
        return "compare"
    if isinstance(d, dict) and d.get("mode") == "throughput":
        return "throughput"
    if isinstance(d, dict) and "ttft_ms" in d and "request_throughput" in d:
        return "serve"
    if isinstance(d, dict) and d.get("mode") == "latency":
        return "latency"
    return None


def plot_throughput(compares, throughputs, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    for c in compares:
        series = defaultdict(lambda: {"kv": [], "ll": []})
        for r in c["rows"]:
            if "concurrency" in r:
                s = series[r["model"]]
                s["kv"].append((r["concurrency"], r["kvserve"]))
                if r["llama_cpp"]:
                    s["ll"].append((r["concurrency"], r["llama_cpp"]))
        for i, (model, s) in enumerate(sorted(series.items())):
            color = f"C{i}"
            if s["kv"]:
                x, y = zip(*sorted(s["kv"]))
                ax.plot(x, y, "o-", color=color, label=f"{model} kvserve")
            if s["ll"]:
                x, y = zip(*sorted(s["ll"]))
                ax.plot(x, y, "s--", color=color, alpha=0.7, label=f"{model} llama.cpp")
    by_model = defaultdict(list)
    for t in throughputs:
        by_model[(os.path.basename(t["model"]), t["input_len"], t["output_len"])].append(t)
    for i, ((model, inl, outl), ts) in enumerate(sorted(by_model.items())):
        ts.sort(key=lambda t: t["concurrency"])
        x = [t["concurrency"] for t in ts]
        color = f"C{(i + 5) % 10}"
        ax.plot(x, [t["total_tokens_per_s"] for t in ts], "o-", color=color, label=f"{model} total ({inl}+{outl})")
        ax.plot(x, [t["output_tokens_per_s"] for t in ts], "^:", color=color, label=f"{model} output")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent sequences")
    ax.set_ylabel("tokens/s")
    ax.set_title("Offline throughput vs concurrency (solid: kvserve, dashed: llama.cpp)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pp_tg(compares, path):
    rows = [r for c in compares for r in c["rows"] if r["test"] in ("pp512", "tg128")]
    if not rows:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, test in zip(axes, ("pp512", "tg128")):
        rs = [r for r in rows if r["test"] == test]
        x = list(range(len(rs)))
        ax.bar([i - 0.2 for i in x], [r["llama_cpp"] or 0 for r in rs], 0.4, label="llama.cpp")
        ax.bar([i + 0.2 for i in x], [r["kvserve"] or 0 for r in rs], 0.4, label="kvserve")
        ax.set_xticks(x)
        ax.set_xticklabels([r["model"].replace("synth-135m-", "") for r in rs], rotation=20, fontsize=8)
        ax.set_ylabel("tokens/s")
        ax.set_title(test)
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_serve(serves, names, path):
    metrics = [("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 4))
    width = 0.8 / max(1, len(serves))
    for ax, (key, title) in zip(axes, metrics):
        for j, (s, name) in enumerate(zip(serves, names)):
            p = s[key]
            vals = [p.get(q) or 0 for q in ("p50", "p90", "p99")]
            ax.bar([i + j * width for i in range(3)], vals, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(3)])
        ax.set_xticklabels(["p50", "p90", "p99"])
        ax.set_title(f"{title} (ms)")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep(sweeps, path):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for sw in sweeps:
        modes = []
        for p in sw["points"]:
            if p["mode"] not in modes:
                modes.append(p["mode"])
        for m in modes:
            pts = [p for p in sw["points"] if p["mode"] == m]
            x = [p["result"]["output_throughput"] for p in pts]
            label = m if len(sweeps) == 1 else f"{os.path.basename(sw.get('model', ''))} {m}"
            for ax, key in zip(axes, ("ttft_ms", "tpot_ms")):
                y = [p["result"][key]["p50"] for p in pts]
                ax.plot(x, y, marker="o", label=label)
                for xi, yi, p in zip(x, y, pts):
                    r = p["request_rate"]
                    ax.annotate("inf" if r is None else f"{r:g}", (xi, yi), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
    for ax, title in zip(axes, ("TTFT p50 (ms)", "TPOT p50 (ms)")):
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(title)
        ax.set_title(f"{title} against throughput (labels: request rate, req/s)", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out-dir", default=".")
    args = ap.parse_args()
    groups = defaultdict(list)
    names = defaultdict(list)
    for f in args.files:
        with open(f, encoding="utf-8") as fh:
            d = json.load(fh)
        k = kind(d)
        if k is None:
            print(f"skipping {f}: unknown result format", file=sys.stderr)
            continue
        groups[k].append(d)
        names[k].append(os.path.splitext(os.path.basename(f))[0])
    os.makedirs(args.out_dir, exist_ok=True)
    wrote = []
    if groups["compare"] or groups["throughput"]:
        p = os.path.join(args.out_dir, "throughput_vs_concurrency.png")
        plot_throughput(groups["compare"], groups["throughput"], p)
        wrote.append(p)
    if groups["compare"]:
        p = os.path.join(args.out_dir, "latency_pp_tg.png")
        if plot_pp_tg(groups["compare"], p):
            wrote.append(p)
    if groups["serve"]:
        p = os.path.join(args.out_dir, "latency_percentiles.png")
        plot_serve(groups["serve"], names["serve"], p)
        wrote.append(p)
    if groups["sweep"]:
        p = os.path.join(args.out_dir, "serve_sweep.png")
        plot_sweep(groups["sweep"], p)
        wrote.append(p)
    if not wrote:
        print("nothing to plot", file=sys.stderr)
        return 1
    for p in wrote:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
