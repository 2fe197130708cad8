#!/usr/bin/env python3
"""Haze against PyTorch on the reference U-Net workloads, interleaved (issue 17): the README's speed
table, thread scaling and peak memory, from one run of this script.

Each round runs, per workload (fmnist-s b64, cifar-ddpm b8, faces-64 b16; train and infer):
  ../shared/reference/bench_torch.py --part torch --threads T --workloads W   (its own process)
  haze-bench unet --config W --mode M --batch B --threads T                  (one process per mode)
alternating which side goes first from round to round, so that every ratio compares two
measurements minutes apart. Then, once, haze-bench at 1 thread (thread scaling: speed-up and
efficiency of T threads over 1). Timing protocol on both sides: 3 warm-up calls, median of 10.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment of both sides.

    python3 scripts/speed_table.py --rounds 2 --json /tmp/speed.json   # about 15 minutes on 2 cores
    python3 scripts/speed_table.py --report /tmp/speed.json            # the tables again

--python is the interpreter with torch and diffusers (default ~/haze-ref-venv/bin/python).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_TORCH = os.path.join(os.path.dirname(REPO), "shared", "reference", "bench_torch.py")
WORKLOADS = {"fmnist-s": 64, "cifar-ddpm": 8, "faces-64": 16}
MODES = ["train", "infer"]


def clean_env():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run_torch(args, workload):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([args.python, BENCH_TORCH, "--part", "torch", "--threads", str(args.threads), "--workloads", workload,
                    "--out", out], check=True, env=clean_env(), stdout=subprocess.DEVNULL)
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    rss = result["meta"]["max_rss_mb"]
    return {r["mode"]: {"median_ms": r["median_ms"], "max_rss_mb": rss} for r in result["workloads"]}


def run_haze(args, workload, mode, threads):
    line = subprocess.run([args.haze_bench, "unet", "--config", workload, "--mode", mode, "--batch", str(WORKLOADS[workload]),
                           "--threads", str(threads)], check=True, env=clean_env(), capture_output=True, text=True).stdout
    result = json.loads(line.strip().splitlines()[-1])
    return {"median_ms": result["median_ms"], "peak_rss_mb": result["peak_rss_mb"]}


def measure(args):
    data = {"threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "rounds": [], "one_thread": {}}
    for r in range(args.rounds):
        round_ = {}
        for w in args.workloads:
            def torch_side():
                round_.setdefault(w, {})["torch"] = run_torch(args, w)
            def haze_side():
                round_.setdefault(w, {})["haze"] = {m: run_haze(args, w, m, args.threads) for m in MODES}
            for side in ([torch_side, haze_side] if r % 2 == 0 else [haze_side, torch_side]):
                side()
            print(f"round {r + 1} {w}: " + ", ".join(
                f"{m} {round_[w]['torch'][m]['median_ms']:.0f} / {round_[w]['haze'][m]['median_ms']:.0f} ms" for m in MODES),
                flush=True)
        data["rounds"].append(round_)
    if args.threads > 1:
        for w in args.workloads:
            data["one_thread"][w] = {m: run_haze(args, w, m, 1) for m in MODES}
            print(f"1 thread {w}: " + ", ".join(f"{m} {data['one_thread'][w][m]['median_ms']:.0f} ms" for m in MODES), flush=True)
    return data


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def report(data):
    rounds = data["rounds"]
    workloads = [w for w in WORKLOADS if all(w in r for r in rounds)]
    lines = [f"{data['cpu']}, {data['threads']} threads, {data['date']}; median ms, PyTorch / Haze (Haze ÷ PyTorch):", "",
             "| workload | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | median ratio |",
             "|---|" + "---|" * (len(rounds) + 1)]
    for w in workloads:
        for m in MODES:
            cells, ratios = [], []
            for r in rounds:
                t, h = r[w]["torch"][m]["median_ms"], r[w]["haze"][m]["median_ms"]
                ratios.append(h / t)
                cells.append(f"{t:.0f} / {h:.0f} ({h / t:.2f}×)")
            lines.append(f"| {w} {m}, batch {WORKLOADS[w]} | " + " | ".join(cells) + f" | {statistics.median(ratios):.2f}× |")
    lines += ["", "Peak resident memory (MB) of the training process: Haze's `peak_rss_mb` (train mode) against "
              "PyTorch's `max_rss_mb` (its process runs both modes), medians over the rounds:", "",
              "| workload | Haze train | PyTorch | Haze / PyTorch |", "|---|---|---|---|"]
    for w in workloads:
        h = statistics.median(r[w]["haze"]["train"]["peak_rss_mb"] for r in rounds)
        t = statistics.median(r[w]["torch"]["train"]["max_rss_mb"] for r in rounds)
        lines.append(f"| {w}, batch {WORKLOADS[w]} | {h:.0f} | {t:.0f} | {h / t:.2f} |")
    if data.get("one_thread"):
        n = data["threads"]
        lines += ["", f"Thread scaling of Haze (1 thread measured after the rounds; {n} threads: the median of the rounds):", "",
                  f"| workload | 1 thread | {n} threads | speed-up | efficiency |", "|---|---|---|---|---|"]
        for w in workloads:
            for m in MODES:
                one = data["one_thread"][w][m]["median_ms"]
                many = statistics.median(r[w]["haze"][m]["median_ms"] for r in rounds)
                lines.append(f"| {w} {m}, batch {WORKLOADS[w]} | {one:.0f} ms | {many:.0f} ms | {one / many:.2f}× | "
                             f"{one / many / n * 100:.0f} % |")
    return "\n".join(lines) + "\n"


def table_main(doc, measure, report):
    """The command line of this script and of bf16_speed_table.py: measure and report, or --report."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--haze-bench", default=os.path.join(REPO, ".build", "release", "haze-bench"))
    parser.add_argument("--python", default=os.path.expanduser("~/haze-ref-venv/bin/python"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--report", metavar="JSON", help="print the tables of an earlier run and stop")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)), end="")
        return
    if not os.path.exists(args.haze_bench):
        sys.exit(f"{args.haze_bench} does not exist: swift build -c release --product haze-bench")
    data = measure(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    print(report(data), end="")


if __name__ == "__main__":
    table_main(__doc__, measure, report)
