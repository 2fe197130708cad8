#!/usr/bin/env python3
"""Sample quality of Haze's trainer against diffusers' recipe (issue 22): fmnist-s on
Fashion-MNIST, several seeds per side, scored by Haze's own FID on its classifier features.

For every seed S and side:

  torch  diffusers' UNet2DModel with the fmnist-s config (W1_CFG of bench_torch.py), trained in
         a plain float32 loop with the recipe of diffusers' train_unconditional.py (as in
         scripts/make_trainer_lockstep_fixtures.py): DDPMScheduler linear, 1000 steps, epsilon
         objective, MSE; AdamW lr 2e-4, betas (0.9, 0.999), eps 1e-8, weight decay 0.01;
         get_scheduler("constant_with_warmup", num_warmup_steps=100); clip_grad_norm_ 1.0;
         EMAModel(decay 0.995, use_ema_warmup, inv_gamma 1, power 3/4); batch 64; the
         Fashion-MNIST train split scaled to [-1, 1], no flips, a seeded random order per
         epoch (full batches, wrapping into the next epoch as Haze's loader does).
         torch.manual_seed(S) before building the model; the timesteps and noise of step k
         come from a generator seeded by (S, k), so a resumed run equals an uninterrupted one.
         Writes WORK/torch/seed-S/final/{model,ema} (diffusers folders, safetensors, with the
         scheduler_config.json DDPMScheduler().save_config writes) and losses.jsonl (every step).
  haze   haze train --data fashion-mnist --preset fmnist-small with the same recipe
         (RUN = WORK/haze/seed-S; raw weights RUN/checkpoints/step-NNNNNNN/model, EMA .../ema;
         --log-every 1 so that RUN/metrics.jsonl holds every step's loss).

Then each model's raw and EMA weights are scored with

  haze evaluate --model FOLDER --count 2000 --scheduler ddim --steps 50 --seed 1
                --reference fashion-mnist --features classifier --classifier assets/...

(the same sampling seed for every model: every model starts from the same initial noise), and
a Markdown table (FID per seed, mean ± sample std, mean training loss of the last 200 and 500
steps; then Haze − torch per quantity with Welch's t-test) is printed and written to WORK/report.md.

Cost: a 2000-step training run takes about 15-20 minutes on 2 free cores (either side; more
when the cores are shared), an evaluation (2,000 samples, DDIM-50) a few minutes; the default
3 seeds x 2 sides is about 2 hours of training plus 12 evaluations, so run it in the background:

    cd /work/main
    nohup $HOME/haze-ref-venv/bin/python scripts/quality_compare.py > ~/haze-quality.log 2>&1 &
    tail -f ~/haze-quality.log                                  # progress
    python3 scripts/quality_compare.py --report                 # the table so far
    kill PID                      # stops cleanly: the running unit checkpoints, rerun to go on

Everything lives under --work-dir (default ~/haze-quality). Each unit of work (train torch
seed S, train haze seed S, evaluate one model) is skipped when its output exists; outputs are
written to a temporary name and renamed, and both trainers checkpoint every 500 steps, so a
killed or stopped run continues where it stopped when the same command is run again (in this
or a later session). The work directory remembers --steps, --count, --ddim-steps and
--eval-seed; running it with other values is refused (use another --work-dir).

The venv with torch and diffusers ($HOME/haze-ref-venv) is needed only for the torch side:
`python3 scripts/quality_compare.py --sides haze` and `--report` run with any Python 3.

Smoke test (about a minute):
    $HOME/haze-ref-venv/bin/python scripts/quality_compare.py --steps 20 --count 64 --seeds 0 \\
        --ddim-steps 5 --threads 1 --work-dir /tmp/qc-smoke
"""
import argparse
import gzip
import json
import math
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
CLASSIFIER = os.path.join(REPO, "assets", "fmnist-classifier.safetensors")
VENV_PYTHON = os.path.expanduser("~/haze-ref-venv/bin/python")

# fmnist-s, exactly W1_CFG of /work/shared/reference/bench_torch.py (Haze's --preset fmnist-small).
W1_CFG = dict(
    sample_size=28, in_channels=1, out_channels=1,
    block_out_channels=(32, 64, 128), layers_per_block=2,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
)

