#!/usr/bin/env python3
"""Crash-consistency soak of `haze train` under kill -9 (issue 15, part 2).

What it does
------------
1. Writes a tiny dataset: 32 random 8x8 grayscale PNGs (encoded here with zlib + struct).
2. For each of two checkpoint settings — a checkpoint after every step (`--checkpoint-every 1`,
   40 steps: most of the time goes into checkpoint writes) and one every 10 steps (120 steps: most
   of the time goes into steps) — trains an uninterrupted reference run (fmnist-tiny, batch 8,
   `--threads 1 --seed 3 --log-every 1 --sample-every 0 --no-tensorboard`).
3. Soaks the same settings: starts `haze train --out RUN ...`, freezes it after a random delay
   (seeded) with SIGSTOP, records where it was, kills it with SIGKILL, and continues it with
   `haze train --resume RUN --threads 1 --no-tensorboard`, again and again until the run completes.
   Delays are spread so that kills land during start-up (a quarter of them are shorter than the
   measured start-up time), during steps and inside checkpoint writes. A run whose kill came before
   its first checkpoint has nothing to resume: the script checks that `--resume` refuses it
   cleanly (exit 1, "no checkpoint to resume from") and starts it again with the original `--out`
   command. When a run completes before its setting's share of the kills (half of --kills each) is
   reached, another run ("round") of the same setting starts; every round is checked.
4. Classifies each kill from the frozen process (its output so far, its open files in /proc/PID/fd)
   and the run folder at that instant (temporary names `checkpoints/.tmp-step-*` and `.NAME.tmp-PID`,
   checkpoint folders newer than `latest`, more checkpoint folders than kept):
     start-up                 before the trainer said "training N parameters" / "resuming"
     before first checkpoint  training, and the run has no checkpoint yet (no `latest`)
     step                     training between checkpoints (including the metrics.jsonl append)
     checkpoint write         inside Checkpoint.write or the loss-curve write (sub-phase shown)
   The SIGKILL lands exactly where the SIGSTOP froze the process, so the picture is exact; the
   kill is still a kill -9 (the process runs no code after the SIGSTOP).
5. Checks every round: every resume (and restart) succeeded; no temporary name (`.*.tmp-*`,
   `.tmp-step-*`) is left anywhere in RUN; every file of the final checkpoint
   (`checkpoints/step-000000S/{model,ema}/diffusion_pytorch_model.safetensors`, the configs,
   `optimizer.safetensors`, `trainer_state.json`) is byte-identical to the reference's;
   `metrics.jsonl` has exactly one line per step, each byte-identical to the reference's line
   once the wall-clock field `images_per_second` is removed (that field alone is excluded).
   Extra checks: `latest`, the set of kept checkpoint folders and all their files, and `loss.svg`
   are identical to the reference's.
6. Prints a summary (kills, where they landed, resumes, time, check results) and exits 1 if any
   check failed (the work directory is then kept for inspection, and its path printed: logs/ holds
   the output of every haze process, kills.tsv one line per kill).

How to run
----------
From the repository root, after a release build (`swift build -c release --product haze`):

    python3 scripts/kill_soak.py            # 100 kills (make soak)
    python3 scripts/kill_soak.py --smoke    # about 10 kills
    python3 scripts/kill_soak.py --kills 300 --seed 7 --work /tmp/soak --keep

Options: --kills N (default 100), --seed S (delays and data; default 1), --haze PATH (default
.build/release/haze), --work DIR (an empty or new directory, kept; default a temporary directory,
deleted at the end unless --keep or a check failed), --smoke.

How long it takes
-----------------
About 30-60 seconds for 100 kills (32 s measured on a 2-core machine shared with other work; each
haze process runs with --threads 1, and a checkpoint fsyncs about 17 MB, so a slow disk makes it
longer); --smoke takes about 5-10 seconds. Standard library only; not part of `make test`.
"""
import argparse
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The two soaked settings: checkpoint interval, total steps (--smoke: smoke_steps), and the width
# of the random delay window after start-up, in checkpoint intervals (measured on the reference run).
SETTINGS = [
    dict(name="ckpt-every-1", checkpoint_every=1, steps=40, smoke_steps=6, window_intervals=5.0),
    dict(name="ckpt-every-10", checkpoint_every=10, steps=120, smoke_steps=30, window_intervals=2.5),
]
COMMON = ["--preset", "fmnist-tiny", "--batch-size", "8", "--sample-every", "0", "--log-every", "1",
          "--no-tensorboard", "--threads", "1", "--seed", "3"]
