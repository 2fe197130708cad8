#!/usr/bin/env python3
"""Generate diffusers training-loop "lockstep" fixtures for the HazeTraining Swift tests.

The Swift tests feed the recorded inputs (images, labels, dropout coins, timesteps, noise) of
every micro-batch into Haze's Trainer and compare its trajectory (loss, gradient norm, learning
rate) and final weights / EMA weights with the PyTorch run recorded here. CI has no Python, so
the generated files are committed; re-run this script only when a case is added or changed.

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_trainer_lockstep_fixtures.py
    $HOME/haze-ref-venv/bin/python scripts/make_trainer_lockstep_fixtures.py --out-dir /tmp/fx
    $HOME/haze-ref-venv/bin/python scripts/make_trainer_lockstep_fixtures.py --dry-run clip

--out-dir replaces Tests/HazeTrainingTests/Fixtures as the root of everything written (e.g. to
check determinism: run twice, `cmp` the files). --dry-run CASE trains CASE without clipping and
prints the per-step gradient norms and their median (how `clip`'s max_norm was chosen); it
writes nothing.

The recipe is diffusers' examples/unconditional_image_generation/train_unconditional.py plus
the min-SNR-γ weighting of examples/text_to_image/train_text_to_image.py, without accelerate,
in one plain float32 loop:

    model = UNet2DModel(**config)            # default diffusers init after torch.manual_seed(seed)
    model.save_pretrained(case_dir)          # the INITIAL weights
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                              prediction_type=objective)
    opt = torch.optim.AdamW(model.parameters(), lr, betas=(beta1, beta2), eps, weight_decay)
    lr_sched = diffusers.optimization.get_scheduler(diffusers_scheduler, opt,
                                                    num_warmup_steps=W, num_training_steps=S)
    ema = EMAModel(model.parameters(), decay=ema_max_decay, use_ema_warmup=True,
                   inv_gamma=1.0, power=ema_power)          # from the initial weights
    model.train()
    for s in 0..<S:
        for a in 0..<A:
            x0, t, noise, u = images[s,a], timesteps[s,a], noise[s,a], drop[s,a]
            y = where(u < label_dropout, null_class, labels[s,a])    # class case only
            noisy = scheduler.add_noise(x0, noise, t)
            target = noise (epsilon)  or  scheduler.get_velocity(x0, noise, t) (v_prediction)
            pred = model(noisy, t (int64), class_labels=y (int64) or None).sample
            min_snr_gamma None: loss = F.mse_loss(pred, target)             (mean over all)
            else: snr = diffusers.training_utils.compute_snr(scheduler, t)
                  w = min(snr, gamma) / snr        (epsilon)
                  w = min(snr, gamma) / (snr + 1)  (v_prediction)
                  loss = (F.mse_loss(pred, target, reduction="none").mean([1,2,3]) * w).mean()
            (loss / A).backward()                 # gradients accumulate over the A micro-batches
        lr[s] = opt.param_groups[0]["lr"]         # the lr this step's update uses
        grad_norm[s] = clip_grad_norm_(model.parameters(), max_norm)   # norm BEFORE clipping
        opt.step(); lr_sched.step(); opt.zero_grad()
        ema.step(model.parameters())

Files (default root Tests/HazeTrainingTests/Fixtures/):

  lockstep/<case>/config.json                          UNet2DModel.save_pretrained, initial model
  lockstep/<case>/diffusion_pytorch_model.safetensors  initial weights (before any step)
  lockstep/<case>/inputs.safetensors
      images    [S, A, B, 1, 8, 8]  clean images x0 in [-1, 1] (smooth stripe / checker
                                    patterns plus a bilinearly upsampled 3x3 random field)
      timesteps [S, A, B]  float32 holding integers in 0..<1000
      noise     [S, A, B, 1, 8, 8]  ε ~ N(0, I)
      drop      [S, A, B]  label-dropout coins u ~ U[0, 1) (recorded in both cases; only the
                           class case uses them)
      labels    [S, A, B]  class case only: float32 holding the RAW labels in 0..2, BEFORE
                           dropout; the model gets null_class (3) where drop < label_dropout
  lockstep/<case>/trajectory.safetensors
      loss       [S]     per step: the mean over its A micro-batches of each micro-batch's loss
                         (before dividing by A); computed in float64 from the float32 values
      grad_norm  [S]     global L2 norm of the accumulated gradient BEFORE clipping (the value
                         clip_grad_norm_ returns)
      lr         [S]     the lr step s's AdamW update used (0 for step 0 when warmup > 0)
      ema_decay  [S]     the decay of step s's EMA update (EMAModel.cur_decay_value; 0 for step 0)
      micro_loss [S, A]  each micro-batch's loss
      __metadata__: hyperparameters as strings (floats as Python repr): case, seed, steps,
        batch, accumulation, lr, beta1, beta2, eps, weight_decay, warmup, lr_schedule
        ("constant" or "cosine": the shape after warmup), diffusers_scheduler (the exact
        get_scheduler name), max_norm ("none" = no clipping), clipped_steps, ema_max_decay,
        ema_power, ema_inv_gamma, ema_min_decay, ema_update_after_step, objective,
        min_snr_gamma ("none"), label_dropout ("none" when unconditional), null_class
        ("none" when unconditional), num_class_embeds ("none"), num_train_timesteps,
        beta_schedule
  lockstep/<case>/final.safetensors  every parameter after the last step, by state_dict name
  lockstep/<case>/ema.safetensors    the EMA weights (ema.shadow_params) after the last step,
                                     by state_dict name

  pipeline/  DDPMPipeline(unet, scheduler).save_pretrained: model_index.json,
             unet/config.json, unet/diffusion_pytorch_model.safetensors,
             scheduler/scheduler_config.json. unet: UNet2DModel, 3 channels, sample_size 8,
             block_out_channels (8, 16), layers_per_block 1, norm_num_groups 4, down
             ("DownBlock2D", "DownBlock2D"), up ("UpBlock2D", "UpBlock2D"), default init after
             torch.manual_seed(PIPELINE_SEED); scheduler: DDPMScheduler(num_train_timesteps=1000,
             beta_schedule="linear") (other options default).
  pipeline_io.safetensors
      sample    [2, 3, 8, 8]  randn
      timesteps [2]           (10, 500) as float32
      out       [2, 3, 8, 8]  = pipeline.unet(sample, timesteps).sample (eval mode, no_grad)

Cases (B = 4 items per micro-batch, S = 30 steps):
  clip                   unconditional, epsilon, A = 1, AdamW lr 2e-3 betas (0.9, 0.999)
                         eps 1e-8 weight_decay 0.01, warmup 5 + cosine, max_norm chosen near
                         the median unclipped norm (the script asserts >= 3 steps clip and >= 3
                         do not), EMA max decay 0.99 power 3/4, no min-SNR.
  accumulate_snr_labels  class-conditional (num_class_embeds 4: classes 0..2 + null class 3,
                         label_dropout 0.3), v_prediction, A = 2, min-SNR γ = 5, AdamW lr 1e-3
                         weight_decay 0.05, warmup 3 + constant, max_norm 1e4 (never clips;
                         asserted), EMA max decay 0.995 power 2/3.

Semantics worth knowing (installed diffusers 0.42.1 / torch sources):
- get_scheduler("constant", ...) IGNORES num_warmup_steps (it returns get_constant_schedule),
  so the constant-with-warmup case uses diffusers' "constant_with_warmup"; lr_schedule in the
  metadata is the shape after warmup and diffusers_scheduler the name passed to get_scheduler.
  Warmup is lr * s / W for s < W (so step 0 uses lr 0); cosine after warmup is
  lr * max(0, 0.5 * (1 + cos(pi * (s - W) / (S - W)))).
- EMAModel: decay of the n-th ema.step() (n = 1, 2, ...) is 0 for n = 1 (the shadow becomes the
  weights after the first update), else min(max_decay, 1 - (1 + (n - 1) / inv_gamma)^-power);
  the update is shadow -= (1 - decay) * (shadow - param).
- clip_grad_norm_: total = ||(||g_i||_2)_i||_2; grads *= clamp(max_norm / (total + 1e-6), max=1)
  (always multiplied, by exactly 1.0 when not clipping).

Determinism: fixed seeds, torch.set_num_threads(1), torch.use_deterministic_algorithms(True).
config.json / model weights / the pipeline folder come from save_pretrained; every other file
is written by make_tensor_fixtures.write_safetensors (sorted tensor names, sorted metadata)
and read back with the safetensors library. Every saved model folder is reloaded with
from_pretrained and compared with the in-memory model.
"""
import argparse
import math
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only; never touch the network

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils import logging as diffusers_logging

