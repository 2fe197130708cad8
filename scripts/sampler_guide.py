#!/usr/bin/env python3
"""The measured sampler guide (issue 16): one well-trained Fashion-MNIST model, every sampler of
`haze sample` at 10, 20 and 50 steps (and DDPM at 1000), scored by FID and KID on Haze's
classifier features, with the sampling time per image; a Markdown table and an FID-vs-steps SVG.

The phases, each resumable (run the same command again to go on):

  train     haze train --data fashion-mnist --preset fmnist-small --steps STEPS (batch 64, the
            defaults of `haze train`: AdamW 2e-4, warmup, clipping, EMA), checkpointing every 500
            steps into WORK/run. With --max-minutes M it stops cleanly after M minutes; the next
            call resumes it bit-exactly.
  publish   writes the trained EMA weights as float16 safetensors (half the size) with their
            config into --model (default assets/fmnist-small-guide), the folder every later phase
            evaluates. Checked into the repository, it carries the guide over sessions.
  evaluate  for every cell (sampler, σ spacing, steps):
              haze evaluate --model MODEL --scheduler S --steps N --count COUNT --seed 1
                            --batch-size 250 --threads T --json CELLS/CELL.json
            Every cell starts from the same initial noise (seed 1). A finished cell is skipped, so
            with --cells in the repository (default Documentation/sampler-guide/cells) and
            --max-minutes, the work spreads over sessions.
  time      the sampling time per image of every cell, all in one run on one machine (cells
            evaluated in different sessions may have run on different CPUs): the same command
            with --count TIMING_COUNT, into --timing-dir (default Documentation/sampler-guide/timing),
            in TIMING_ROUNDS sweeps over the cells; each cell keeps its fastest run (a shared VM's
            noise only ever slows a run down).
  report    REPORT_DIR/report.md (the table) and REPORT_DIR/sampler-fid.svg (FID against steps,
            one line per sampler), from the cells that exist; milliseconds per image only from
            the time phase's cells (the evaluation runs may have shared the CPU). With the default
            REPORT_DIR it also rewrites the table between the sampler-guide markers of README.md
            and Documentation/quality.md.

    python3 scripts/sampler_guide.py train --work ~/haze-guide --steps 8000
    python3 scripts/sampler_guide.py publish --work ~/haze-guide --steps 8000
    python3 scripts/sampler_guide.py evaluate --max-minutes 120     # again in later sessions
    python3 scripts/sampler_guide.py time
    python3 scripts/sampler_guide.py report

Only the Python standard library and a release build of haze are needed (--haze, default
.build/release/haze). The work folder remembers --steps, and a cells folder holds one --count only.
Smoke test (a minute):
    python3 scripts/sampler_guide.py all --work /tmp/guide-smoke --steps 20 --count 64 \\
        --cells-dir /tmp/guide-smoke/cells --model /tmp/guide-smoke/model --report-dir /tmp/guide-smoke \\
        --timing-dir /tmp/guide-smoke/timing --timing-count 16 --cells ddim:10,dpm++2m:10,heun:5 --threads 1
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

from speed_table import cpu_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFIER = os.path.join(REPO, "assets", "fmnist-classifier.safetensors")
MODEL = os.path.join(REPO, "assets", "fmnist-small-guide")
CELLS = os.path.join(REPO, "Documentation", "sampler-guide", "cells")
REPORT = os.path.join(REPO, "Documentation", "sampler-guide")
TIMING = os.path.join(REPORT, "timing")
# The documents whose table `report` rewrites, between these two lines.
DOCUMENTS = [os.path.join(REPO, "README.md"), os.path.join(REPO, "Documentation", "quality.md")]
BEGIN = "<!-- sampler-guide table: written by scripts/sampler_guide.py report -->"
END = "<!-- sampler-guide table end -->"

# (scheduler, σ spacing or None for the schedule's own, steps); DDPM also at its full 1000.
SAMPLERS = [("ddim", None), ("ddpm", None), ("euler", None), ("euler-a", None), ("heun", None),
            ("dpm++2m", None), ("dpm++2m", "karras"), ("dpm++2m-sde", None), ("unipc", None)]
DEFAULT_CELLS = [(s, sig, n) for n in (10, 20, 50) for s, sig in SAMPLERS] + [("ddpm", None, 1000)]  # column by column


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


def publish(args):
    """The EMA weights of the finished run as float16 safetensors (the guide's model from then on)."""
    source = os.path.join(checkpoint(args.work, args.steps), "ema")
    if not os.path.isdir(source):
        sys.exit(f"publish: {source} does not exist yet; train first")
    weights = os.path.join(source, "diffusion_pytorch_model.safetensors")
    with open(weights, "rb") as f:
        header_size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_size))
        data = f.read()
    tensors, chunks, offset = {}, [], 0
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        if entry["dtype"] != "F32":
            sys.exit(f"publish: {weights}: {name} is {entry['dtype']}, expected F32")
        begin, end = entry["data_offsets"]
        count = (end - begin) // 4
        values = struct.unpack(f"<{count}f", data[begin:end])
        try:
            chunk = struct.pack(f"<{count}e", *values)
        except OverflowError:
            sys.exit(f"publish: {weights}: {name} has a value beyond float16's range")
        tensors[name] = {"dtype": "F16", "shape": entry["shape"], "data_offsets": [offset, offset + len(chunk)]}
        chunks.append(chunk)
        offset += len(chunk)
    tensors["__metadata__"] = {"format": "pt", "source": f"haze sampler guide, EMA of {args.steps} training steps"}
    encoded = json.dumps(tensors, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    staging = args.model.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    with open(os.path.join(staging, "diffusion_pytorch_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))
    for name in ("config.json", "scheduler_config.json"):
        shutil.copy(os.path.join(source, name), staging)
    with open(os.path.join(staging, "guide.json"), "w") as f:
        json.dump({"training_steps": args.steps, "weights": "float16 rounding of the float32 EMA weights"}, f, indent=2)
    shutil.rmtree(args.model, ignore_errors=True)
    os.replace(staging, args.model)
    log(f"publish: wrote {args.model} ({offset / 1e6:.1f} MB of float16 weights)")


def training_steps(model):
    with open(os.path.join(model, "guide.json")) as f:
        return json.load(f)["training_steps"]


def run_cells(args, folder, count, phase, rounds=1):
    """`haze evaluate` for every cell of FOLDER with fewer than ROUNDS runs, one sweep over the cells
    after another (with ROUNDS > 1 a cell keeps its fastest time, and every run's in
    seconds_per_image_runs); False when --max-minutes ran out first."""
    if not os.path.isdir(args.model):
        sys.exit(f"{phase}: the model folder {args.model} does not exist; train and publish first")
    os.makedirs(folder, exist_ok=True)
    for done in load_cells(folder):
        if done["count"] != count:
            sys.exit(f"{phase}: {folder} holds cells of {done['count']} samples, not {count}; use another folder")
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    for scheduler, sigmas, steps, sweep in [cell + (sweep,) for sweep in range(1, rounds + 1) for cell in args.cells]:
        name = cell_name(scheduler, sigmas, steps)
        path = os.path.join(folder, name + ".json")
        runs = []
        if os.path.exists(path):
            with open(path) as f:
                done = json.load(f)
            runs = done.get("seconds_per_image_runs", [done["seconds_per_image"]])
        if len(runs) >= sweep:
            continue
        if deadline and time.time() > deadline:
            log(f"{phase}: --max-minutes reached; run again to go on")
            return False
        command = [args.haze, "evaluate", "--model", args.model, "--scheduler", scheduler, "--steps", str(steps),
                   "--count", str(count), "--seed", "1", "--batch-size", "250", "--threads", str(args.threads),
                   "--reference", "fashion-mnist", "--features", "classifier", "--classifier", CLASSIFIER,
                   "--json", path + ".tmp"]
        if sigmas:
            command += ["--sigmas", sigmas]
        log(f"{phase} {name}: " + " ".join(command))
        os.makedirs(os.path.join(args.work, "logs"), exist_ok=True)
        with open(os.path.join(args.work, "logs", f"{phase}-{name}.log"), "w") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            sys.exit(f"{phase} {name}: haze evaluate exited with {result.returncode}; see {args.work}/logs/{phase}-{name}.log")
        with open(path + ".tmp") as f:
            cell = json.load(f)
        cell.update({"cpu": cpu_name(), "training_steps": training_steps(args.model),
                     "model": os.path.relpath(os.path.abspath(args.model), REPO), "date": time.strftime("%Y-%m-%d")})
        seconds = cell["seconds_per_image"]
        if rounds > 1:
            runs.append(seconds)
            cell.update({"seconds_per_image_runs": runs, "seconds_per_image": min(runs)})
        with open(path + ".tmp", "w") as f:
            json.dump(cell, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)
        log(f"{phase} {name}: FID {cell['fid']:.2f}, {seconds * 1000:.1f} ms/image")
    return True


def load_cells(folder):
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
    cells = load_cells(args.cells_dir)
    if not cells:
        sys.exit(f"report: no evaluated cells in {args.cells_dir}")
    timing = {cell_name(c["scheduler"], c.get("sigmas"), c["steps"]): c for c in load_cells(args.timing_dir)}
    cpus = sorted({c["cpu"] for c in (timing.values() if timing else cells)})
    by_sampler = {}
    for c in cells:
        timed = timing.get(cell_name(c["scheduler"], c.get("sigmas"), c["steps"]))
        c["milliseconds"] = f" / {timed['seconds_per_image'] * 1000:.1f}" if timed else ""
        by_sampler.setdefault(label(c["scheduler"], c.get("sigmas")), {})[c["steps"]] = c
    step_columns = sorted({c["steps"] for c in cells})
    # Times only from the time phase: the evaluation runs may have shared the CPU or been paused.
    rounds = min((len(c.get("seconds_per_image_runs", [0])) for c in timing.values()), default=0)
    runs = "one run" if rounds == 1 else f"the fastest of {rounds} runs"
    source = (f"; sampling timed separately, {runs} of {next(iter(timing.values()))['count']} samples per cell on "
              f"{' / '.join(cpus)}, {next(iter(timing.values())).get('threads', '?')} threads" if timing else "")
    lines = [f"{len(cells)} cells, {cells[0]['count']} samples each, EMA weights of {cells[0]['training_steps']} training "
             f"steps{source}. FID / KID{' / milliseconds per image' if timing else ''} (model calls per image):", "",
             "| sampler | " + " | ".join(f"{n} steps" for n in step_columns) + " |",
             "|---|" + "---|" * len(step_columns)]
    for name in sorted(by_sampler, key=lambda n: min(c["fid"] for c in by_sampler[n].values())):
        row = []
        for n in step_columns:
            c = by_sampler[name].get(n)
            row.append("–" if c is None else f"{c['fid']:.2f} / {c['kid_mean']:.3g}{c['milliseconds']} ({c['model_calls']})")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    os.makedirs(args.report_dir, exist_ok=True)
    with open(os.path.join(args.report_dir, "report.md"), "w") as f:
        f.write(text)
    svg_plot(cells, os.path.join(args.report_dir, "sampler-fid.svg"))
    print(text)
    print(f"wrote {args.report_dir}/report.md and {args.report_dir}/sampler-fid.svg")
    if os.path.abspath(args.report_dir) == REPORT:
        for path in DOCUMENTS:
            replace_block(path, text)
            print(f"rewrote the table in {os.path.relpath(path, REPO)}")


def replace_block(path, text):
    """The lines between BEGIN and END in PATH become TEXT."""
    with open(path) as f:
        document = f.read()
    begin, end = document.find(BEGIN), document.find(END)
    if begin < 0 or end < begin:
        sys.exit(f"report: {path} lacks the lines {BEGIN} … {END} around the sampler table")
    document = document[:begin + len(BEGIN)] + "\n" + text + document[end:]
    with open(path + ".tmp", "w") as f:
        f.write(document)
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["train", "publish", "evaluate", "time", "report", "all"])
    parser.add_argument("--work", default=os.path.expanduser("~/haze-guide"), help="work folder (default ~/haze-guide)")
    parser.add_argument("--haze", default=os.path.join(REPO, ".build", "release", "haze"), help="the haze executable")
    parser.add_argument("--steps", type=int, default=8000, help="training steps of the model (default 8000, about 100 minutes on 2 cores)")
    parser.add_argument("--model", default=MODEL, help=f"the published model folder (default {os.path.relpath(MODEL, REPO)})")
    parser.add_argument("--cells-dir", default=CELLS, help=f"finished cells (default {os.path.relpath(CELLS, REPO)})")
    parser.add_argument("--report-dir", default=REPORT, help=f"where report.md and the SVG go (default {os.path.relpath(REPORT, REPO)})")
    parser.add_argument("--count", type=int, default=2000, help="samples per cell (default 2000)")
    parser.add_argument("--timing-dir", default=TIMING, help=f"the time phase's cells (default {os.path.relpath(TIMING, REPO)})")
    parser.add_argument("--timing-count", type=int, default=100, help="samples per cell of the time phase (default 100)")
    parser.add_argument("--timing-rounds", type=int, default=3,
                        help="sweeps of the time phase over the cells; each cell keeps its fastest (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cells", type=parse_cells, default=DEFAULT_CELLS,
                        help="SCHEDULER[/SIGMAS]:STEPS,... (default: every sampler at 10, 20, 50; DDPM at 1000)")
    parser.add_argument("--max-minutes", type=float, help="stop training or evaluating cleanly after this long")
    args = parser.parse_args()
    if args.phase in ("train", "publish", "all"):
        remember_settings(args.work, {"steps": args.steps})
    if args.phase in ("train", "all") and not train(args):
        return
    if args.phase in ("publish", "all"):
        publish(args)
    if args.phase in ("evaluate", "all") and not run_cells(args, args.cells_dir, args.count, "evaluate"):
        return
    if args.phase in ("time", "all") and not run_cells(args, args.timing_dir, args.timing_count, "time", args.timing_rounds):
        return
    if args.phase in ("report", "all"):
        report(args)


if __name__ == "__main__":
    main()
