#!/usr/bin/env python3
"""Generate golden values of diffusers' RePaint inpainting (RePaintPipeline + RePaintScheduler).

Writes into Tests/HazeDiffusionTests/Fixtures/repaint/ (CI has no Python, so the files are
committed; re-run this script only when a case is added or changed):

  repaint_eta0.safetensors   20 inference steps, jump_length 3, jump_n_sample 2, eta 0
  repaint_eta1.safetensors   25 inference steps, jump_length 5, jump_n_sample 2, eta 1
  README.md                  the conventions (written by this script; do not edit by hand)

Sources: diffusers/pipelines/deprecated/repaint/pipeline_repaint.py (RePaintPipeline.__call__)
and diffusers/schedulers/scheduling_repaint.py (RePaintScheduler.set_timesteps, step,
undo_step, _get_variance). Model: the committed random UNet2DModel
Tests/HazeNNTests/Fixtures/unet/attn (3 channels, 8x8), loaded with UNet2DModel.from_pretrained.
Scheduler: RePaintScheduler(num_train_timesteps=100), otherwise its defaults (linear betas 1e-4..0.02,
clip_sample True); the pipeline sets `scheduler.eta` as an attribute (the config keeps eta 0.0).

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_repaint_fixtures.py
    $HOME/haze-ref-venv/bin/python scripts/make_repaint_fixtures.py --out-dir /tmp/repaint

Conventions (documented in full in the README.md the script writes):
- Inputs: `original_image` [2,3,8,8] = torch.rand(generator seeded IMAGE_SEED) * 2 - 1;
  `mask` [2,1,8,8], 1 = keep the original pixel, 0 = inpaint (image 0: left half kept,
  image 1: everything kept except the central 4x4 square). The pipeline passes a tensor mask
  through unchanged and the scheduler blends `mask * known + (1 - mask) * unknown`, so the
  channel dimension 1 broadcasts over the 3 image channels.
- ALL Gaussian noise is pre-generated: `noise.<k>` is the k-th draw of torch.randn([2,3,8,8])
  from ONE generator seeded NOISE_SEED. diffusers' randn_tensor is replaced (in the
  pipeline module, in scheduling_repaint and in diffusers.utils.torch_utils) by a queue that
  returns the next tensor at every call, in call order: noise.0 is x_T (drawn by the
  pipeline), then every `step` draws 1 and every `undo_step` draws
  num_train_timesteps // num_inference_steps. torch.randn/randn_like raise during the loop.
- The loop is RePaintPipeline.__call__'s loop, reproduced verbatim (the `t < t_last` rule);
  the script runs the pipeline itself on the same inputs and noise queue and asserts its
  output_type="np" images equal (sample / 2 + 0.5).clamp(0, 1) of the loop bit for bit.
- Stored: original_image, mask, noise.<k>, timesteps (the jump schedule, float32), the final
  `sample` (before / 2 + 0.5) and `state.<i>` = the sample after loop iteration i.
- Sensitivity: the loop is re-run with the UNet, inputs and noise in float64; the relative
  differences go to the `f64_rel_error` metadata and the README.

Determinism: torch.set_num_threads(1), torch.use_deterministic_algorithms(True), fixed seeds,
files written by make_tensor_fixtures.write_safetensors (sorted tensor names, sorted metadata,
header padded to 8 bytes) and read back with the safetensors library. The scheduler config is
stored as json.dumps(config, sort_keys=True) without diffusers' internal `_use_default_values`
(its order comes from a Python set and changes from run to run).
"""
import argparse
import json
import os
import sys
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only; never touch the network

import numpy as np
import torch
import diffusers
import diffusers.utils.torch_utils as diffusers_torch_utils
from diffusers import RePaintPipeline, RePaintScheduler, UNet2DModel
from diffusers.pipelines.deprecated.repaint import pipeline_repaint
from diffusers.schedulers import scheduling_repaint
from diffusers.utils import logging as diffusers_logging