diffusers_logging.set_verbosity_error()  # hide the "accelerate not found" notice on every load
diffusers_logging.disable_progress_bar()  # DDPMPipeline.from_pretrained's loading bar

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import check_roundtrip, write_safetensors  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeTrainingTests", "Fixtures")
WEIGHTS = "diffusion_pytorch_model.safetensors"
MAX_CASE_BYTES = 1000 * 1000
NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "linear"
HW = 8

LOCKSTEP_CONFIG = dict(
    sample_size=HW, in_channels=1, out_channels=1,
    block_out_channels=(8, 16), layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4, attention_head_dim=4,
)

CASES = [
    dict(name="clip", seed=3001, steps=30, batch=4, accumulation=1,
         num_class_embeds=None, label_dropout=None, objective="epsilon", min_snr_gamma=None,
         lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
         warmup=5, lr_schedule="cosine", diffusers_scheduler="cosine",
         # ~ the median of the unclipped norms (--dry-run clip: median 1.2395)
         max_norm=1.2,
         ema_max_decay=0.99, ema_power=3 / 4),
    dict(name="accumulate_snr_labels", seed=3002, steps=30, batch=4, accumulation=2,
         num_class_embeds=4, label_dropout=0.3, objective="v_prediction", min_snr_gamma=5.0,
         lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
         # get_scheduler("constant") ignores num_warmup_steps; "constant_with_warmup" honours it
         warmup=3, lr_schedule="constant", diffusers_scheduler="constant_with_warmup",
         max_norm=1e4,
         ema_max_decay=0.995, ema_power=2 / 3),
]

