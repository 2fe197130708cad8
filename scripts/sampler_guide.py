#!/usr/bin/env python3
"""The measured sampler guide (issue 16): one well-trained Fashion-MNIST model, every sampler of
`haze sample` at 10, 20 and 50 steps (and DDPM at 1000), scored by FID and KID on Haze's
classifier features, with the sampling time per image; a Markdown table and an FID-vs-steps SVG.

Three phases, each resumable (run the same command again to go on, in this or a later session):

  train     haze train --data fashion-mnist --preset fmnist-small --steps STEPS (batch 64, the
            defaults of `haze train`: AdamW 2e-4, warmup, clipping, EMA), checkpointing every 500
            steps into WORK/run. With --max-minutes M it stops cleanly after M minutes; the next
            call resumes it bit-exactly.
  evaluate  for every cell (sampler, σ spacing, steps):
              haze evaluate --model WORK/run/checkpoints/step-STEPS/ema --scheduler S --steps N
                            --count COUNT --seed 1 --batch-size 250 --threads T --json CELL.json
            Every cell starts from the same initial noise (seed 1). A finished cell is skipped.
  report    WORK/report.md (the table) and WORK/sampler-fid.svg (FID against steps, one line per
            sampler), from the cells that exist.

    python3 scripts/sampler_guide.py all --work ~/haze-guide --steps 10000 --max-minutes 150
    python3 scripts/sampler_guide.py report --work ~/haze-guide

Only the Python standard library and a release build of haze are needed (--haze, default
.build/release/haze). The work folder remembers --steps and --count; other values are refused.
Smoke test (a minute):
    python3 scripts/sampler_guide.py all --work /tmp/guide-smoke --steps 20 --count 64 \\
        --cells ddim:10,dpm++2m:10,heun:5 --threads 1
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFIER = os.path.join(REPO, "assets", "fmnist-classifier.safetensors")

# (scheduler, σ spacing or None for the schedule's own, steps); DDPM also at its full 1000.
SAMPLERS = [("ddim", None), ("ddpm", None), ("euler", None), ("euler-a", None), ("heun", None),
            ("dpm++2m", None), ("dpm++2m", "karras"), ("dpm++2m-sde", None), ("unipc", None)]
DEFAULT_CELLS = [(s, sig, n) for s, sig in SAMPLERS for n in (10, 20, 50)] + [("ddpm", None, 1000)]


def log(message):
    print(time.strftime("%H:%M:%S"), message, flush=True)


def parse_cells(text):
    """'ddim:10,dpm++2m/karras:20' → [(scheduler, sigmas, steps)]."""
    cells = []
    for item in text.split(","):
        name, steps = item.rsplit(":", 1)
        scheduler, _, sigmas = name.partition("/")
        cells.append((scheduler, sigmas or None, int(steps)))
    return cells


def cell_name(scheduler, sigmas, steps):
    return f"{scheduler}{'-' + sigmas if sigmas else ''}-{steps}"


def label(scheduler, sigmas):
    return scheduler + (f" ({sigmas} σ)" if sigmas else "")


def remember_settings(work, settings):
    path = os.path.join(work, "settings.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if saved != settings:
            sys.exit(f"{path}: this work folder was made with {saved}, not {settings}; use another --work")
    else:
        os.makedirs(work, exist_ok=True)
        with open(path, "w") as f:
            json.dump(settings, f, indent=2)


def checkpoint(work, steps):
    return os.path.join(work, "run", "checkpoints", f"step-{steps:07d}")


def train(args):
    run = os.path.join(args.work, "run")
    if os.path.isdir(checkpoint(args.work, args.steps)):
        log(f"train: {args.steps} steps done already")
        return True
    if os.path.exists(os.path.join(run, "latest")):
        command = [args.haze, "train", "--resume", run, "--steps", str(args.steps)]
    else:
        if os.path.exists(run):  # stopped before its first checkpoint
            subprocess.run(["rm", "-rf", run], check=True)
        command = [args.haze, "train", "--data", "fashion-mnist", "--out", run, "--preset", "fmnist-small",
                   "--steps", str(args.steps), "--checkpoint-every", "500", "--sample-every", "0", "--no-tensorboard"]
    command += ["--threads", str(args.threads)]
    if args.max_minutes:
        command += ["--max-minutes", str(args.max_minutes)]
    log("train: " + " ".join(command))
    began = time.time()
    with open(os.path.join(args.work, "train.log"), "a") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    with open(os.path.join(args.work, "timings.jsonl"), "a") as f:
        f.write(json.dumps({"unit": "train", "seconds": round(time.time() - began, 1), "threads": args.threads,
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    if result.returncode != 0:
        sys.exit(f"train: haze train exited with {result.returncode}; see {args.work}/train.log")
    done = os.path.isdir(checkpoint(args.work, args.steps))
    log("train: " + ("done" if done else "stopped at --max-minutes; run again to go on"))
    return done


def evaluate(args):
    model = os.path.join(checkpoint(args.work, args.steps), "ema")
    if not os.path.isdir(model):
        sys.exit(f"evaluate: {model} does not exist yet; train first")
    os.makedirs(os.path.join(args.work, "cells"), exist_ok=True)
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    for scheduler, sigmas, steps in args.cells:
        name = cell_name(scheduler, sigmas, steps)
        path = os.path.join(args.work, "cells", name + ".json")
        if os.path.exists(path):
            continue
        if deadline and time.time() > deadline:
            log("evaluate: --max-minutes reached; run again to go on")
            return False
        command = [args.haze, "evaluate", "--model", model, "--scheduler", scheduler, "--steps", str(steps),
                   "--count", str(args.count), "--seed", "1", "--batch-size", "250", "--threads", str(args.threads),
                   "--reference", "fashion-mnist", "--features", "classifier", "--classifier", CLASSIFIER,
                   "--json", path + ".tmp"]
        if sigmas:
            command += ["--sigmas", sigmas]
        log(f"evaluate {name}: " + " ".join(command))
        with open(os.path.join(args.work, "cells", name + ".log"), "w") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            sys.exit(f"evaluate {name}: haze evaluate exited with {result.returncode}; see cells/{name}.log")
        os.replace(path + ".tmp", path)
        with open(path) as f:
            cell = json.load(f)
        log(f"evaluate {name}: FID {cell['fid']:.2f}, {cell['seconds_per_image'] * 1000:.1f} ms/image")
    return True


def load_cells(work):
    folder = os.path.join(work, "cells")
    cells = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                cells.append(json.load(f))
    return cells


def svg_plot(cells, path):
    """FID against steps (log scale), one polyline per sampler, legend at the right."""
    series = {}
    for c in cells:
        series.setdefault(label(c["scheduler"], c.get("sigmas")), []).append((c["steps"], c["fid"]))
    steps = sorted({s for points in series.values() for s, _ in points})
    fids = [f for points in series.values() for _, f in points]
    if not steps:
        return
    width, height, left, right, top, bottom = 760, 420, 60, 200, 20, 50
    x_lo, x_hi = math.log(min(steps)), math.log(max(steps)) if max(steps) > min(steps) else math.log(min(steps)) + 1
    y_hi = max(fids) * 1.05
    def px(s):
        return left + (math.log(s) - x_lo) / (x_hi - x_lo) * (width - left - right)
    def py(f):
        return top + (1 - f / y_hi) * (height - top - bottom)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>']
    for s in steps:
        out.append(f'<text x="{px(s):.1f}" y="{height - bottom + 16}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">sampling steps (log scale)</text>')
    ticks = 5
    for i in range(ticks + 1):
        f = y_hi * i / ticks
        out.append(f'<text x="{left - 6}" y="{py(f) + 4:.1f}" text-anchor="end">{f:.0f}</text>')
        out.append(f'<line x1="{left}" y1="{py(f):.1f}" x2="{width - right}" y2="{py(f):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="14" y="{(top + height - bottom) / 2}" transform="rotate(-90 14 {(top + height - bottom) / 2})" '
               'text-anchor="middle">FID (classifier features)</text>')
    for i, (name, points) in enumerate(sorted(series.items())):
        colour = colours[i % len(colours)]
        points.sort()
        coordinates = " ".join(f"{px(s):.1f},{py(f):.1f}" for s, f in points)
        out.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{px(s):.1f}" cy="{py(f):.1f}" r="3" fill="{colour}"/>' for s, f in points]
        y = top + 16 * i + 10
        out.append(f'<line x1="{width - right + 12}" y1="{y}" x2="{width - right + 32}" y2="{y}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 38}" y="{y + 4}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def report(args):
    cells = load_cells(args.work)
    if not cells:
        sys.exit(f"report: no evaluated cells in {args.work}/cells")
    by_sampler = {}
    for c in cells:
        by_sampler.setdefault(label(c["scheduler"], c.get("sigmas")), {})[c["steps"]] = c
    step_columns = sorted({c["steps"] for c in cells})
    lines = [f"{len(cells)} cells, {cells[0]['count']} samples each, EMA weights of {args.steps} training steps, "
             f"{cells[0].get('threads', '?')} threads. FID / KID / milliseconds per image (model calls per image):", "",
             "| sampler | " + " | ".join(f"{n} steps" for n in step_columns) + " |",
             "|---|" + "---|" * len(step_columns)]
    for name in sorted(by_sampler, key=lambda n: min(c["fid"] for c in by_sampler[n].values())):
        row = []
        for n in step_columns:
            c = by_sampler[name].get(n)
            row.append("–" if c is None else f"{c['fid']:.2f} / {c['kid_mean']:.2f} / {c['seconds_per_image'] * 1000:.1f} "
                       f"({c['model_calls']})")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.work, "report.md"), "w") as f:
        f.write(text)
    svg_plot(cells, os.path.join(args.work, "sampler-fid.svg"))
    print(text)
    print(f"wrote {args.work}/report.md and {args.work}/sampler-fid.svg")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["train", "evaluate", "report", "all"])
    parser.add_argument("--work", default=os.path.expanduser("~/haze-guide"), help="work folder (default ~/haze-guide)")
    parser.add_argument("--haze", default=os.path.join(REPO, ".build", "release", "haze"), help="the haze executable")
    parser.add_argument("--steps", type=int, default=10000, help="training steps of the model (default 10000, about 2 hours on 2 cores)")
    parser.add_argument("--count", type=int, default=2000, help="samples per cell (default 2000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cells", type=parse_cells, default=DEFAULT_CELLS,
                        help="SCHEDULER[/SIGMAS]:STEPS,... (default: every sampler at 10, 20, 50; DDPM at 1000)")
    parser.add_argument("--max-minutes", type=float, help="stop training or evaluating cleanly after this long")
    args = parser.parse_args()
    if args.phase != "report":
        remember_settings(args.work, {"steps": args.steps, "count": args.count})
    if args.phase in ("train", "all") and not train(args):
        return
    if args.phase in ("evaluate", "all") and not evaluate(args):
        return
    if args.phase in ("report", "all"):
        report(args)


if __name__ == "__main__":
    main()
