#!/usr/bin/env python3
"""Haze in bf16 against the engines that compute in bf16 on this CPU, interleaved (issue 23):
OpenVINO's default precision (bf16 where the CPU has AVX512_BF16 or AMX) for inference, PyTorch's
autocast-bf16 for training, and Haze's float32 beside both.

Each round runs, alternating which side goes first:
  ../shared/reference/bench_engines.py --workloads W      ONNX Runtime f32, OpenVINO f32 and default (bf16)
  ../shared/reference/bench_torch_bf16.py --workloads W   PyTorch autocast bf16, infer and train
  haze-bench unet --config W --mode infer --precision float32|bfloat16 [--prepared-weights]
  haze-bench unet --config W --mode train --precision float32|bfloat16
for fmnist-s (batch 64), cifar-ddpm (8) and faces-64 (16). Inference is timed both ways: weights
prepared in every call (as bench_torch.py's eager PyTorch), and prepared once (`--prepared-weights`:
as `haze sample` runs the network, and as OpenVINO runs its compiled model). Issue 23's targets:
Haze bf16 inference ≤ 0.8× OpenVINO's default, Haze bf16 training ≤ 0.7× autocast on fmnist-s and
cifar-ddpm. Protocol on every side: 3 warm-up calls, median of 10; OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed from the environment.

    python3 scripts/bf16_speed_table.py --rounds 2 --json /tmp/bf16-speed.json   # about 20 minutes on 2 cores
    python3 scripts/bf16_speed_table.py --report /tmp/bf16-speed.json
"""
import json
import os
import statistics
import subprocess
import tempfile
import time

from speed_table import REPO, WORKLOADS, clean_env, cpu_name, table_main

REFERENCE = os.path.join(os.path.dirname(REPO), "shared", "reference")
HAZE_RUNS = {  # name: haze-bench unet options
    "infer f32": ["--mode", "infer", "--precision", "float32"],
    "infer f32 prepared": ["--mode", "infer", "--precision", "float32", "--prepared-weights"],
    "infer bf16": ["--mode", "infer", "--precision", "bfloat16"],
    "infer bf16 prepared": ["--mode", "infer", "--precision", "bfloat16", "--prepared-weights"],
    "train f32": ["--mode", "train", "--precision", "float32"],
    "train bf16": ["--mode", "train", "--precision", "bfloat16"],
}
TRAINING_TARGETS = ["fmnist-s", "cifar-ddpm"]


def run_reference(args, script, workload):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([args.python, os.path.join(REFERENCE, script), "--threads", str(args.threads), "--workloads", workload,
                    "--out", out], check=True, env=clean_env(), stdout=subprocess.DEVNULL)
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result["workloads"]


def run_engines(args, workload):
    """{"openvino default": ms, "openvino f32": ms, "onnxruntime": ms, "autocast infer": ms, "autocast train": ms}"""
    times = {}
    for r in run_reference(args, "bench_engines.py", workload):
        name = {"openvino-default": "openvino default", "openvino-f32": "openvino f32"}.get(r["engine"], r["engine"])
        times[name] = r["median_ms"]
    for r in run_reference(args, "bench_torch_bf16.py", workload):
        times[f"autocast {r['mode']}"] = r["median_ms"]
    return times


def run_haze(args, workload):
    times = {}
    for name, options in HAZE_RUNS.items():
        line = subprocess.run([args.haze_bench, "unet", "--config", workload, "--batch", str(WORKLOADS[workload]),
                               "--threads", str(args.threads)] + options,
                              check=True, env=clean_env(), capture_output=True, text=True).stdout
        result = json.loads(line.strip().splitlines()[-1])
        times[name] = result["median_ms"]
        if name.startswith("train"):
            times[name + " peak MB"] = result["peak_rss_mb"]
        if result["bf16_kernel"] != "none":
            times["bf16 kernel"] = result["bf16_kernel"]
    return times


def measure(args):
    data = {"threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "rounds": []}
    for r in range(args.rounds):
        round_ = {}
        for w in args.workloads:
            sides = [("engines", run_engines), ("haze", run_haze)]
            for name, run in (sides if r % 2 == 0 else sides[::-1]):
                round_.setdefault(w, {})[name] = run(args, w)
            e, h = round_[w]["engines"], round_[w]["haze"]
            print(f"round {r + 1} {w}: OpenVINO default {e['openvino default']:.0f}, Haze bf16 prepared "
                  f"{h['infer bf16 prepared']:.0f}; autocast train {e['autocast train']:.0f}, Haze bf16 train "
                  f"{h['train bf16']:.0f} ms", flush=True)
        data["rounds"].append(round_)
    return data


def report(data):
    rounds = data["rounds"]
    workloads = [w for w in WORKLOADS if all(w in r for r in rounds)]
    kernel = next((r[w]["haze"].get("bf16 kernel") for r in rounds for w in workloads), None) or "none"

    def per_round(w, side, key):
        return [r[w][side][key] for r in rounds]

    def cell(values):
        return " / ".join(f"{v:.0f}" for v in values)

    lines = [f"{data['cpu']}, {data['threads']} threads, {data['date']}, Haze's bf16 kernel: {kernel}; median ms per "
             f"round (rounds separated by /):", "",
             "| workload, inference | Haze f32 | Haze f32, prepared | Haze bf16 | Haze bf16, prepared | OpenVINO f32 | "
             "OpenVINO default | ONNX Runtime f32 | autocast bf16 | Haze bf16 prepared / OpenVINO default (target ≤ 0.8) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for w in workloads:
        h = {k: per_round(w, "haze", k) for k in ["infer f32", "infer f32 prepared", "infer bf16", "infer bf16 prepared"]}
        e = {k: per_round(w, "engines", k) for k in ["openvino f32", "openvino default", "onnxruntime", "autocast infer"]}
        ratio = statistics.median(a / b for a, b in zip(h["infer bf16 prepared"], e["openvino default"]))
        lines.append(f"| {w}, batch {WORKLOADS[w]} | " + " | ".join(cell(v) for v in list(h.values()) + list(e.values()))
                     + f" | {ratio:.2f} {'✓' if ratio <= 0.8 else '✗'} |")
    lines += ["", "| workload, training step | Haze f32 | Haze bf16 | autocast bf16 | Haze bf16 / autocast "
              "(target ≤ 0.7 on fmnist-s, cifar-ddpm) | peak MB, Haze f32 / bf16 |", "|---|---|---|---|---|---|"]
    for w in workloads:
        f32, bf16, auto = per_round(w, "haze", "train f32"), per_round(w, "haze", "train bf16"), per_round(w, "engines", "autocast train")
        ratio = statistics.median(a / b for a, b in zip(bf16, auto))
        mark = (" ✓" if ratio <= 0.7 else " ✗") if w in TRAINING_TARGETS else ""
        memory = (statistics.median(per_round(w, "haze", "train f32 peak MB")), statistics.median(per_round(w, "haze", "train bf16 peak MB")))
        lines.append(f"| {w}, batch {WORKLOADS[w]} | {cell(f32)} | {cell(bf16)} | {cell(auto)} | {ratio:.2f}{mark} | "
                     f"{memory[0]:.0f} / {memory[1]:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    table_main(__doc__, measure, report)