PIPELINE_SEED = 3100
PIPELINE_CONFIG = dict(
    sample_size=HW, in_channels=3, out_channels=3,
    block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
    down_block_types=("DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D"),
)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def setup_torch():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def save(path, tensors, meta):
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in meta.items()}
    write_safetensors(path, tensors, meta)
    check_roundtrip(path, tensors, meta)


def fmt(x):
    return "none" if x is None else repr(x)


def files_bytes(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return dict(sorted(out.items()))


def load_checked(cls, folder):
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    problems = [f"{k}: {info[k]}" for k in ("missing_keys", "unexpected_keys",
                                            "mismatched_keys", "error_msgs") if info.get(k)]
    assert not problems, (folder, problems)
    return model


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def make_images(gen, n, kinds):
    """n smooth 1x8x8 images in [-1, 1]; kinds[i] in 0..2 picks horizontal stripes, vertical
    stripes or a checker pattern (random frequency, phase, amplitude), plus a bilinearly
    upsampled 3x3 random field."""
    coords = (torch.arange(HW, dtype=torch.float32) + 0.5) / HW
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    freq = 0.5 + torch.rand(n, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 2, generator=gen)
    amp = 0.5 + 0.4 * torch.rand(n, generator=gen)
    field = torch.randn(n, 1, 3, 3, generator=gen)
    field = F.interpolate(field, size=(HW, HW), mode="bilinear", align_corners=True)
    images = torch.empty(n, 1, HW, HW)
    for i in range(n):
        f, (p, q), k = freq[i].item(), phase[i].tolist(), int(kinds[i])
        sy = torch.sin(2 * math.pi * f * yy + p)
        sx = torch.sin(2 * math.pi * f * xx + q)
        pattern = sy if k == 0 else sx if k == 1 else sy * sx
        images[i, 0] = amp[i] * pattern + 0.3 * field[i, 0]
    return images.clamp(-1.0, 1.0)


def make_inputs(case):
    S, A, B = case["steps"], case["accumulation"], case["batch"]
    n = S * A * B
    data_gen = torch.Generator().manual_seed(case["seed"] + 1)
    kinds = torch.randint(0, 3, (n,), generator=data_gen)
    images = make_images(data_gen, n, kinds).reshape(S, A, B, 1, HW, HW)
    rng = torch.Generator().manual_seed(case["seed"] + 2)
    timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (S, A, B), generator=rng)
    noise = torch.randn(S, A, B, 1, HW, HW, generator=rng)
    drop = torch.rand(S, A, B, generator=rng)
    inputs = {"images": images, "timesteps": timesteps.to(torch.float32), "noise": noise,
              "drop": drop}
    if case["num_class_embeds"] is not None:
        inputs["labels"] = kinds.reshape(S, A, B).to(torch.float32)  # pattern kind = class
    return inputs


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def micro_loss(case, scheduler, pred, target, t):
    gamma = case["min_snr_gamma"]
    if gamma is None:
        return F.mse_loss(pred.float(), target.float(), reduction="mean")
    # train_text_to_image.py's min-SNR-γ weighting
    snr = compute_snr(scheduler, t)
    w = torch.stack([snr, gamma * torch.ones_like(t)], dim=1).min(dim=1)[0]
    if case["objective"] == "epsilon":
        w = w / snr
    elif case["objective"] == "v_prediction":
        w = w / (snr + 1)
    else:
        raise ValueError(case["objective"])
    loss = F.mse_loss(pred.float(), target.float(), reduction="none")
    loss = loss.mean(dim=list(range(1, len(loss.shape)))) * w
    return loss.mean()