KEEP_CHECKPOINTS = 3          # haze's default --keep-checkpoints
STARTUP_SHARE = 0.25          # share of delays drawn inside the measured start-up time
TIMING_FIELD = "images_per_second"
CATEGORIES = ["start-up", "before first checkpoint", "step", "checkpoint write"]
MARKER = re.compile(r"^(training \d+ parameters|resuming )", re.M)


# ---------------------------------------------------------------------------------------------
# Data

def png_gray(width, height, pixels):
    """A grayscale 8-bit PNG (filter 0 on every row)."""
    raw = b"".join(b"\x00" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_dataset(folder, seed, count=32, side=8):
    os.makedirs(folder)
    rng = random.Random(seed)
    for i in range(count):
        with open(os.path.join(folder, "img%03d.png" % i), "wb") as f:
            f.write(png_gray(side, side, [rng.randrange(256) for _ in range(side * side)]))


# ---------------------------------------------------------------------------------------------
# Run folders

def is_temporary(name):
    return (name.startswith(".") and ".tmp-" in name) or name.startswith(".tmp-step-")


def temporaries(run):
    """Paths (relative to run) of every temporary name anywhere in the run folder."""
    found = []
    for folder, dirs, files in os.walk(run):
        for name in dirs + files:
            if is_temporary(name):
                found.append(os.path.relpath(os.path.join(folder, name), run))
    return sorted(found)


def checkpoint_folders(run):
    """{step: complete?} of RUN/checkpoints/step-N folders."""
    folder = os.path.join(run, "checkpoints")
    result = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        m = re.fullmatch(r"step-(\d+)", name)
        if m:
            result[int(m.group(1))] = os.path.exists(os.path.join(folder, name, "trainer_state.json"))
    return result


def latest_step(run):
    try:
        with open(os.path.join(run, "latest")) as f:
            m = re.search(r"step-(\d+)", f.read())
            return int(m.group(1)) if m else -1
    except FileNotFoundError:
        return None


def open_files(pid, run):
    """Paths under run (other than .lock) that process pid has open, relative to run."""
    root = os.path.realpath(run)
    paths = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target == root or target.startswith(root + "/"):
                rel = os.path.relpath(target, root)
                if rel != ".lock":
                    paths.append(rel)
    except OSError:
        pass
    return sorted(paths)


def process_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# ---------------------------------------------------------------------------------------------
# Classification of a kill

def classify(output, run, pid):
    """(category, detail) of a process frozen by SIGSTOP, from its output and the run folder."""
    if "done:" in output:
        return "step", "after the last checkpoint (exiting)"
    if not MARKER.search(output):
        temps = temporaries(run)
        return "start-up", ("rewriting metrics.jsonl" if any("metrics.jsonl.tmp-" in t for t in temps) else "")
    temps = temporaries(run)
    names = [os.path.basename(t) for t in temps]
    files = open_files(pid, run)
    folders = checkpoint_folders(run)
    latest = latest_step(run)
    complete = [s for s, ok in folders.items() if ok]
    if any(n.startswith(".tmp-step-") for n in names):
        return "checkpoint write", "writing the .tmp-step folder"
    if any(n.startswith(".latest.tmp-") for n in names):
        return "checkpoint write", "writing latest"
    if any(n.startswith(".loss.svg.tmp-") for n in names):
        return "checkpoint write", "writing loss.svg"
    if temps:
        return "checkpoint write", "other temporary " + ", ".join(temps)
    if complete and (latest is None or max(complete) > latest):
        return "checkpoint write", "renamed into place, latest not yet updated"
    if len(folders) > KEEP_CHECKPOINTS or not all(folders.values()):
        return "checkpoint write", "removing old checkpoints"
    if any(f in (".", "checkpoints") or f.startswith("checkpoints/") or f == "loss.svg" or f == "latest" for f in files):
        return "checkpoint write", "syncing a folder (" + ", ".join(files) + ")"
    detail = "appending to metrics.jsonl" if "metrics.jsonl" in files else ""
    if latest is None:
        return "before first checkpoint", detail
    return "step", detail


# ---------------------------------------------------------------------------------------------
# Soak

class Soak:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.data = os.path.join(work, "data")
        self.rng = random.Random(args.seed)
        self.kills = []            # dicts: setting, round, delay, category, detail
        self.resumes = 0
        self.restarts = 0
        self.refusals = 0
        self.failures = []         # human-readable descriptions
        self.checks = []           # (name, ok, detail)
        self.rounds = []           # (setting name, round, run folder)
        self.round_restarts = {}   # run folder -> restarts with --out in it
        self.launches = 0
        self.current = None        # the running process, for Ctrl-C

    def fresh_command(self, run, setting):
        return [self.args.haze, "train", "--data", self.data, "--out", run, "--steps", str(setting["steps"]),
                "--checkpoint-every", str(setting["checkpoint_every"])] + COMMON

    def resume_command(self, run):
        return [self.args.haze, "train", "--resume", run, "--threads", "1", "--no-tensorboard"]

    def log_path(self, run):
        self.launches += 1
        return os.path.join(self.work, "logs", "%05d-%s.log" % (self.launches, os.path.basename(run)))

    def start(self, command, log):
        f = open(log, "wb")
        try:
            self.current = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.work)
        finally:
            f.close()
        return self.current

    def reference(self, setting):
        """The uninterrupted run; returns (folder, start-up seconds, seconds per step)."""
        run = os.path.join(self.work, "reference-" + setting["name"])
        log = self.log_path(run)
        began = time.monotonic()
        p = self.start(self.fresh_command(run, setting), log)
        startup = None
        while p.poll() is None:
            if startup is None and MARKER.search(read(log)):
                startup = time.monotonic() - began
            time.sleep(0.002)
        total = time.monotonic() - began
        if p.returncode != 0:
            raise SystemExit("the reference run failed (exit %d): %s\n%s" % (p.returncode, " ".join(p.args), tail(read(log))))
        startup = startup or 0.1
        per_step = max((total - startup) / setting["steps"], 0.001)
        print("reference %s: %d steps in %.1f s (start-up %.0f ms, %.0f ms per step including checkpoints)"
              % (setting["name"], setting["steps"], total, startup * 1000, per_step * 1000), flush=True)
        return run, startup, per_step

    def delay(self, setting, startup, per_step):
        if self.rng.random() < STARTUP_SHARE:
            return self.rng.uniform(0, startup)
        return startup + self.rng.uniform(0, setting["window_intervals"] * setting["checkpoint_every"] * per_step)

    def kill_round(self, setting, number, startup, per_step):
        """One run of `setting` under kills until it completes. Returns the run folder, or None if
        a resume failed."""
        run = os.path.join(self.work, "soak-%s-round-%d" % (setting["name"], number))
        self.rounds.append((setting["name"], number, run))
        command, kind = self.fresh_command(run, setting), "start"
        attempts = 0
        while True:
            attempts += 1
            if attempts > 200 * max(setting["steps"], 1):
                self.failures.append("%s: no progress after %d attempts" % (run, attempts))
                return None
            delay = self.delay(setting, startup, per_step)
            log = self.log_path(run)
            p = self.start(command, log)
            category, detail = "unknown", "not frozen"
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGSTOP)
                deadline = time.monotonic() + 5
                while process_state(p.pid) not in ("T", "t", "Z", "X", "gone") and time.monotonic() < deadline:
                    time.sleep(0.001)
                category, detail = classify(read(log), run, p.pid)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            self.current = None
            output = read(log)
            if p.returncode == -signal.SIGKILL:
                self.kills.append(dict(setting=setting["name"], round=number, delay=delay, category=category,
                                       detail=detail, launched=kind, latest=latest_step(run), log=os.path.basename(log)))
                with open(os.path.join(self.work, "kills.tsv"), "a") as f:
                    if len(self.kills) == 1:
                        f.write("kill\tsetting\tround\tlaunched\tdelay_ms\tcategory\tdetail\tlatest_after\tlog\n")
                    k = self.kills[-1]
                    f.write("%d\t%s\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\n" % (len(self.kills), k["setting"], number, kind, delay * 1000,
                                                                      category, detail, k["latest"], k["log"]))
            elif p.returncode == 0:
                if "done: %d steps" % setting["steps"] not in output:
                    self.failures.append("%s exited 0 without finishing %d steps: %s\n%s"
                                         % (kind, setting["steps"], " ".join(command), tail(output)))
                    return None
                return run
            else:
                self.failures.append("%s failed with exit %s (not killed): %s\n%s"
                                     % (kind, p.returncode, " ".join(command), tail(output)))
                return None
            # Continue the run.
            if latest_step(run) is not None:
                command, kind = self.resume_command(run), "resume"
                self.resumes += 1
                continue
            # No checkpoint yet: --resume must refuse, without writing; then the original command again.
            before = snapshot(run)
            r = subprocess.run(self.resume_command(run), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=self.work)
            text = r.stdout.decode("utf-8", "replace")
            if r.returncode != 1 or "no checkpoint to resume from" not in text or snapshot(run) != before:
                self.failures.append("--resume of a run without a checkpoint did not refuse cleanly (exit %d; folder %s): %s\n%s"
                                     % (r.returncode, "unchanged" if snapshot(run) == before else "changed",
                                        " ".join(self.resume_command(run)), tail(text)))
                return None
            self.refusals += 1
            self.restarts += 1
            self.round_restarts[run] = self.round_restarts.get(run, 0) + 1
            command, kind = self.fresh_command(run, setting), "restart"

    def check_round(self, setting, run, reference):
        problems = {}

        temps = temporaries(run)
        if temps:
            problems.setdefault("leftovers", []).append("%s: left %s" % (run, ", ".join(temps)))

        final = "checkpoints/step-%07d" % setting["steps"]
        for rel in files_under(os.path.join(reference, final)) or ["(reference has no %s)" % final]:
            problems_for = compare_file(os.path.join(reference, final, rel), os.path.join(run, final, rel))
            if problems_for:
                problems.setdefault("final checkpoint", []).append("%s/%s: %s" % (final, rel, problems_for))

        problems_metrics = compare_metrics(os.path.join(reference, "metrics.jsonl"), os.path.join(run, "metrics.jsonl"),
                                           setting["steps"])
        if problems_metrics:
            restarts = self.round_restarts.get(run, 0)
            problems_metrics.append("this round had %d restart(s) with the original --out command after kills before "
                                    "its first checkpoint" % restarts)
            problems.setdefault("metrics.jsonl", []).extend("%s/metrics.jsonl: %s" % (run, p) for p in problems_metrics)

        extra = []
        ref_folders, run_folders = sorted(checkpoint_folders(reference)), sorted(checkpoint_folders(run))
        if ref_folders != run_folders:
            extra.append("checkpoint folders %s, reference %s" % (run_folders, ref_folders))
        else:
            for step in ref_folders:
                name = "checkpoints/step-%07d" % step
                for rel in files_under(os.path.join(reference, name)):
                    d = compare_file(os.path.join(reference, name, rel), os.path.join(run, name, rel))
                    if d:
                        extra.append("%s/%s: %s" % (name, rel, d))
            ref_names = set(files_under(os.path.join(reference, "checkpoints")))
            run_names = set(files_under(os.path.join(run, "checkpoints")))
            if ref_names != run_names:
                extra.append("checkpoints/ files differ: only in soak %s, only in reference %s"
                             % (sorted(run_names - ref_names), sorted(ref_names - run_names)))
        for rel in ["latest", "loss.svg"]:
            d = compare_file(os.path.join(reference, rel), os.path.join(run, rel))
            if d:
                extra.append("%s: %s" % (rel, d))
        if extra:
            problems.setdefault("extra", []).extend("%s: %s" % (run, e) for e in extra)
        return problems


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text, lines=12):
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def snapshot(folder):
    """Names, sizes and modification times of everything in a folder (to see that nothing changed)."""
    result = []
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            result.append((os.path.relpath(path, folder), st.st_size, st.st_mtime_ns))
    return sorted(result)