diffusers_logging.set_verbosity_error()

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import check_roundtrip, write_safetensors  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeDiffusionTests", "Fixtures", "repaint")
MODEL_REL = "Tests/HazeNNTests/Fixtures/unet/attn"

SHAPE = (2, 3, 8, 8)        # original image / sample / every noise tensor
MASK_SHAPE = (2, 1, 8, 8)
IMAGE_SEED = 0              # original_image = torch.rand(SHAPE, generator seeded 0) * 2 - 1
NOISE_SEED = 1              # noise.<k>: k-th torch.randn(SHAPE) draw of one generator seeded 1
STATE_BUDGET_BYTES = 40_000  # all state.<i> if they fit in this per case, else every 5th
STATE_FALLBACK_EVERY = 5
# The noise dominates: every undo_step draws T // N tensors of 1536 bytes, and a case has
# about (jump_n_sample - 1) * T undo draws whatever N is.
MAX_TOTAL_BYTES = 600_000
# 100 training steps (not diffusers' default 1000): each undo_step draws T // N noise tensors,
# which are stored, so T = 1000 made 4.5 MB of fixtures; 100 keeps them near 0.4 MB.
TRAIN_STEPS = 100

CASES = [
    dict(name="repaint_eta0", steps=20, jump_length=3, jump_n_sample=2, eta=0.0),
    dict(name="repaint_eta1", steps=25, jump_length=5, jump_n_sample=2, eta=1.0),
]

# Modules whose namespace holds diffusers' randn_tensor (all replaced by the noise queue).
NOISE_PATCH_MODULES = [diffusers_torch_utils, pipeline_repaint, scheduling_repaint]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def config_json(sched):
    """Scheduler config as sorted JSON, without diffusers' set-ordered `_use_default_values`."""
    cfg = {k: v for k, v in dict(sched.config).items() if k != "_use_default_values"}
    return json.dumps(cfg, sort_keys=True)


def rel_err(a, b):
    """max |a - b| / max |b| (the metric of the Haze tests)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    return ((a - b).abs().max() / b.abs().max()).item()


def g3(x):
    return f"{x:.3g}"


def load_unet(dtype=torch.float32):
    m = UNet2DModel.from_pretrained(os.path.join(REPO, MODEL_REL))
    m.eval()
    m.requires_grad_(False)
    return m.to(dtype)


def make_inputs():
    g = torch.Generator().manual_seed(IMAGE_SEED)
    original = torch.rand(SHAPE, generator=g, dtype=torch.float32) * 2 - 1
    mask = torch.ones(MASK_SHAPE, dtype=torch.float32)
    mask[0, 0, :, 4:] = 0.0      # image 0: keep the left half (columns 0-3), inpaint the right half
    mask[1, 0, 2:6, 2:6] = 0.0   # image 1: inpaint the central 4x4 square (rows/columns 2-5)
    return original, mask


def noise_list(n):
    g = torch.Generator().manual_seed(NOISE_SEED)
    return [torch.randn(SHAPE, generator=g, dtype=torch.float32) for _ in range(n)]


class NoiseQueue:
    """Replacement for diffusers' randn_tensor: hands out pre-generated tensors in call order."""

    def __init__(self):
        self.queue = []
        self.calls = 0

    def load(self, tensors):
        self.queue = list(tensors)
        self.calls = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        if not self.queue:
            raise AssertionError("randn_tensor called but the noise queue is empty")
        assert generator is None, "the fixtures never pass a generator"
        t = self.queue.pop(0)
        assert tuple(shape) == tuple(t.shape), (shape, t.shape)
        assert dtype in (None, t.dtype), (dtype, t.dtype)
        self.calls += 1
        return t.clone()


FEED = NoiseQueue()


@contextmanager
def patched_randn():
    saved = []
    for mod in NOISE_PATCH_MODULES:
        assert hasattr(mod, "randn_tensor"), f"{mod.__name__} no longer imports randn_tensor"
        saved.append((mod, mod.randn_tensor))
        mod.randn_tensor = FEED
    saved_torch = (torch.randn, torch.randn_like)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.randn called inside the RePaint loop (not via randn_tensor)")

    torch.randn = torch.randn_like = forbidden
    try:
        yield
    finally:
        torch.randn, torch.randn_like = saved_torch
        for mod, fn in saved:
            mod.randn_tensor = fn