def global_norm(params):
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, 2) for g in grads]), 2)


def train(case, inputs, max_norm, folder=None):
    """Runs the case; saves the initial model into folder (if given). Returns the recorded
    trajectory and the final / EMA state dicts."""
    S, A = case["steps"], case["accumulation"]
    config = dict(LOCKSTEP_CONFIG)
    if case["num_class_embeds"] is not None:
        config["num_class_embeds"] = case["num_class_embeds"]
    torch.manual_seed(case["seed"])
    model = UNet2DModel(**config)
    names = [k for k, _ in model.named_parameters()]
    assert names == list(model.state_dict()), "parameters and state_dict differ"
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if folder is not None:
        model.save_pretrained(folder, safe_serialization=True)
        assert sorted(os.listdir(folder)) == ["config.json", WEIGHTS], os.listdir(folder)
        reloaded = load_checked(UNet2DModel, folder)
        for k, v in reloaded.state_dict().items():
            assert torch.equal(v, initial[k]), k

    scheduler = DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS,
                              beta_schedule=BETA_SCHEDULE, prediction_type=case["objective"])
    opt = torch.optim.AdamW(model.parameters(), lr=case["lr"], betas=case["betas"],
                            eps=case["eps"], weight_decay=case["weight_decay"])
    lr_sched = get_scheduler(case["diffusers_scheduler"], opt, num_warmup_steps=case["warmup"],
                             num_training_steps=S)
    ema = EMAModel(model.parameters(), decay=case["ema_max_decay"], use_ema_warmup=True,
                   inv_gamma=1.0, power=case["ema_power"])
    model.train()
    null_class = None if case["num_class_embeds"] is None else case["num_class_embeds"] - 1

    traj = {k: [] for k in ("loss", "grad_norm", "lr", "ema_decay", "micro_loss")}
    for s in range(S):
        micro = []
        for a in range(A):
            x0 = inputs["images"][s, a]
            t = inputs["timesteps"][s, a].to(torch.long)
            noise = inputs["noise"][s, a]
            labels = None
            if null_class is not None:
                raw = inputs["labels"][s, a].to(torch.long)
                labels = torch.where(inputs["drop"][s, a] < case["label_dropout"],
                                     torch.full_like(raw, null_class), raw)
            noisy = scheduler.add_noise(x0, noise, t)
            if case["objective"] == "epsilon":
                target = noise
            else:
                target = scheduler.get_velocity(x0, noise, t)
            pred = model(noisy, t, class_labels=labels).sample
            loss = micro_loss(case, scheduler, pred, target, t)
            (loss / A).backward()
            micro.append(loss.detach().clone())
        lr_used = opt.param_groups[0]["lr"]
        if max_norm is None:
            norm = global_norm(model.parameters())
        else:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        lr_sched.step()
        opt.zero_grad()
        ema.step(model.parameters())
        micro = torch.stack(micro)
        assert torch.isfinite(micro).all(), (case["name"], s, micro)
        traj["micro_loss"].append(micro)
        traj["loss"].append(micro.double().mean().float())
        traj["grad_norm"].append(norm.detach().clone().float().reshape(()))
        traj["lr"].append(torch.tensor(lr_used, dtype=torch.float32))
        traj["ema_decay"].append(torch.tensor(ema.cur_decay_value, dtype=torch.float32))
    traj = {k: torch.stack(v) for k, v in traj.items()}
    final = {k: p.detach().clone() for k, p in model.named_parameters()}
    ema_weights = {k: sp.detach().clone() for k, sp in zip(names, ema.shadow_params)}
    assert len(ema.shadow_params) == len(names)
    return traj, initial, final, ema_weights