def files_under(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(out)


def compare_file(reference, soaked):
    """None if the files are byte-identical, else what differs."""
    if not os.path.exists(reference):
        return "missing in the reference" if os.path.exists(soaked) else None
    if not os.path.exists(soaked):
        return "missing"
    with open(reference, "rb") as f:
        a = f.read()
    with open(soaked, "rb") as f:
        b = f.read()
    if a == b:
        return None
    first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return "differs (%d bytes, reference %d; first difference at byte %d)" % (len(b), len(a), first)


def without_timing(line):
    line = re.sub(r',"%s":[^,}]*' % TIMING_FIELD, "", line)
    return re.sub(r'"%s":[^,}]*,?' % TIMING_FIELD, "", line)


def compare_metrics(reference, soaked, steps):
    problems = []
    ref_lines = read(reference).splitlines()
    lines = read(soaked).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        problems.append("does not end with a newline")
    seen = {}
    for number, line in enumerate(lines, 1):
        m = re.search(r'"step":(\d+)[,}]', line)
        if not m:
            problems.append("line %d has no step: %r" % (number, line[:120]))
            continue
        seen.setdefault(int(m.group(1)), []).append(number)
    duplicated = {s: n for s, n in seen.items() if len(n) > 1}
    missing = [s for s in range(1, steps + 1) if s not in seen]
    if len(lines) != steps:
        problems.append("%d lines for %d steps" % (len(lines), steps))
    if duplicated:
        problems.append("steps logged more than once (step: line numbers): %s"
                        % ", ".join("%d: %s" % (s, n) for s, n in sorted(duplicated.items())[:12])
                        + (" ..." if len(duplicated) > 12 else ""))
    if missing:
        problems.append("steps missing: %s" % missing[:20])
    if len(ref_lines) != steps:
        problems.append("the REFERENCE has %d lines for %d steps" % (len(ref_lines), steps))
    differing = []
    for i, (a, b) in enumerate(zip(ref_lines, lines)):
        if without_timing(a) != without_timing(b):
            differing.append(i + 1)
    if differing and not problems:
        problems.append("lines differ from the reference's (without %s): %s; first: %r vs reference %r"
                        % (TIMING_FIELD, differing[:20], lines[differing[0] - 1], ref_lines[differing[0] - 1]))
    elif differing:
        # Tell apart wrong values from extra lines: the last line logged for each step against the reference's.
        last = {s: lines[n[-1] - 1] for s, n in seen.items()}
        reference_by_step = {}
        for line in ref_lines:
            m = re.search(r'"step":(\d+)[,}]', line)
            if m:
                reference_by_step[int(m.group(1))] = line
        wrong = [s for s in sorted(last) if without_timing(last[s]) != without_timing(reference_by_step.get(s, ""))]
        problems.append("the last line logged for each step %s"
                        % ("equals the reference's (without %s)" % TIMING_FIELD if not wrong
                           else "differs from the reference's for steps %s" % wrong[:20]))
        first_duplicate = min(duplicated) if duplicated else None
        if first_duplicate is not None:
            a, b = seen[first_duplicate][:2]
            problems.append("step %d: line %d %s line %d (without %s)" % (
                first_duplicate, a, "equals" if without_timing(lines[a - 1]) == without_timing(lines[b - 1]) else "differs from",
                b, TIMING_FIELD))
    if not problems and any(without_timing(l) == l for l in lines):
        problems.append("a line without %s (the exclusion would hide nothing; format changed?)" % TIMING_FIELD)
    return problems


# ---------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description="Crash-consistency soak of haze train under kill -9 (see the docstring).")
    parser.add_argument("--kills", type=int, default=100, help="kills in total, at least (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the delays and the data (default 1)")
    parser.add_argument("--haze", default=os.path.join(REPO, ".build", "release", "haze"), help="the haze binary")
    parser.add_argument("--work", help="work directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--smoke", action="store_true", help="a quick run: about 10 kills")
    args = parser.parse_args()
    if args.smoke:
        args.kills = 10
        for setting in SETTINGS:
            setting["steps"] = setting["smoke_steps"]
    args.haze = os.path.abspath(args.haze)
    if not os.access(args.haze, os.X_OK):
        raise SystemExit("no haze binary at %s (swift build -c release --product haze)" % args.haze)
    sources = os.path.join(REPO, "Sources")
    if args.haze == os.path.join(REPO, ".build", "release", "haze") and os.path.isdir(sources):
        built = os.path.getmtime(args.haze)
        newer = [p for p in (os.path.join(r, n) for r, _, fs in os.walk(sources) for n in fs) if os.path.getmtime(p) > built]
        if newer:
            print("warning: %s is older than %d source files (e.g. %s): rebuild it"
                  % (args.haze, len(newer), os.path.relpath(newer[0], REPO)), flush=True)

    if args.work:
        work = os.path.abspath(args.work)
        if os.path.exists(work) and os.listdir(work):
            raise SystemExit("--work %s is not empty" % work)
        os.makedirs(work, exist_ok=True)
        owned = False
    else:
        work = tempfile.mkdtemp(prefix="haze-kill-soak-")
        owned = True
    os.makedirs(os.path.join(work, "logs"))
    began = time.monotonic()
    soak = Soak(args, work)
    make_dataset(soak.data, args.seed)
    print("kill soak: %s, work directory %s, %d kills, seed %d" % (args.haze, work, args.kills, args.seed), flush=True)

    problems = {}
    try:
        share = [args.kills - args.kills // 2, args.kills // 2]
        for setting, target in zip(SETTINGS, share):
            reference, startup, per_step = soak.reference(setting)
            number = 0
            while sum(k["setting"] == setting["name"] for k in soak.kills) < target or number == 0:
                number += 1
                before = len(soak.kills)
                run = soak.kill_round(setting, number, startup, per_step)
                print("  %s round %d: %d kills%s" % (setting["name"], number, len(soak.kills) - before,
                                                    "" if run else " — STOPPED (resume failed)"), flush=True)
                if run is None:
                    break
                for name, items in soak.check_round(setting, run, reference).items():
                    problems.setdefault(name, []).extend(items)
            if soak.failures:
                break
    except KeyboardInterrupt:
        if soak.current is not None and soak.current.poll() is None:
            os.kill(soak.current.pid, signal.SIGKILL)
            soak.current.wait()
        print("interrupted; work directory kept: %s" % work)
        sys.exit(130)
    elapsed = time.monotonic() - began

    # Summary.
    rounds_done = len(soak.rounds)
    print()
    print("== kill soak summary (seed %d)" % args.seed)
    print("kills: %d   resumes: %d   restarts with --out (no checkpoint yet; --resume refused as expected %d times): %d"
          % (len(soak.kills), soak.resumes, soak.refusals, soak.restarts))
    print("rounds: %s" % ", ".join("%s: %d" % (s["name"], sum(r[0] == s["name"] for r in soak.rounds)) for s in SETTINGS))
    print("total time: %.1f s" % elapsed)
    print("where the kills landed:")
    for setting in SETTINGS:
        mine = [k for k in soak.kills if k["setting"] == setting["name"]]
        print("  %s (%d kills):" % (setting["name"], len(mine)))
        for category in CATEGORIES:
            these = [k for k in mine if k["category"] == category]
            details = {}
            for k in these:
                if k["detail"]:
                    details[k["detail"]] = details.get(k["detail"], 0) + 1
            extra = "  (" + ", ".join("%s %d" % kv for kv in sorted(details.items(), key=lambda kv: -kv[1])) + ")" if details else ""
            print("    %-24s %4d%s" % (category, len(these), extra))
    totals = {c: sum(k["category"] == c for k in soak.kills) for c in CATEGORIES}
    print("  all: " + ", ".join("%s %d" % (c, totals[c]) for c in CATEGORIES))
    missing = [c for c in CATEGORIES if totals[c] == 0]
    if missing and not args.smoke:
        print("  note: no kill landed in: %s (try another --seed or more --kills)" % ", ".join(missing))

    print("checks (%d completed rounds, each against its setting's uninterrupted reference run):"
          % (rounds_done - (1 if soak.failures else 0)))
    checks = [
        ("resumes", "every resume and restart succeeded", soak.failures),
        ("leftovers", "no temporary file or folder (.*.tmp-*, .tmp-step-*) left in any run folder", problems.get("leftovers", [])),
        ("final checkpoint", "final checkpoint files (model/ and ema/ weights and configs, optimizer.safetensors, "
         "trainer_state.json) byte-identical to the reference's", problems.get("final checkpoint", [])),
        ("metrics.jsonl", "metrics.jsonl: one line per step, each byte-identical to the reference's without %s "
         "(excluded: wall-clock)" % TIMING_FIELD, problems.get("metrics.jsonl", [])),
        ("extra", "extra: latest, kept checkpoint folders (all files) and loss.svg identical to the reference's",
         problems.get("extra", [])),
    ]
    failed = False
    for name, text, items in checks:
        ok = not items and (rounds_done > 0)
        failed |= not ok
        print("  %s  %s" % ("PASS" if ok else "FAIL", text))
        for item in items[:20]:
            print("        " + item.replace("\n", "\n        "))
        if len(items) > 20:
            print("        ... and %d more" % (len(items) - 20))
    print("excluded field: metrics.jsonl %s (wall-clock; cannot repeat)" % TIMING_FIELD)
    print("result: %s" % ("FAIL" if failed else "PASS"))

    if failed or args.keep or not owned:
        print("work directory kept: %s (logs of every haze process in logs/, every kill in kills.tsv)" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