def schedule_ops(timesteps):
    """The pipeline's `t < t_last` rule on a plain list: 'S' (model + step) or 'U' (undo_step)."""
    ops = []
    t_last = timesteps[0] + 1
    for t in timesteps:
        ops.append("S" if t < t_last else "U")
        t_last = t
    return "".join(ops)


# ---------------------------------------------------------------------------
# The loop (RePaintPipeline.__call__, verbatim apart from the bookkeeping)
# ---------------------------------------------------------------------------

def repaint_loop(unet, scheduler, original_image, mask_image, case, noise):
    """Returns (final sample before /2+0.5, [state after iteration i], [draws per iteration])."""
    FEED.load(noise)
    with patched_randn():
        image = pipeline_repaint.randn_tensor(original_image.shape, generator=None,
                                              device=original_image.device,
                                              dtype=original_image.dtype)
        assert FEED.calls == 1
        scheduler.set_timesteps(case["steps"], case["jump_length"], case["jump_n_sample"], None)
        scheduler.eta = case["eta"]

        states, draws = [], []
        t_last = scheduler.timesteps[0] + 1
        for i, t in enumerate(scheduler.timesteps):
            before = FEED.calls
            if t < t_last:
                model_output = unet(image, t).sample
                image = scheduler.step(model_output, t, image, original_image, mask_image,
                                       None).prev_sample
            else:
                image = scheduler.undo_step(image, t_last, None)
            t_last = t
            assert torch.isfinite(image).all(), (case["name"], i)
            states.append(image)
            draws.append(FEED.calls - before)
    assert not FEED.queue, f"{case['name']}: {len(FEED.queue)} noise tensors left unused"
    return image, states, draws