def case_metadata(case, clipped):
    beta1, beta2 = case["betas"]
    return {
        "case": case["name"], "seed": case["seed"], "steps": case["steps"],
        "batch": case["batch"], "accumulation": case["accumulation"],
        "lr": repr(case["lr"]), "beta1": repr(beta1), "beta2": repr(beta2),
        "eps": repr(case["eps"]), "weight_decay": repr(case["weight_decay"]),
        "warmup": case["warmup"], "lr_schedule": case["lr_schedule"],
        "diffusers_scheduler": case["diffusers_scheduler"],
        "max_norm": fmt(case["max_norm"]), "clipped_steps": clipped,
        "ema_max_decay": repr(case["ema_max_decay"]), "ema_power": repr(case["ema_power"]),
        "ema_inv_gamma": "1.0", "ema_min_decay": "0.0", "ema_update_after_step": "0",
        "objective": case["objective"], "min_snr_gamma": fmt(case["min_snr_gamma"]),
        "label_dropout": fmt(case["label_dropout"]),
        "null_class": fmt(None if case["num_class_embeds"] is None
                          else case["num_class_embeds"] - 1),
        "num_class_embeds": fmt(case["num_class_embeds"]),
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_schedule": BETA_SCHEDULE,
    }


def make_case(case, root):
    folder = os.path.join(root, "lockstep", case["name"])
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    inputs = make_inputs(case)
    traj, initial, final, ema_weights = train(case, inputs, case["max_norm"], folder)

    norms = traj["grad_norm"]
    clipped = 0
    if case["max_norm"] is not None:
        clipped = int((norms > case["max_norm"]).sum())
        unclipped = int((norms < case["max_norm"]).sum())
        if case["max_norm"] >= 1e3:  # "never clips" cases
            assert clipped == 0, (case["name"], norms)
        else:
            assert clipped >= 3 and unclipped >= 3, (case["name"], clipped, unclipped, norms)
    assert torch.isfinite(traj["loss"]).all() and torch.isfinite(norms).all()
    # The EMA lags the weights; the weights moved away from the initial ones.
    assert any(not torch.equal(ema_weights[k], final[k]) for k in final), case["name"]
    assert any(not torch.equal(initial[k], final[k]) for k in final), case["name"]
    if case["warmup"] > 0:
        assert traj["lr"][0].item() == 0.0
    assert traj["ema_decay"][0].item() == 0.0

    save(os.path.join(folder, "inputs.safetensors"), inputs, {"case": case["name"]})
    save(os.path.join(folder, "trajectory.safetensors"), traj, case_metadata(case, clipped))
    save(os.path.join(folder, "final.safetensors"), final, {"case": case["name"]})
    save(os.path.join(folder, "ema.safetensors"), ema_weights, {"case": case["name"]})
    return folder, traj, clipped