# The recipe, shared by both sides.
RECIPE = dict(batch=64, lr=2e-4, betas=(0.9, 0.999), adam_eps=1e-8, weight_decay=0.01,
              warmup=100, grad_clip=1.0, ema_decay=0.995, ema_power=0.75, ema_inv_gamma=1.0,
              train_timesteps=1000, beta_schedule="linear", objective="epsilon",
              checkpoint_every=500)

# Settings fixed per work directory (they change what the outputs mean).
FIXED = ("steps", "count", "ddim_steps", "eval_seed")

STOP = False          # set by SIGINT/SIGTERM: the running unit checkpoints and the script exits
CHILD = None          # the running haze process (gets the signal forwarded)


class Stopped(Exception):
    pass


def on_signal(signum, _frame):
    global STOP
    STOP = True
    if CHILD is not None and CHILD.poll() is None:
        CHILD.send_signal(signum)


def log(text):
    print(time.strftime("%H:%M:%S ") + text, flush=True)


def fmt_duration(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.1f} s"


def write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def record_timing(work, unit, seconds, **extra):
    with open(os.path.join(work, "timings.jsonl"), "a") as f:
        f.write(json.dumps(dict(unit=unit, seconds=round(seconds, 2),
                                time=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)) + "\n")


# ---------------------------------------------------------------------------------------------
# Paths and state
# ---------------------------------------------------------------------------------------------

def torch_dir(work, seed):
    return os.path.join(work, "torch", f"seed-{seed}")


def haze_dir(work, seed):
    return os.path.join(work, "haze", f"seed-{seed}")


def haze_checkpoint(work, seed, steps):
    return os.path.join(haze_dir(work, seed), "checkpoints", f"step-{steps:07d}")


def model_folder(work, side, seed, steps, weights):
    inner = "model" if weights == "raw" else "ema"
    if side == "torch":
        return os.path.join(torch_dir(work, seed), "final", inner)
    return os.path.join(haze_checkpoint(work, seed, steps), inner)


def eval_path(work, side, seed, weights):
    return os.path.join(work, "eval", f"{side}-seed{seed}-{weights}.json")


def training_done(work, side, seed, steps):
    folder_ok = lambda f: os.path.exists(os.path.join(f, "diffusion_pytorch_model.safetensors"))
    return all(folder_ok(model_folder(work, side, seed, steps, w)) for w in ("raw", "ema"))


def training_progress(work, side, seed, steps):
    """The last step with a checkpoint (steps when done, 0 when nothing is saved)."""
    if training_done(work, side, seed, steps):
        return steps
    if side == "torch":
        p = os.path.join(torch_dir(work, seed), "checkpoint.json")
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)["step"]
        return 0
    run = haze_dir(work, seed)
    try:
        with open(os.path.join(run, "latest")) as f:
            ckpt = os.path.join(run, f.read().strip())
        with open(os.path.join(ckpt, "trainer_state.json")) as f:
            return json.load(f)["step"]
    except (OSError, ValueError, KeyError):
        return 0


def step_losses(work, side, seed):
    """{step: loss} (a logged loss of an interval covers the steps since the previous entry)."""
    path = (os.path.join(torch_dir(work, seed), "losses.jsonl") if side == "torch"
            else os.path.join(haze_dir(work, seed), "metrics.jsonl"))
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            try:
                o = json.loads(line)
                out[int(o["step"])] = float(o["loss"])
            except (ValueError, KeyError):
                pass
    return out


def mean_loss_last(losses, steps, last):
    """Mean loss over steps (steps - last, steps], each logged value weighted by the number of
    steps it covers; None when the log does not reach `steps`."""
    if steps not in losses:
        return None
    first = max(steps - last, 0)
    total = weight = 0.0
    previous = 0
    for s in sorted(losses):
        if s > first and s <= steps:
            covered = s - max(previous, first)
            total += losses[s] * covered
            weight += covered
        previous = s
    return total / weight if weight else None


# ---------------------------------------------------------------------------------------------
# torch side
# ---------------------------------------------------------------------------------------------