def run_pipeline(unet, case, original_image, mask, noise):
    """RePaintPipeline.__call__ itself, on the same inputs and noise queue."""
    pipe = RePaintPipeline(unet=unet, scheduler=RePaintScheduler(num_train_timesteps=TRAIN_STEPS))
    pipe.set_progress_bar_config(disable=True)
    FEED.load(noise)
    with patched_randn():
        out = pipe(image=original_image.clone(), mask_image=mask.clone(),
                   num_inference_steps=case["steps"], eta=case["eta"],
                   jump_length=case["jump_length"], jump_n_sample=case["jump_n_sample"],
                   generator=None, output_type="np").images
    assert FEED.calls == len(noise) and not FEED.queue, (case["name"], FEED.calls, len(noise))
    return out


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def run_case(case, unet, unet64):
    original, mask = make_inputs()
    sched = RePaintScheduler(num_train_timesteps=TRAIN_STEPS)
    sched.set_timesteps(case["steps"], case["jump_length"], case["jump_n_sample"])
    ts = [int(t) for t in sched.timesteps]
    ops = schedule_ops(ts)
    per_undo = sched.config.num_train_timesteps // case["steps"]
    expected_draws = [1 if op == "S" else per_undo for op in ops]
    n_noise = 1 + sum(expected_draws)
    noise = noise_list(n_noise)

    with torch.no_grad():
        sample, states, draws = repaint_loop(unet, sched, original, mask, case, noise)
        assert draws == expected_draws, (case["name"], draws)
        assert sched.eta == case["eta"] and sched.config.eta == 0.0

        # The pipeline itself must give the same image bit for bit.
        img = run_pipeline(unet, case, original, mask, noise)
        ref = (sample / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
        assert img.dtype == np.float32 and np.array_equal(img, ref), f"{case['name']}: pipeline disagrees"

        # Sensitivity: UNet, inputs and noise in float64 (scheduler tables stay float32).
        s64, states64, draws64 = repaint_loop(unet64, RePaintScheduler(num_train_timesteps=TRAIN_STEPS), original.double(),
                                              mask.double(), case, [n.double() for n in noise])
        assert draws64 == draws and s64.dtype == torch.float64
    curve = [rel_err(s, s64_) for s, s64_ in zip(states, states64)]

    n_iter = len(ts)
    state_bytes = n_iter * int(np.prod(SHAPE)) * 4
    every = 1 if state_bytes < STATE_BUDGET_BYTES else STATE_FALLBACK_EVERY
    state_idx = [i for i in range(n_iter) if i % every == 0]
    assert torch.equal(states[-1], sample)

    tensors = {"original_image": f32(original), "mask": f32(mask), "sample": f32(sample),
               "timesteps": torch.tensor(ts, dtype=torch.float32)}
    assert tensors["timesteps"].tolist() == ts
    for k, nz in enumerate(noise):
        tensors[f"noise.{k}"] = f32(nz)
    for i in state_idx:
        tensors[f"state.{i}"] = f32(states[i])

    # Facts for the README (asserted so the text cannot go stale).
    x0 = noise[0]
    assert torch.equal(states[0], sched_step_reference(unet, original, mask, x0, ts[0], case,
                                                       noise[1])), case["name"]
    known = mask.expand(SHAPE) == 1
    # The last iteration is a step at t = 0 (a_prev = 1): the kept pixels are original_image.
    assert ts[-1] == 0 and ops[-1] == "S"
    assert torch.equal(sample[known], original[known]), case["name"]
    sens = {"sample": curve[-1], "sample_known_region": rel_err(sample[known], s64[known]),
            "sample_inpainted_region": rel_err(sample[~known], s64[~known])}
    for i in sorted(set([0, n_iter // 4, n_iter // 2, (3 * n_iter) // 4])):
        sens[f"state.{i}"] = curve[i]
    diag = {
        "timesteps": ts, "ops": ops, "per_undo": per_undo, "n_noise": n_noise,
        "n_steps": ops.count("S"), "n_undo": ops.count("U"), "state_every": every,
        "sens": sens, "curve": curve,
        "absmax": sample.abs().max().item(),
        "known_max_dev": (sample - original)[known].abs().max().item(),
    }
    meta = {
        "scheduler_class": type(sched).__name__,
        "scheduler_config": config_json(sched),
        "num_inference_steps": str(case["steps"]),
        "jump_length": str(case["jump_length"]),
        "jump_n_sample": str(case["jump_n_sample"]),
        "eta": repr(float(case["eta"])),
        "num_noise_draws": str(n_noise),
        "noise_per_undo_step": str(per_undo),
        "num_iterations": str(n_iter),
        "iteration_ops": ops,
        "state_every": str(every),
        "model": MODEL_REL,
        "image_seed": str(IMAGE_SEED),
        "noise_seed": str(NOISE_SEED),
        "mask_convention": "mask [2,1,8,8] broadcast over channels; 1 = keep original, 0 = inpaint",
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "f64_rel_error": json.dumps({k: float(g3(v)) for k, v in sens.items()}, sort_keys=True),
    }
    return tensors, meta, diag


def sched_step_reference(unet, original, mask, x_T, t, case, noise):
    """Iteration 0 by hand (the README formulas of RePaintScheduler.step), float32."""
    sched = RePaintScheduler(num_train_timesteps=TRAIN_STEPS)
    sched.set_timesteps(case["steps"], case["jump_length"], case["jump_n_sample"])
    T = sched.config.num_train_timesteps
    n = T // case["steps"]
    tt = torch.tensor(t)
    with torch.no_grad():
        eps = unet(x_T, tt).sample
    a_t = sched.alphas_cumprod[t]
    a_prev = sched.alphas_cumprod[t - n] if t - n >= 0 else torch.tensor(1.0)
    x0 = torch.clamp((x_T - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5, -1, 1)
    var = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
    std = case["eta"] * var ** 0.5
    unknown = a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * eps
    if t > 0 and case["eta"] > 0:
        unknown = unknown + std * noise
    known = a_prev ** 0.5 * original + (1 - a_prev) ** 0.5 * noise
    return mask * known + (1.0 - mask) * unknown


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------

def _key_order(k):
    if "." in k:
        base, idx = k.rsplit(".", 1)
        if idx.isdigit():
            return (base, int(idx))
    return (k, -1)


def verdict(rel):
    return "robust" if rel <= 1e-4 else ("marginal" if rel <= 1e-3 else "CHAOTIC")


def segments(ts, ops):
    """Compress the loop into runs: 'S 950->750 (5 steps)' / 'U 750->900 (3 undo)'."""
    out = []
    i = 0
    while i < len(ops):
        j = i
        while j + 1 < len(ops) and ops[j + 1] == ops[i]:
            j += 1
        if ops[i] == "S":
            out.append(f"step t={ts[i]}..{ts[j]} (iterations {i}-{j})" if j > i
                       else f"step t={ts[i]} (iteration {i})")
        else:
            prev = ts[i - 1]
            out.append(f"undo {prev}->{ts[j]} (iterations {i}-{j})")
        i = j + 1
    return out


def readme(files, keys_by_file, diags, total):
    L = []
    a = L.append
    a("# RePaint fixtures (diffusers RePaintPipeline + RePaintScheduler, tiny UNet2DModel)")
    a("")
    a(f"Generated by `scripts/make_repaint_fixtures.py` with diffusers {diffusers.__version__} and torch "
      f"{torch.__version__.split('+')[0]} (CPU, one thread, deterministic algorithms). Do not edit: this "
      "README is written by the script. Sources: `diffusers/pipelines/deprecated/repaint/pipeline_repaint.py` "
      "(`RePaintPipeline.__call__`) and `diffusers/schedulers/scheduling_repaint.py` (`RePaintScheduler`).")
    a("")
    a("All tensors are float32 (timesteps are float32 holding integers). Every file's `__metadata__` has "
      "`scheduler_class`, `scheduler_config` (`json.dumps(dict(scheduler.config), sort_keys=True)` without "
      "diffusers' internal `_use_default_values`), `num_inference_steps`, `jump_length`, `jump_n_sample`, "
      "`eta`, `num_noise_draws`, `noise_per_undo_step`, `num_iterations`, `iteration_ops` (one letter per "
      "loop iteration: `S` = model call + `step`, `U` = `undo_step`), `state_every`, `model` (source model "
      "folder), `image_seed`, `noise_seed`, `mask_convention`, `diffusers_version`, `torch_version`, "
      "`f64_rel_error` (JSON, see Sensitivity).")
    a("")
    a("## Files")
    a("")
    a("| file | bytes | tensors |")
    a("|---|---|---|")
    for fname, size in files:
        keys = sorted(keys_by_file[fname], key=_key_order)
        nk = [k for k in keys if k.startswith("noise.")]
        sk = [k for k in keys if k.startswith("state.")]
        rest = [k for k in keys if k not in nk and k not in sk]
        ks = ", ".join(f"`{k}`" for k in rest)
        ks += f", `{nk[0]}` .. `{nk[-1]}` ({len(nk)})"
        ks += f", `{sk[0]}` .. `{sk[-1]}` ({len(sk)})"
        a(f"| `{fname}` | {size} | {ks} |")
    a(f"| total (with this README) | {total} | |")
    a("")
    a("- `original_image` [2,3,8,8]: `torch.rand([2,3,8,8], generator=torch.Generator().manual_seed("
      f"{IMAGE_SEED})) * 2 - 1` (values in [-1, 1), the model's range). Same in both files.")
    a("- `mask` [2,1,8,8]: **1 = keep** the original pixel (white in a PIL mask), **0 = inpaint**. Image 0 "
      "keeps its left half (columns 0-3 are 1, columns 4-7 are 0); image 1 keeps everything except the "
      "central 4x4 square (rows and columns 2-5 are 0). Same in both files.")
    a("- `noise.<k>` [2,3,8,8]: the k-th draw of `torch.randn([2,3,8,8])` from ONE generator "
      f"`torch.Generator().manual_seed({NOISE_SEED})`, k = 0, 1, ... in the order the pipeline consumes "
      "them (see Noise).")
    a("- `timesteps` [len]: `scheduler.timesteps` after `set_timesteps(N, jump_length, jump_n_sample)` (the "
      "jump schedule, int64 in diffusers).")
    a("- `state.<i>` [2,3,8,8]: the sample after loop iteration i (0-based, one per entry of `timesteps`, "
      "whether that iteration was a step or an undo). All iterations are stored when they fit in "
      f"{STATE_BUDGET_BYTES} bytes per case (they do: `state_every` = 1), else every "
      f"{STATE_FALLBACK_EVERY}th. The last state equals `sample`.")
    a("- `sample` [2,3,8,8]: the final sample, raw (before the pipeline's `(x / 2 + 0.5).clamp(0, 1)`).")
    a("")
    a("## Mask shape and broadcasting")
    a("")
    a("`_preprocess_mask` returns a tensor unchanged (only `.to(device, unet.dtype)`), and "
      "`RePaintScheduler.step` blends `mask * known + (1.0 - mask) * unknown` with plain torch broadcasting, "
      "so the mask must broadcast against [B,3,H,W]: [B,1,H,W] (used here) broadcasts over the channels. "
      "(A PIL mask becomes [B,H,W] after `_preprocess_mask` (grey, resized to a multiple of 32, thresholded at "
      "0.5); that broadcasts correctly only for B = 1, where [1,H,W] acts as [1,1,H,W].) The mask is not "
      "resized or thresholded here; it is exactly 0/1.")
    a("")
    a("## Loop (`RePaintPipeline.__call__`)")
    a("")
    a("```")
    a("image = randn_tensor(original_image.shape)          # noise.0 = x_T (no init_noise_sigma scaling; it is 1)")
    a("scheduler.set_timesteps(N, jump_length, jump_n_sample)")
    a("scheduler.eta = eta                                 # attribute only; config.eta stays 0.0")
    a("t_last = scheduler.timesteps[0] + 1")
    a("for t in scheduler.timesteps:                       # t: 0-dim int64 tensor")
    a("    if t < t_last:                                  # going down: model + step")
    a("        eps = unet(image, t).sample                 # no scale_model_input (identity anyway)")
    a("        image = scheduler.step(eps, t, image, original_image, mask).prev_sample")
    a("    else:                                           # t > t_last: jump back up")
    a("        image = scheduler.undo_step(image, t_last)  # NB: the previous (smaller) timestep")
    a("    t_last = t")
    a("sample = image                                      # pipeline output: (sample / 2 + 0.5).clamp(0, 1)")
    a("```")
    a("")
    a("The script reproduces this loop and also runs `RePaintPipeline.__call__` itself (same inputs, "
      "`generator=None`, same noise queue, `output_type=\"np\"`): its images equal "
      "`(sample / 2 + 0.5).clamp(0, 1)` (NHWC) bit for bit, for both files.")
    a("")
    a("## RePaintScheduler (defaults)")
    a("")
    a(f"`RePaintScheduler(num_train_timesteps={TRAIN_STEPS})`: num_train_timesteps T = {TRAIN_STEPS}, betas = `torch.linspace(1e-4, 0.02, {TRAIN_STEPS}, "
      "dtype=float32)`, `alphas_cumprod = cumprod(1 - betas)` (float32; the same tables as "
      "DDPMScheduler's linear schedule, see ../schedulers/README.md), `final_alpha_cumprod = 1.0`, "
      f"clip_sample True (range [-1, 1]), init_noise_sigma 1. Let n = T // N ({TRAIN_STEPS // 20} for N = 20, {TRAIN_STEPS // 25} for N = 25) "
      "and abar[t] = alphas_cumprod[t].")
    a("")
    a("**`set_timesteps(N, jump_length j, jump_n_sample r)`**: `N = min(T, N)`; `jumps = {k: r - 1 for k in "
      "range(0, N - j, j)}`; `t = N`; `while t >= 1: t -= 1; append(t); if jumps.get(t, 0) > 0: jumps[t] -= 1; "
      "for _ in range(j): t += 1; append(t)`; finally `timesteps = array * n` (int64). I.e. the plain "
      "descent N-1, ..., 0 where, on reaching a jump point k (k = 0, j, 2j, ... < N - j), the schedule goes "
      "back up j steps and descends again, r - 1 times per point.")
    a("")
    a("**`step(eps, t, x, original_image, mask)`** (float32, 0-dim tensors for the scalars):")
    a("")
    a("```")
    a("prev_t  = t - n")
    a("a_t     = abar[t];  a_prev = abar[prev_t] if prev_t >= 0 else 1.0;  b_t = 1 - a_t")
    a("x0      = (x - b_t ** 0.5 * eps) / a_t ** 0.5;  x0 = clamp(x0, -1, 1)      # clip_sample")
    a("noise   = randn_tensor(eps.shape)                 # ALWAYS drawn, also for eta = 0 and t = 0")
    a("var     = _get_variance(t) = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)")
    a("std     = eta * var ** 0.5")
    a("variance_term = std * noise if (t > 0 and eta > 0) else 0")
    a("unknown = a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * eps + variance_term")
    a("known   = a_prev ** 0.5 * original_image + (1 - a_prev) ** 0.5 * noise   # the SAME noise")
    a("prev    = mask * known + (1.0 - mask) * unknown")
    a("```")
    a("")
    a("(`std ** 2` is the square of the float32 square root, not `var` itself. At t = 0: a_prev = 1, var = 0, "
      "so `prev = mask * original_image + (1 - mask) * x0`; the last iteration of both schedules is such a "
      "step, hence the kept region of `sample` equals `original_image` exactly (asserted) and the inpainted "
      "region is the clipped x0 prediction, in [-1, 1].) The script checks "
      "iteration 0 against these formulas written out by hand (bit for bit).")
    a("")
    a("**`undo_step(x, t_last)`**: for i = 0 .. n-1: `beta = betas[t_last + i]`; `noise = randn_tensor(x.shape)`; "
      "`x = (1 - beta) ** 0.5 * x + beta ** 0.5 * noise`. It goes from t_last to t_last + n = t with n fresh "
      "noise tensors (one forward-diffusion step per training timestep, not one per inference step), using "
      "betas (not alphas_cumprod).")
    a("")
    a("## Noise (all of it is stored)")
    a("")
    a("diffusers' `randn_tensor` is replaced, in `diffusers.pipelines.deprecated.repaint.pipeline_repaint`, "
      "`diffusers.schedulers.scheduling_repaint` and `diffusers.utils.torch_utils`, by a queue that returns "
      "the next `noise.<k>` at every call (asserting the requested shape); `torch.randn`/`randn_like` raise "
      "during the loop, and the number of calls per iteration is asserted. Order: `noise.0` = x_T (the "
      "pipeline, before `set_timesteps`); then iteration by iteration: a step consumes 1 tensor, an undo "
      "consumes n (in the order i = 0 .. n-1 of `undo_step`'s loop). So the first noise index of iteration i "
      "is `1 + (#steps before i) + n * (#undos before i)`. The queue is empty at the end (asserted).")
    a("")
    a("## Cases")
    a("")
    for case in CASES:
        d = diags[case["name"]]
        a(f"### `{case['name']}.safetensors`")
        a("")
        a(f"N = {case['steps']}, jump_length = {case['jump_length']}, jump_n_sample = {case['jump_n_sample']}, "
          f"eta = {case['eta']!r}, n = {TRAIN_STEPS} // {case['steps']} = {d['per_undo']}. {len(d['timesteps'])} "
          f"iterations: {d['n_steps']} steps (UNet calls) and {d['n_undo']} undos; noise draws "
          f"1 + {d['n_steps']} + {d['n_undo']} * {d['per_undo']} = {d['n_noise']} "
          f"(`noise.0` .. `noise.{d['n_noise'] - 1}`).")
        a("")
        a("Timesteps: " + ", ".join(str(t) for t in d["timesteps"]))
        a("")
        a("`iteration_ops`: `" + d["ops"] + "`")
        a("")
        a("Runs: " + "; ".join(segments(d["timesteps"], d["ops"])) + ".")
        a("")
        a(f"Final sample: max |sample| = {g3(d['absmax'])}; in the kept region `sample == original_image` "
          f"exactly (max deviation {g3(d['known_max_dev'])}).")
        a("")
    a("## Sensitivity")
    a("")
    a("Each loop was re-run with the UNet, `original_image`, `mask` and every `noise.<k>` in float64 "
      "(scheduler tables stay float32, as in diffusers). The relative difference `max|f32 - f64| / max|f64|` "
      "estimates how much float32 rounding differences (any Haze UNet has them) are amplified by the loop. "
      "Stored in `f64_rel_error`. Verdict: robust <= 1e-4, marginal <= 1e-3, CHAOTIC above.")
    a("")
    a("| file | tensor | float64 vs float32 | verdict |")
    a("|---|---|---|---|")
    for case in CASES:
        sens = diags[case["name"]]["sens"]
        for k in sorted(sens, key=lambda k: (k.startswith("sample"), _key_order(k))):
            a(f"| `{case['name']}.safetensors` | `{k}` | {g3(sens[k])} | {verdict(sens[k])} |")
    a("")
    for case in CASES:
        curve = diags[case["name"]]["curve"]
        worst = max(curve)
        first_bad = next((i for i, c in enumerate(curve) if c > 1e-3), None)
        a(f"- `{case['name']}`: largest float64 difference over all `state.<i>` {g3(worst)}"
          + (f"; first state above 1e-3: `state.{first_bad}`." if first_bad is not None
             else "; every state is within 1e-3."))
    a("")
    a("## Determinism")
    a("")
    a("torch.set_num_threads(1), torch.use_deterministic_algorithms(True), fixed seeds. The `.safetensors` "
      "files are written by `make_tensor_fixtures.write_safetensors` (sorted tensor names, sorted metadata, "
      "header padded to 8 bytes) and read back with the safetensors library. Two runs give identical bytes "
      "on one machine; another CPU may round torch's vectorised float32 math differently (ulps).")
    a("")
    a("## Regenerating")
    a("")
    a("```\n$HOME/haze-ref-venv/bin/python scripts/make_repaint_fixtures.py\n```")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out_dir, exist_ok=True)

    unet, unet64 = load_unet(), load_unet(torch.float64)
    assert unet.config.in_channels == 3 and unet.config.out_channels == 3
    assert unet.config.sample_size == 8

    files, keys_by_file, diags = [], {}, {}
    total = 0
    for case in CASES:
        tensors, meta, diag = run_case(case, unet, unet64)
        diags[case["name"]] = diag
        fname = case["name"] + ".safetensors"
        path = os.path.join(args.out_dir, fname)
        write_safetensors(path, tensors, meta)
        check_roundtrip(path, tensors, meta)
        size = os.path.getsize(path)
        total += size
        files.append((fname, size))
        keys_by_file[fname] = list(tensors)
        print(f"{fname} {size}B {len(tensors)} tensors, {diag['n_noise']} noise draws, "
              f"{len(diag['timesteps'])} iterations ({diag['n_steps']} steps, {diag['n_undo']} undos)")
        print("    f64_rel_error", meta["f64_rel_error"])

    # The README reports the total including its own size: iterate to a fixed point.
    readme_size = 0
    for _ in range(5):
        text = readme(files, keys_by_file, diags, total + readme_size)
        if len(text.encode()) == readme_size:
            break
        readme_size = len(text.encode())
    else:
        sys.exit("README size did not converge")
    with open(os.path.join(args.out_dir, "README.md"), "w") as fh:
        fh.write(text)
    total += readme_size
    print(f"total {total} bytes in {args.out_dir}")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"total {total} bytes exceeds {MAX_TOTAL_BYTES}")


if __name__ == "__main__":
    main()