def make_pipeline(root):
    folder = os.path.join(root, "pipeline")
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    torch.manual_seed(PIPELINE_SEED)
    unet = UNet2DModel(**PIPELINE_CONFIG).eval()
    scheduler = DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)
    expected = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                f"unet/{WEIGHTS}"]
    assert list(files_bytes(folder)) == expected, files_bytes(folder)

    gen = torch.Generator().manual_seed(PIPELINE_SEED + 1)
    sample = torch.randn(2, 3, HW, HW, generator=gen)
    timesteps = torch.tensor([10.0, 500.0], dtype=torch.float32)
    with torch.no_grad():
        out = unet(sample, timesteps).sample
    assert out.abs().max() > 0
    pipe = DDPMPipeline.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(pipe.unet.eval()(sample, timesteps).sample, out)
    assert pipe.scheduler.config.num_train_timesteps == NUM_TRAIN_TIMESTEPS
    assert pipe.scheduler.config.beta_schedule == BETA_SCHEDULE
    path = os.path.join(root, "pipeline_io.safetensors")
    save(path, {"sample": sample, "timesteps": timesteps, "out": out},
         {"model": "pipeline/unet", "mode": "eval"})
    return folder, path


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT, help="root folder for everything written")
    ap.add_argument("--dry-run", metavar="CASE",
                    help="train CASE without clipping and print its gradient norms")
    args = ap.parse_args()
    setup_torch()
    by_name = {c["name"]: c for c in CASES}

    if args.dry_run:
        case = by_name[args.dry_run]
        traj, *_ = train(case, make_inputs(case), None)
        norms = traj["grad_norm"]
        print("grad_norm", [round(x, 4) for x in norms.tolist()])
        print(f"median {norms.median().item():.4f}")
        return

    os.makedirs(args.out_dir, exist_ok=True)
    for case in CASES:
        folder, traj, clipped = make_case(case, args.out_dir)
        sizes = files_bytes(folder)
        total = sum(sizes.values())
        print(f"{case['name']}: {total} bytes, {clipped} of {case['steps']} steps clipped "
              f"(max_norm {fmt(case['max_norm'])})")
        for f, s in sizes.items():
            print(f"    {f:40s} {s:8d}")
        for k in ("loss", "grad_norm", "lr", "ema_decay"):
            print(f"    {k:10s}", " ".join(f"{x:.6g}" for x in traj[k].tolist()))
        if total > MAX_CASE_BYTES:
            sys.exit(f"{folder}: {total} bytes exceeds {MAX_CASE_BYTES}")
    folder, io_path = make_pipeline(args.out_dir)
    for f, s in files_bytes(folder).items():
        print(f"pipeline/{f:40s} {s:8d}")
    print(f"pipeline_io.safetensors {os.path.getsize(io_path)}")


if __name__ == "__main__":
    main()