def read_idx_images(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    assert magic == 2051, (path, magic)
    assert len(data) == 16 + n * h * w, path
    return data[16:], n, h, w


def find_idx(folder, name):
    for candidate in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
        if os.path.exists(candidate):
            return candidate
    sys.exit(f"{folder}: no {name}[.gz] (Fashion-MNIST IDX files)")


def train_torch(work, seed, steps, threads):
    try:
        import torch
        import torch.nn.functional as F
        import diffusers
        from diffusers import DDPMScheduler, UNet2DModel
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel
    except ImportError as e:
        sys.exit(f"the torch side needs torch and diffusers ({e}): run this script with "
                 f"{VENV_PYTHON}, or pass --sides haze")
    import copy

    torch.set_num_threads(threads)
    folder = torch_dir(work, seed)
    os.makedirs(folder, exist_ok=True)
    ckpt_path = os.path.join(folder, "checkpoint.pt")
    ckpt_meta = os.path.join(folder, "checkpoint.json")
    loss_path = os.path.join(folder, "losses.jsonl")
    B = RECIPE["batch"]

    raw, n, h, w = read_idx_images(find_idx(FASHION_MNIST, "train-images-idx3-ubyte"))
    import numpy as np
    images = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(n, 1, h, w).copy())

    torch.manual_seed(seed)
    model = UNet2DModel(**W1_CFG)
    noise_scheduler = DDPMScheduler(num_train_timesteps=RECIPE["train_timesteps"],
                                    beta_schedule=RECIPE["beta_schedule"],
                                    prediction_type=RECIPE["objective"])
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], betas=RECIPE["betas"],
                            eps=RECIPE["adam_eps"], weight_decay=RECIPE["weight_decay"])
    lr_sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=RECIPE["warmup"])
    ema = EMAModel(model.parameters(), decay=RECIPE["ema_decay"], use_ema_warmup=True,
                   inv_gamma=RECIPE["ema_inv_gamma"], power=RECIPE["ema_power"])

    start = 0
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        ema.load_state_dict(state["ema"])
        start = state["step"]
        log(f"torch seed {seed}: resuming at step {start} of {steps}")
    # Keep the losses of the steps the checkpoint covers (a crash may have logged more).
    kept = []
    if os.path.exists(loss_path):
        with open(loss_path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= start]
    with open(loss_path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(loss_path + ".tmp", loss_path)

    permutations = {}

    def batch_indices(step):
        """Positions step*B ..< (step+1)*B of the stream of per-epoch permutations."""
        out = []
        for pos in range(step * B, (step + 1) * B):
            epoch, index = divmod(pos, n)
            if epoch not in permutations:
                g = torch.Generator().manual_seed(seed * 2**32 + 2**31 + epoch)
                permutations.clear()
                permutations[epoch] = torch.randperm(n, generator=g)
            out.append(permutations[epoch][index])
        return torch.stack(out)

    def save_checkpoint(step):
        tmp = ckpt_path + ".tmp"
        torch.save(dict(step=step, model=model.state_dict(), optimizer=opt.state_dict(),
                        lr_scheduler=lr_sched.state_dict(), ema=ema.state_dict()), tmp)
        os.replace(tmp, ckpt_path)
        write_json_atomic(ckpt_meta, dict(step=step))

    log(f"torch seed {seed}: training {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"steps {start}..{steps}, {threads} threads (torch {torch.__version__}, "
        f"diffusers {diffusers.__version__})")
    model.train()
    every = max(1, min(100, steps // 10))
    t0 = time.time()
    window = []
    with open(loss_path, "a") as losses:
        for step in range(start, steps):
            x0 = images[batch_indices(step)].to(torch.float32) / 127.5 - 1.0
            g = torch.Generator().manual_seed(seed * 2**32 + step)
            timesteps = torch.randint(0, RECIPE["train_timesteps"], (B,), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            noisy = noise_scheduler.add_noise(x0, noise, timesteps)
            pred = model(noisy, timesteps).sample
            loss = F.mse_loss(pred.float(), noise.float())
            loss.backward()
            lr_used = opt.param_groups[0]["lr"]
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["grad_clip"])
            opt.step()
            lr_sched.step()
            opt.zero_grad(set_to_none=True)
            ema.step(model.parameters())
            done = step + 1
            losses.write(json.dumps(dict(step=done, loss=loss.item(), lr=lr_used,
                                         grad_norm=norm.item(), ema_decay=ema.cur_decay_value)) + "\n")
            window.append(loss.item())
            if done % every == 0 or done == steps:
                rate = (time.time() - t0) / (done - start)
                log(f"torch seed {seed}: step {done}/{steps} loss {sum(window) / len(window):.4f} "
                    f"({rate:.2f} s/step, {fmt_duration(rate * (steps - done))} to go)")
                window = []
            if done % RECIPE["checkpoint_every"] == 0 or STOP:
                losses.flush()
                if done < steps:
                    save_checkpoint(done)
                if STOP and done < steps:
                    raise Stopped(f"torch seed {seed} stopped at step {done} (checkpoint saved)")

    final = os.path.join(folder, "final")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(os.path.join(tmp, "model"), safe_serialization=True)
    noise_scheduler.save_config(os.path.join(tmp, "model"))
    ema_model = copy.deepcopy(model)
    ema.copy_to(ema_model.parameters())
    ema_model.save_pretrained(os.path.join(tmp, "ema"), safe_serialization=True)
    noise_scheduler.save_config(os.path.join(tmp, "ema"))
    write_json_atomic(os.path.join(tmp, "run.json"), dict(
        seed=seed, steps=steps, config=W1_CFG, recipe=RECIPE, torch=torch.__version__,
        diffusers=diffusers.__version__, threads=threads,
        data_order="per-epoch torch.randperm, generator seed S*2^32+2^31+epoch; full batches",
        step_randomness="timesteps then noise from a generator seeded S*2^32+step"))
    os.replace(tmp, final)
    for p in (ckpt_path, ckpt_meta):
        if os.path.exists(p):
            os.remove(p)


# ---------------------------------------------------------------------------------------------
# haze side
# ---------------------------------------------------------------------------------------------

def run_haze(cmd, log_path, what):
    """Runs a haze command with its output in log_path; raises Stopped on a stop request."""
    global CHILD
    log(f"{what}: {' '.join(cmd)}")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        CHILD = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = CHILD.wait()
        finally:
            CHILD = None
    if STOP:
        raise Stopped(f"{what} stopped (exit {rc}); rerun to continue")
    if rc != 0:
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        sys.exit(f"{what} failed (exit {rc}); the end of {log_path}:\n{tail}")


def haze_train_command(haze, run, seed, steps, threads):
    return [haze, "train", "--data", "fashion-mnist", "--preset", "fmnist-small", "--out", run,
            "--steps", str(steps), "--batch-size", str(RECIPE["batch"]), "--optimizer", "adamw",
            "--lr", repr(RECIPE["lr"]),
            "--warmup", str(RECIPE["warmup"]), "--grad-clip", repr(RECIPE["grad_clip"]),
            "--ema-decay", repr(RECIPE["ema_decay"]), "--ema-power", repr(RECIPE["ema_power"]),
            "--weight-decay", repr(RECIPE["weight_decay"]), "--seed", str(seed),
            "--sample-every", "0", "--checkpoint-every", str(RECIPE["checkpoint_every"]),
            "--log-every", "1", "--no-tensorboard", "--threads", str(threads)]


def haze_resume_command(haze, run, steps, threads):
    # --no-tensorboard and --threads are not part of the saved run: give them again.
    return [haze, "train", "--resume", run, "--steps", str(steps), "--no-tensorboard",
            "--threads", str(threads)]


def train_haze(work, seed, steps, threads, haze):
    run = haze_dir(work, seed)
    log_path = os.path.join(work, "logs", f"train-haze-seed{seed}.log")
    if os.path.exists(os.path.join(run, "latest")):
        cmd = haze_resume_command(haze, run, steps, threads)
    else:
        if os.path.exists(run):  # stopped before its first checkpoint: start over
            shutil.rmtree(run)
        os.makedirs(os.path.dirname(run), exist_ok=True)
        cmd = haze_train_command(haze, run, seed, steps, threads)
    run_haze(cmd, log_path, f"haze seed {seed}")


def evaluate_command(haze, model, out, count, ddim_steps, eval_seed, threads):
    return [haze, "evaluate", "--model", model, "--count", str(count), "--scheduler", "ddim",
            "--steps", str(ddim_steps), "--seed", str(eval_seed), "--reference", "fashion-mnist",
            "--features", "classifier", "--classifier", CLASSIFIER, "--batch-size", "250",
            "--threads", str(threads), "--json", out]


def evaluate(work, side, seed, weights, settings, threads, haze):
    out = eval_path(work, side, seed, weights)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp.json"
    if os.path.exists(tmp):
        os.remove(tmp)
    model = model_folder(work, side, seed, settings["steps"], weights)
    cmd = evaluate_command(haze, model, tmp, settings["count"], settings["ddim_steps"],
                           settings["eval_seed"], threads)
    run_haze(cmd, os.path.join(work, "logs", f"eval-{side}-seed{seed}-{weights}.log"),
             f"evaluate {side} seed {seed} {weights}")
    os.replace(tmp, out)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def mean_std(values, digits):
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} (n={len(values)})"


def incomplete_beta(a, b, x):
    """The regularised incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1 - incomplete_beta(b, a, 1 - x)
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > 1e-300 else 1e-300)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1 + numerator / c
            c = c if abs(c) > 1e-300 else 1e-300
            f *= c * d
        if abs(c * d - 1) < 1e-12:
            break
    return front * f / a


def welch(a, b):
    """Welch's t-test of mean(a) − mean(b): (difference, t, degrees of freedom, two-sided p)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.mean(a) - statistics.mean(b)
    if va + vb == 0:
        return diff, math.inf, 0.0, 0.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, t, df, incomplete_beta(df / 2, 0.5, df / (df + t * t))


def report(work, settings):
    seeds, sides, steps = settings["seeds"], settings["sides"], settings["steps"]
    L = ["# fmnist-s: diffusers recipe (torch) vs Haze", ""]
    L.append(f"{steps} training steps per run (batch 64, AdamW 2e-4, warm-up 100, clip 1, "
             f"EMA 0.995 power 3/4); FID on Haze's classifier features against the "
             f"Fashion-MNIST test split, {settings['count']} samples, DDIM-{settings['ddim_steps']} "
             f"(η 0), sampling seed {settings['eval_seed']} for every model. "
             f"mean ± sample standard deviation over the seeds that are complete.")
    L.append("")
    header = "| side | quantity | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |"
    L.append(header)
    L.append("|" + "---|" * (3 + len(seeds)))
    notes = []
    complete = {}  # (side, quantity) → the values of the complete seeds
    for side in sides:
        progress = {s: training_progress(work, side, s, steps) for s in seeds}
        for weights, label in (("raw", "FID raw"), ("ema", "FID EMA")):
            cells, values = [], []
            for s in seeds:
                p = eval_path(work, side, s, weights)
                if os.path.exists(p):
                    with open(p) as f:
                        fid = json.load(f)["fid"]
                    cells.append(f"{fid:.2f}")
                    values.append(fid)
                elif progress[s] < steps:
                    cells.append(f"*trained {progress[s]}/{steps}*")
                else:
                    cells.append("*not evaluated*")
            L.append(f"| {side} | {label} | " + " | ".join(cells) + f" | {mean_std(values, 2)} |")
            complete[side, label] = values
        for last in sorted({min(200, steps), min(500, steps)}):
            cells, values = [], []
            for s in seeds:
                losses = step_losses(work, side, s)
                value = mean_loss_last(losses, steps, last) if progress[s] == steps else None
                if value is None:
                    cells.append(f"*trained {progress[s]}/{steps}*")
                else:
                    cells.append(f"{value:.5f}")
                    values.append(value)
            span = f"last {last} steps" if last < steps else f"all {steps} steps"
            L.append(f"| {side} | loss, {span} | " + " | ".join(cells) + f" | {mean_std(values, 5)} |")
            complete[side, f"loss, {span}"] = values
        incomplete = [s for s in seeds if progress[s] < steps
                      or not all(os.path.exists(eval_path(work, side, s, w)) for w in ("raw", "ema"))]
        if incomplete:
            notes.append(f"{side}: seed{'s' if len(incomplete) > 1 else ''} "
                         f"{', '.join(map(str, incomplete))} incomplete (*italic* cells); "
                         f"the means use the complete seeds only.")
    tests = [(q, welch(complete["haze", q], complete["torch", q])) for side, q in complete
             if side == "haze" and len(complete[side, q]) >= 2 and len(complete.get(("torch", q), [])) >= 2]
    if tests:
        L += ["", "Haze − torch, Welch's t-test over the complete seeds (two-sided p):", "",
              "| quantity | difference of means | t | degrees of freedom | p |", "|---|---|---|---|---|"]
        L += [f"| {q} | {d:+.{5 if q.startswith('loss') else 2}f} | {t:.2f} | {df:.1f} | {p:.3f} |" for q, (d, t, df, p) in tests]
    if notes:
        L.append("")
        L.extend(f"- {n}" for n in notes)
    text = "\n".join(L) + "\n"
    tmp = os.path.join(work, "report.md.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(work, "report.md"))
    print(text, end="", flush=True)


# ---------------------------------------------------------------------------------------------

def parse_list(text, kind=str):
    return [kind(x) for x in text.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the top of the file for details.")
    ap.add_argument("--work-dir", default=os.path.expanduser("~/haze-quality"),
                    help="where everything is written (default ~/haze-quality)")
    ap.add_argument("--seeds", help="comma-separated training seeds (default 0,1,2)")
    ap.add_argument("--sides", help="torch,haze (default both)")
    ap.add_argument("--steps", type=int, help="training steps per run (default 2000)")
    ap.add_argument("--count", type=int, help="samples per evaluation (default 2000)")
    ap.add_argument("--ddim-steps", type=int, help="DDIM sampling steps (default 50)")
    ap.add_argument("--eval-seed", type=int, help="sampling seed of every evaluation (default 1)")
    ap.add_argument("--threads", type=int, default=2, help="threads of torch and haze (default 2)")
    ap.add_argument("--haze", default=os.environ.get("HAZE", os.path.join(REPO, ".build/release/haze")),
                    help="the haze binary (default: $HAZE or REPO/.build/release/haze)")
    ap.add_argument("--report", action="store_true", help="only print (and write) the table")
    args = ap.parse_args()

    work = os.path.abspath(args.work_dir)
    settings_path = os.path.join(work, "settings.json")
    saved = {}
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            saved = json.load(f)
    given = dict(steps=args.steps, count=args.count, ddim_steps=args.ddim_steps, eval_seed=args.eval_seed)
    defaults = dict(steps=2000, count=2000, ddim_steps=50, eval_seed=1)
    settings = {}
    for k in FIXED:
        if saved and given[k] is not None and given[k] != saved[k]:
            sys.exit(f"{work} was made with --{k.replace('_', '-')} {saved[k]}, not {given[k]}: "
                     f"use another --work-dir")
        settings[k] = saved.get(k, given[k] if given[k] is not None else defaults[k])
    seeds = parse_list(args.seeds, int) if args.seeds else None
    sides = parse_list(args.sides) if args.sides else None
    for side in sides or []:
        if side not in ("torch", "haze"):
            sys.exit(f"--sides: unknown side {side} (torch, haze)")

    if args.report:
        if not saved:
            sys.exit(f"{work}: nothing there yet (no settings.json)")
        settings["seeds"] = seeds or saved["seeds"]
        settings["sides"] = sides or saved["sides"]
        report(work, settings)
        return

    seeds = seeds or [0, 1, 2]
    sides = sides or ["torch", "haze"]
    if not os.access(args.haze, os.X_OK):
        sys.exit(f"{args.haze}: no haze binary (build it, or pass --haze / set HAZE)")
    os.makedirs(work, exist_ok=True)
    # The report covers every seed and side this work directory was asked for.
    settings["seeds"] = sorted(set(saved.get("seeds", [])) | set(seeds))
    settings["sides"] = [s for s in ("torch", "haze") if s in set(saved.get("sides", [])) | set(sides)]
    write_json_atomic(settings_path, settings)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    steps = settings["steps"]
    log(f"work dir {work}: seeds {seeds}, sides {sides}, {steps} steps, evaluation "
        f"{settings['count']} samples DDIM-{settings['ddim_steps']} seed {settings['eval_seed']}, "
        f"{args.threads} threads")
    try:
        for seed in seeds:
            for side in sides:
                unit = f"train {side} seed {seed}"
                if training_done(work, side, seed, steps):
                    log(f"{unit}: done already")
                else:
                    t0 = time.time()
                    if side == "torch":
                        train_torch(work, seed, steps, args.threads)
                    else:
                        train_haze(work, seed, steps, args.threads, args.haze)
                    dt = time.time() - t0
                    record_timing(work, unit, dt, threads=args.threads)
                    log(f"{unit}: finished in {fmt_duration(dt)}")
                for weights in ("raw", "ema"):
                    unit = f"evaluate {side} seed {seed} {weights}"
                    if os.path.exists(eval_path(work, side, seed, weights)):
                        log(f"{unit}: done already")
                        continue
                    t0 = time.time()
                    evaluate(work, side, seed, weights, settings, args.threads, args.haze)
                    dt = time.time() - t0
                    record_timing(work, unit, dt, threads=args.threads)
                    with open(eval_path(work, side, seed, weights)) as f:
                        fid = json.load(f)["fid"]
                    log(f"{unit}: FID {fid:.3f} in {fmt_duration(dt)}")
    except Stopped as e:
        log(str(e))
        report(work, settings)
        sys.exit(130)
    report(work, settings)


if __name__ == "__main__":
    main()
