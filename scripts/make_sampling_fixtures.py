#!/usr/bin/env python3
"""Generate full sampling-loop references (tiny UNet2DModel + diffusers scheduler) for Haze.

Writes into Tests/HazeDiffusionTests/Fixtures/sampling/ (CI has no Python, so the files are
committed; re-run this script only when a case is added or changed):

  ddim50_attn.safetensors       DDIM, 50 steps, eta 0, clip_sample, `attn` UNet
  ddim50_attn_model/            copy of the `attn` model folder + the DDIM scheduler_config.json
  ddpm20_attn.safetensors       DDPM fixed_small + clip_sample, 20 steps, explicit noise
  ddim20_cfg_class.safetensors  DDIM, 20 steps, classifier-free guidance, `class_cond` UNet
  dpmpp20_attn.safetensors      DPM-Solver++ (2M), 20 steps, `attn` UNet
  README.md                     the conventions (written by this script; do not edit by hand)

The models are the committed fixtures Tests/HazeNNTests/Fixtures/unet/{attn,class_cond}/
(made by scripts/make_unet_fixtures.py), loaded with UNet2DModel.from_pretrained. `haze sample`
must reproduce each final `sample` to a relative error <= 1e-3.

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_sampling_fixtures.py
    $HOME/haze-ref-venv/bin/python scripts/make_sampling_fixtures.py --out-dir /tmp/sampling

Conventions (documented in full in the README.md the script writes):
- The loop is exactly diffusers' DDIMPipeline / DDPMPipeline loop:
      scheduler.set_timesteps(N); x = x_T * scheduler.init_noise_sigma
      for t in scheduler.timesteps:
          eps = unet(scheduler.scale_model_input(x, t), t).sample   # t: 0-dim int64 tensor
          x = scheduler.step(eps, t, x[, eta=0.0]).prev_sample
  (scale_model_input is the identity for DDIM/DDPM/DPM-Solver; asserted.) The script
  cross-checks cases 1 and 2 against DDIMPipeline / DDPMPipeline themselves (output_type="pt",
  which returns (sample / 2 + 0.5).clamp(0, 1)).
- x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed)), which is also what
  the pipelines draw with that generator.
- No RNG inside the schedulers: diffusers' randn_tensor is replaced (in diffusers.utils.torch_utils
  and in the ddpm/ddim/dpmsolver_multistep scheduler modules) by a queue of pre-generated
  tensors `noise.<i>` (the i-th draw of torch.randn(shape) from a generator seeded NOISE_SEED);
  the script asserts exactly one call per DDPM step with t > 0 and none otherwise.
- Classifier-free guidance: one batched UNet call of size 4 per step.

Determinism: torch.set_num_threads(1), torch.use_deterministic_algorithms(True), fixed seeds;
files are written by make_tensor_fixtures.write_safetensors (sorted tensor names, sorted
metadata, header padded to 8 bytes) and read back with the safetensors library; the model folder
is a byte copy of the source folder plus scheduler.save_config's sorted JSON.
"""
import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only; never touch the network

import torch
import diffusers
import diffusers.utils.torch_utils as diffusers_torch_utils
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)
from diffusers.schedulers import scheduling_ddim, scheduling_ddpm, scheduling_dpmsolver_multistep
from diffusers.utils import logging as diffusers_logging

diffusers_logging.set_verbosity_error()

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import check_roundtrip, write_safetensors  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeDiffusionTests", "Fixtures", "sampling")
UNET_FIXTURES = os.path.join(REPO, "Tests", "HazeNNTests", "Fixtures", "unet")
ATTN_REL = "Tests/HazeNNTests/Fixtures/unet/attn"
CLASS_REL = "Tests/HazeNNTests/Fixtures/unet/class_cond"
MODEL_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]
MODEL_DIR_NAME = "ddim50_attn_model"
MAX_TOTAL_BYTES = 300_000
REL_TOL = 1e-3

ATTN_X_T_SEED = 0      # x_T for every attn case, shape [2, 3, 8, 8]
DDPM_NOISE_SEED = 1    # noise.<i> for ddpm20_attn
CLASS_X_T_SEED = 2     # x_T for ddim20_cfg_class, shape [2, 1, 8, 8]

GUIDANCE_SCALE = 3.0
COND_LABELS = [3, 7]
NULL_CLASS = 9         # = num_class_embeds - 1: the "unconditional" class

LINEAR = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
DDIM_KW = dict(LINEAR, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
               timestep_spacing="leading", prediction_type="epsilon")
DDPM_KW = dict(LINEAR, variance_type="fixed_small", clip_sample=True, prediction_type="epsilon")
DPMPP_KW = dict(LINEAR, algorithm_type="dpmsolver++", solver_order=2, prediction_type="epsilon")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def config_json(sched):
    """Scheduler config as sorted JSON, without diffusers' set-ordered `_use_default_values`."""
    cfg = {k: v for k, v in dict(sched.config).items() if k != "_use_default_values"}
    return json.dumps(cfg, sort_keys=True)


def seeded_randn(seed, shape, n=None):
    g = torch.Generator().manual_seed(seed)
    if n is None:
        return torch.randn(shape, generator=g, dtype=torch.float32)
    return [torch.randn(shape, generator=g, dtype=torch.float32) for _ in range(n)]


def load_unet(folder, dtype=torch.float32):
    m = UNet2DModel.from_pretrained(folder)
    m.eval()
    m.requires_grad_(False)
    return m.to(dtype)


def rel_err(a, b):
    """max |a - b| / max |b| (the metric of the Haze tests)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    return ((a - b).abs().max() / b.abs().max()).item()


def g3(x):
    return f"{x:.3g}"


class NoiseQueue:
    """Replacement for diffusers' randn_tensor: hands out pre-generated tensors in order."""

    def __init__(self):
        self.queue = []
        self.calls = 0

    def load(self, tensors):
        self.queue = list(tensors)
        self.calls = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        if not self.queue:
            raise AssertionError("randn_tensor called but no noise tensor is queued")
        t = self.queue.pop(0)
        assert tuple(shape) == tuple(t.shape), (shape, t.shape)
        self.calls += 1
        return t.clone().to(dtype if dtype is not None else torch.float32)


FEED = NoiseQueue()
PATCH_MODULES = [diffusers_torch_utils, scheduling_ddpm, scheduling_ddim, scheduling_dpmsolver_multistep]


def install_noise_patch():
    for mod in PATCH_MODULES:
        assert hasattr(mod, "randn_tensor"), mod.__name__
        mod.randn_tensor = FEED


def sample_loop(eps_fn, sched, x_T, n, eta=None, noise=None):
    """The pipeline loop. noise: list of per-step tensors (None entries = no draw expected).
    Returns (final sample, timesteps, info) where info has per-step draw counts and the first
    step's model output / prev sample."""
    sched.set_timesteps(n)
    x = x_T * sched.init_noise_sigma
    draws = []
    info = {}
    for i, t in enumerate(sched.timesteps):
        model_input = sched.scale_model_input(x, t)
        assert torch.equal(model_input, x), "scale_model_input must be the identity here"
        eps = eps_fn(model_input, t)
        step_noise = noise[i] if noise is not None else None
        FEED.load([] if step_noise is None else [step_noise.to(x.dtype)])
        kw = {} if eta is None else {"eta": eta}
        out = sched.step(eps, t, x, **kw)
        draws.append(FEED.calls)
        assert not FEED.queue, f"step {i} (t={int(t)}) did not consume its noise tensor"
        if i == 0:
            info["model_output.0"] = eps
            info["prev_sample.0"] = out.prev_sample
        x = out.prev_sample
    info["draws"] = draws
    return x, sched.timesteps.clone(), info


def unet_eps_fn(unet):
    def fn(x, t):
        return unet(x, t).sample
    return fn


def cfg_eps_fn(unet, labels_cond, null_class, g, batched=True, record=None):
    b = len(labels_cond)
    labels_all = torch.tensor(list(labels_cond) + [null_class] * b, dtype=torch.int64)

    def fn(x, t):
        if batched:
            out = unet(torch.cat([x, x]), t, class_labels=labels_all).sample
            eps_cond, eps_uncond = out.chunk(2)
        else:
            eps_cond = unet(x, t, class_labels=labels_all[:b]).sample
            eps_uncond = unet(x, t, class_labels=labels_all[b:]).sample
        if record is not None and not record:
            record["eps_cond.0"] = eps_cond
            record["eps_uncond.0"] = eps_uncond
        return eps_uncond + g * (eps_cond - eps_uncond)
    return fn


def ddim_x0_clip_stats(unet_fn, kw, x_T, n):
    """Fraction of unclipped x0 entries outside [-1, 1] at each step (diagnostic only)."""
    sched = DDIMScheduler(**kw)
    sched.set_timesteps(n)
    x = x_T.clone()
    fracs = []
    for t in sched.timesteps:
        eps = unet_fn(x, t)
        abar = sched.alphas_cumprod[t]
        x0 = (x - (1 - abar) ** 0.5 * eps) / abar ** 0.5
        fracs.append((x0.abs() > 1).to(torch.float64).mean().item())
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return fracs


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def common_meta(sched, n, model_rel, x_T_seed):
    return {
        "scheduler_class": type(sched).__name__,
        "scheduler_config": config_json(sched),
        "num_inference_steps": str(n),
        "init_noise_sigma": repr(float(sched.init_noise_sigma)),
        "model": model_rel,
        "x_T_seed": str(x_T_seed),
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__.split("+")[0],
    }


def case_ddim50(attn, attn64, x_T, out_dir):
    n = 50
    sched = DDIMScheduler(**DDIM_KW)
    sample, ts, info = sample_loop(unet_eps_fn(attn), sched, x_T, n, eta=0.0)
    assert info["draws"] == [0] * n, info["draws"]

    # Cross-check: DDIMPipeline itself, same generator seed.
    pipe = DDIMPipeline(unet=attn, scheduler=DDIMScheduler(**DDIM_KW))
    pipe.set_progress_bar_config(disable=True)
    img = pipe(batch_size=2, generator=torch.Generator().manual_seed(ATTN_X_T_SEED), eta=0.0,
               num_inference_steps=n, output_type="pt").images
    assert torch.equal(img, (sample / 2 + 0.5).clamp(0, 1)), "DDIMPipeline disagrees"

    # Diagnostics (not stored): float64 run, clip_sample=False run, clipping statistics.
    s64, _, _ = sample_loop(unet_eps_fn(attn64), DDIMScheduler(**DDIM_KW), x_T.double(), n, eta=0.0)
    noclip, _, _ = sample_loop(unet_eps_fn(attn), DDIMScheduler(**dict(DDIM_KW, clip_sample=False)),
                               x_T, n, eta=0.0)
    fracs = ddim_x0_clip_stats(unet_eps_fn(attn), DDIM_KW, x_T, n)
    diag = {
        "f64_rel": rel_err(sample, s64),
        "noclip_rel": rel_err(sample, noclip),
        "noclip_absmax": noclip.abs().max().item(),
        "absmax": sample.abs().max().item(),
        "saturated": (sample.abs() == 1).to(torch.float64).mean().item(),
        "clip_frac_first": fracs[0], "clip_frac_last": fracs[-1],
        "clip_steps": sum(1 for f in fracs if f > 0),
    }

    tensors = {"x_T": f32(x_T), "sample": f32(sample), "timesteps": f32(ts),
               "model_output.0": f32(info["model_output.0"]), "prev_sample.0": f32(info["prev_sample.0"])}
    meta = common_meta(sched, n, ATTN_REL, ATTN_X_T_SEED)
    meta.update(eta="0.0", model_folder=MODEL_DIR_NAME)

    # Model folder: byte copy of the attn fixture + scheduler_config.json.
    mdir = os.path.join(out_dir, MODEL_DIR_NAME)
    if os.path.isdir(mdir):
        shutil.rmtree(mdir)
    os.makedirs(mdir)
    for f in MODEL_FILES:
        shutil.copyfile(os.path.join(UNET_FIXTURES, "attn", f), os.path.join(mdir, f))
    sched.save_config(mdir)
    assert sorted(os.listdir(mdir)) == sorted(MODEL_FILES + ["scheduler_config.json"]), os.listdir(mdir)
    # Reload both from the folder; the loop must reproduce `sample` bit for bit.
    sched2 = DDIMScheduler.from_pretrained(mdir)
    assert config_json(sched2) == config_json(sched), "scheduler_config.json does not round-trip"
    unet2 = load_unet(mdir)
    s2, ts2, _ = sample_loop(unet_eps_fn(unet2), sched2, x_T, n, eta=0.0)
    assert torch.equal(s2, sample) and torch.equal(ts2, ts), "model folder does not reproduce"
    return tensors, meta, diag


def case_ddpm20(attn, attn64, x_T):
    n = 20
    sched = DDPMScheduler(**DDPM_KW)
    sched.set_timesteps(n)
    noise_all = seeded_randn(DDPM_NOISE_SEED, tuple(x_T.shape), n)
    noise = [noise_all[i] if int(t) > 0 else None for i, t in enumerate(sched.timesteps)]
    sample, ts, info = sample_loop(unet_eps_fn(attn), sched, x_T, n, noise=noise)
    expected = [1 if int(t) > 0 else 0 for t in ts]
    assert info["draws"] == expected, (info["draws"], expected)
    noise_steps = [i for i, d in enumerate(info["draws"]) if d == 1]

    # Cross-check: DDPMPipeline itself with the same x_T generator and the same noise queue.
    pipe = DDPMPipeline(unet=attn, scheduler=DDPMScheduler(**DDPM_KW))
    pipe.set_progress_bar_config(disable=True)
    FEED.load([noise_all[i] for i in noise_steps])
    img = pipe(batch_size=2, generator=torch.Generator().manual_seed(ATTN_X_T_SEED),
               num_inference_steps=n, output_type="pt").images
    assert FEED.calls == len(noise_steps) and not FEED.queue, FEED.calls
    assert torch.equal(img, (sample / 2 + 0.5).clamp(0, 1)), "DDPMPipeline disagrees"

    s64, _, _ = sample_loop(unet_eps_fn(attn64), DDPMScheduler(**DDPM_KW), x_T.double(), n, noise=noise)
    noclip, _, _ = sample_loop(unet_eps_fn(attn), DDPMScheduler(**dict(DDPM_KW, clip_sample=False)),
                               x_T, n, noise=noise)
    diag = {"f64_rel": rel_err(sample, s64), "noclip_rel": rel_err(sample, noclip),
            "absmax": sample.abs().max().item(), "noclip_absmax": noclip.abs().max().item()}

    tensors = {"x_T": f32(x_T), "sample": f32(sample), "timesteps": f32(ts),
               "model_output.0": f32(info["model_output.0"]), "prev_sample.0": f32(info["prev_sample.0"])}
    for i in noise_steps:
        tensors[f"noise.{i}"] = f32(noise_all[i])
    meta = common_meta(sched, n, ATTN_REL, ATTN_X_T_SEED)
    meta.update(noise_seed=str(DDPM_NOISE_SEED), noise_steps=",".join(map(str, noise_steps)))
    return tensors, meta, diag, noise_steps


def case_cfg(cls_unet, cls_unet64):
    n = 20
    x_T = seeded_randn(CLASS_X_T_SEED, (2, 1, 8, 8))
    sched = DDIMScheduler(**DDIM_KW)
    rec = {}
    sample, ts, info = sample_loop(cfg_eps_fn(cls_unet, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE,
                                              record=rec), sched, x_T, n, eta=0.0)
    assert info["draws"] == [0] * n
    two, _, _ = sample_loop(cfg_eps_fn(cls_unet, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE, batched=False),
                            DDIMScheduler(**DDIM_KW), x_T, n, eta=0.0)
    s64, _, _ = sample_loop(cfg_eps_fn(cls_unet64, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE),
                            DDIMScheduler(**DDIM_KW), x_T.double(), n, eta=0.0)
    g1, _, _ = sample_loop(cfg_eps_fn(cls_unet, COND_LABELS, NULL_CLASS, 1.0),
                           DDIMScheduler(**DDIM_KW), x_T, n, eta=0.0)
    noclip, _, _ = sample_loop(cfg_eps_fn(cls_unet, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE),
                               DDIMScheduler(**dict(DDIM_KW, clip_sample=False)), x_T, n, eta=0.0)
    diag = {"two_calls_rel": rel_err(two, sample), "two_calls_equal": torch.equal(two, sample),
            "f64_rel": rel_err(sample, s64), "g1_rel": rel_err(g1, sample),
            "noclip_rel": rel_err(sample, noclip), "absmax": sample.abs().max().item(),
            "saturated": (sample.abs() == 1).to(torch.float64).mean().item()}

    tensors = {"x_T": f32(x_T), "sample": f32(sample), "timesteps": f32(ts),
               "class_labels": torch.tensor(COND_LABELS, dtype=torch.float32),
               "uncond_class_labels": torch.tensor([NULL_CLASS] * len(COND_LABELS), dtype=torch.float32),
               "eps_cond.0": f32(rec["eps_cond.0"]), "eps_uncond.0": f32(rec["eps_uncond.0"]),
               "model_output.0": f32(info["model_output.0"]), "prev_sample.0": f32(info["prev_sample.0"])}
    meta = common_meta(sched, n, CLASS_REL, CLASS_X_T_SEED)
    meta.update(eta="0.0", guidance_scale=repr(GUIDANCE_SCALE), null_class_label=str(NULL_CLASS),
                cfg_formula="eps_uncond + guidance_scale * (eps_cond - eps_uncond)",
                cfg_batching="one UNet call per step on cat([x, x]) with class_labels "
                             f"{COND_LABELS + [NULL_CLASS] * len(COND_LABELS)}; first half = cond")
    return tensors, meta, diag


def case_dpmpp(attn, attn64, x_T):
    n = 20
    sched = DPMSolverMultistepScheduler(**DPMPP_KW)
    sample, ts, info = sample_loop(unet_eps_fn(attn), sched, x_T, n)
    assert info["draws"] == [0] * n
    s64, _, _ = sample_loop(unet_eps_fn(attn64), DPMSolverMultistepScheduler(**DPMPP_KW), x_T.double(), n)
    diag = {"f64_rel": rel_err(sample, s64), "absmax": sample.abs().max().item(),
            "sigmas": [float(s) for s in sched.sigmas]}
    tensors = {"x_T": f32(x_T), "sample": f32(sample), "timesteps": f32(ts),
               "model_output.0": f32(info["model_output.0"]), "prev_sample.0": f32(info["prev_sample.0"])}
    meta = common_meta(sched, n, ATTN_REL, ATTN_X_T_SEED)
    return tensors, meta, diag


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------

def fmt_ts(ts):
    return ", ".join(str(int(t)) for t in ts)


def readme(files, metas, tensors_by_file, diags, noise_steps, total):
    m1 = metas["ddim50_attn.safetensors"]
    lines = []
    a = lines.append
    a("# Sampling-loop fixtures (tiny UNet2DModel + diffusers scheduler)")
    a("")
    a(f"Generated by `scripts/make_sampling_fixtures.py` with diffusers {diffusers.__version__} and torch "
      f"{torch.__version__.split('+')[0]} (CPU, one thread, deterministic algorithms). Do not edit: this "
      "README is written by the script. `haze sample` must reproduce each final `sample` with relative "
      f"error `max|haze - sample| / max|sample|` <= {REL_TOL:g}.")
    a("")
    a("All tensors are float32; integer quantities (timesteps, class labels) are stored as float32 holding "
      "integers. Every file has `__metadata__` with `scheduler_class`, `scheduler_config` "
      "(`json.dumps(dict(scheduler.config), sort_keys=True)` without diffusers' internal "
      "`_use_default_values`), `num_inference_steps`, `init_noise_sigma`, `model` (the source model "
      "folder), `x_T_seed`, `diffusers_version`, `torch_version`, plus the case-specific keys below.")
    a("")
    a("## Files")
    a("")
    a("| file | bytes | keys |")
    a("|---|---|---|")
    for fname, size in files:
        keys = tensors_by_file.get(fname)
        if keys is None:
            a(f"| `{fname}` | {size} | |")
        else:
            a(f"| `{fname}` | {size} | {', '.join('`' + k + '`' for k in sorted(keys, key=_key_order))} |")
    a(f"| total | {total} | |")
    a("")
    a("## Models")
    a("")
    a(f"- `attn`: `{ATTN_REL}/` (3 channels, 8x8, unconditional).")
    a(f"- `class_cond`: `{CLASS_REL}/` (1 channel, 8x8, `num_class_embeds` 10).")
    a("")
    a("Both are loaded with `UNet2DModel.from_pretrained(folder)` in float32, `eval()` mode. "
      f"`{MODEL_DIR_NAME}/` is a byte-for-byte copy of the `attn` folder (`config.json`, "
      "`diffusion_pytorch_model.safetensors`) plus the `scheduler_config.json` written by "
      "`DDIMScheduler.save_config` for case 1 (flat layout, not a pipeline `model_index.json` layout). "
      "The script reloads the folder with `UNet2DModel.from_pretrained` and "
      "`DDIMScheduler.from_pretrained` and checks that it reproduces `ddim50_attn.safetensors`'s "
      "`sample` bit for bit.")
    a("")
    a("## Loop (all cases)")
    a("")
    a("Exactly diffusers' `DDIMPipeline` / `DDPMPipeline` loop:")
    a("")
    a("```")
    a("scheduler.set_timesteps(N)")
    a("x = x_T * scheduler.init_noise_sigma          # init_noise_sigma = 1.0 in every case")
    a("for t in scheduler.timesteps:                 # t: 0-dim int64 tensor, passed as is to the UNet")
    a("    eps = unet(scheduler.scale_model_input(x, t), t).sample   # scale_model_input = identity here")
    a("    x = scheduler.step(eps, t, x[, eta=0.0]).prev_sample")
    a("sample = x                                    # raw, NOT (x / 2 + 0.5).clamp(0, 1)")
    a("```")
    a("")
    a("The script checks cases 1 and 2 against `DDIMPipeline` / `DDPMPipeline` themselves "
      "(`output_type=\"pt\"`, generator `torch.Generator().manual_seed(x_T_seed)`): their output equals "
      "`(sample / 2 + 0.5).clamp(0, 1)` bit for bit.")
    a("")
    a("Every file also stores first-step debugging tensors: `model_output.0` (the eps passed to the first "
      "`step`, i.e. the guided eps for CFG) and `prev_sample.0` (the first `step`'s output).")
    a("")
    a("**Initial sample.** `x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed))` "
      f"(what the pipelines draw with that generator): seed {ATTN_X_T_SEED}, shape [2, 3, 8, 8] for every "
      f"`attn` case (the same `x_T` in cases 1, 2 and 4); seed {CLASS_X_T_SEED}, shape [2, 1, 8, 8] for "
      "the class-conditional case.")
    a("")
    a("**Noise.** No RNG is used inside the schedulers: diffusers' `randn_tensor` is replaced (in "
      "`diffusers.utils.torch_utils` and in the `scheduling_ddpm`, `scheduling_ddim` and "
      "`scheduling_dpmsolver_multistep` module namespaces) by a queue of pre-generated tensors, and the "
      "script asserts the number of draws per step. DDIM with eta 0 and DPM-Solver++ never draw.")
    a("")
    a("## Cases")
    a("")
    d = diags
    a("### 1. `ddim50_attn.safetensors`")
    a("")
    a("`DDIMScheduler(" + ", ".join(f"{k}={v!r}" for k, v in DDIM_KW.items()) + ")`, "
      "`set_timesteps(50)`, `eta=0.0`, `attn` model. Keys: `x_T`, `sample`, `timesteps` [50], "
      "`model_output.0`, `prev_sample.0`; metadata also `eta`, `model_folder` "
      f"(`{MODEL_DIR_NAME}`).")
    a("")
    ts1 = tensors_by_file["ddim50_attn.safetensors"]["timesteps"]
    a(f"Timesteps (leading spacing, step ratio 1000 // 50 = 20, steps_offset 0): {fmt_ts(ts1)}. "
      "t = 999 is never visited; the previous timestep of step t is t - 20, and at the last step "
      "(t = 0, prev = -20) `alpha_prod_t_prev` is `final_alpha_cumprod` = 1.0 (set_alpha_to_one), so "
      "the last step returns the clipped `pred_original_sample` itself.")
    a("")
    a(f"clip_sample matters a lot: the unclipped x0 prediction is outside [-1, 1] at "
      f"{d['ddim']['clip_steps']} of 50 steps ({g3(100 * d['ddim']['clip_frac_first'])}% of entries at "
      f"the first step, {g3(100 * d['ddim']['clip_frac_last'])}% at the last); with clip_sample=False "
      f"the final sample differs by a relative {g3(d['ddim']['noclip_rel'])} (max |sample| "
      f"{g3(d['ddim']['noclip_absmax'])} instead of {g3(d['ddim']['absmax'])}). "
      f"{g3(100 * d['ddim']['saturated'])}% of the final entries are exactly +-1.")
    a("")
    a("### 2. `ddpm20_attn.safetensors`")
    a("")
    a("`DDPMScheduler(" + ", ".join(f"{k}={v!r}" for k, v in DDPM_KW.items()) + ")` "
      "(timestep_spacing 'leading', steps_offset 0 by default), `set_timesteps(20)`, `attn` model, same "
      "`x_T` as case 1. Keys: `x_T`, `sample`, `timesteps` [20], `noise.<i>`, `model_output.0`, "
      "`prev_sample.0`; metadata also `noise_seed`, `noise_steps`.")
    a("")
    ts2 = tensors_by_file["ddpm20_attn.safetensors"]["timesteps"]
    a(f"Timesteps: {fmt_ts(ts2)}; the previous timestep of t is t - 50.")
    a("")
    a(f"Noise: the pre-generated tensors are the i-th draw, i = 0..19, of `torch.randn([2, 3, 8, 8])` "
      f"from `torch.Generator().manual_seed({DDPM_NOISE_SEED})` (one generator, drawn in order). "
      "`step` draws once per step with t > 0 and adds `sqrt(variance(t)) * noise` (fixed_small: the "
      "posterior variance, clamped to >= 1e-20); the last step (t = 0) draws nothing. `noise.<i>` is "
      f"stored only for the steps that draw: i = {noise_steps[0]}..{noise_steps[-1]} "
      f"(`noise_steps` metadata); there is no `noise.{len(ts2) - 1}`. A Haze run must use "
      "`noise.<i>` at step i.")
    a("")
    a(f"clip_sample: with clip_sample=False the final sample differs by a relative "
      f"{g3(d['ddpm']['noclip_rel'])} (max |sample| {g3(d['ddpm']['noclip_absmax'])} instead of "
      f"{g3(d['ddpm']['absmax'])}).")
    a("")
    a("### 3. `ddim20_cfg_class.safetensors`")
    a("")
    a("DDIM configured as in case 1, `set_timesteps(20)` (timesteps "
      f"{fmt_ts(tensors_by_file['ddim20_cfg_class.safetensors']['timesteps'])}), `eta=0.0`, "
      "`class_cond` model, classifier-free guidance. Keys: `x_T`, `sample`, `timesteps` [20], "
      "`class_labels` [2], `uncond_class_labels` [2], `eps_cond.0`, `eps_uncond.0`, `model_output.0`, "
      "`prev_sample.0`; metadata also `eta`, `guidance_scale`, `null_class_label`, `cfg_formula`, "
      "`cfg_batching`.")
    a("")
    a(f"- Conditional labels `{COND_LABELS}`; the null (\"unconditional\") class is the LAST embedding "
      f"index, `num_class_embeds - 1 = {NULL_CLASS}`, so the unconditional labels are "
      f"`{[NULL_CLASS] * len(COND_LABELS)}`.")
    a(f"- Guidance scale g = {GUIDANCE_SCALE}; `eps = eps_uncond + g * (eps_cond - eps_uncond)` in float32, "
      "in that order of operations.")
    a("- Batching: ONE UNet call per step of batch 4 on `cat([x, x])` with class_labels "
      f"`{COND_LABELS + [NULL_CLASS] * len(COND_LABELS)}` and the same scalar t; the output is split "
      "with `chunk(2)` into `eps_cond` (first half) and `eps_uncond` (second half). Two separate batch-2 "
      + ("calls give a bit-identical `sample`." if d["cfg"]["two_calls_equal"] else
         f"calls give a `sample` within a relative {g3(d['cfg']['two_calls_rel'])} (float32 rounding "
         "of a different batch size).") + " Either is fine for Haze.")
    a(f"- For scale: g = 1 (no guidance) gives a `sample` that differs by a relative "
      f"{g3(d['cfg']['g1_rel'])}; clip_sample=False gives one that differs by {g3(d['cfg']['noclip_rel'])}. "
      f"{g3(100 * d['cfg']['saturated'])}% of the final entries are exactly +-1.")
    a("")
    a("### 4. `dpmpp20_attn.safetensors`")
    a("")
    a("`DPMSolverMultistepScheduler(" + ", ".join(f"{k}={v!r}" for k, v in DPMPP_KW.items()) + ")` "
      "with the other options at their defaults (timestep_spacing 'linspace', solver_type 'midpoint', "
      "lower_order_final True, final_sigmas_type 'zero', thresholding False, use_karras_sigmas False), "
      "`set_timesteps(20)`, `attn` model, same `x_T` as case 1 (init_noise_sigma 1). Keys: `x_T`, "
      "`sample`, `timesteps` [20], `model_output.0`, `prev_sample.0`.")
    a("")
    ts4 = tensors_by_file["dpmpp20_attn.safetensors"]["timesteps"]
    a(f"Timesteps: {fmt_ts(ts4)} (`round(linspace(0, 999, 21))[::-1][:-1]`). Step 0 is first order "
      "(no history), steps 1..18 are second order (2M, midpoint), and the last step is first order "
      "because final_sigmas_type is 'zero' (it lands on sigma = 0, i.e. returns the x0 prediction). "
      "No clipping/thresholding, so the sample is not confined to [-1, 1] "
      f"(max |sample| {g3(d['dpmpp']['absmax'])}).")
    a("")
    a("## Sensitivity (float32 vs float64)")
    a("")
    a("Each loop was re-run with the UNet and x_T in float64 (scheduler tables stay float32, as in "
      "diffusers); relative difference of the final sample to the stored float32 one: "
      f"ddim50 {g3(d['ddim']['f64_rel'])}, ddpm20 {g3(d['ddpm']['f64_rel'])}, "
      f"cfg {g3(d['cfg']['f64_rel'])}, dpmpp20 {g3(d['dpmpp']['f64_rel'])}. These are far below the "
      f"{REL_TOL:g} tolerance, so float32 rounding differences between Haze and torch should not be "
      "amplified past it by the loops.")
    a("")
    a("## Determinism")
    a("")
    a("torch.set_num_threads(1), torch.use_deterministic_algorithms(True), fixed seeds. The `.safetensors` "
      "files are written by `make_tensor_fixtures.write_safetensors` (sorted tensor names, sorted "
      "metadata, header padded to 8 bytes) and read back with the safetensors library; the model folder "
      "is a byte copy plus `save_config`'s sorted JSON. Running the script twice gives identical bytes.")
    a("")
    return "\n".join(lines)


def _key_order(k):
    if "." in k:
        base, idx = k.rsplit(".", 1)
        if idx.isdigit():
            return (base, int(idx))
    return (k, -1)


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
    install_noise_patch()

    attn = load_unet(os.path.join(UNET_FIXTURES, "attn"))
    attn64 = load_unet(os.path.join(UNET_FIXTURES, "attn"), torch.float64)
    cls_unet = load_unet(os.path.join(UNET_FIXTURES, "class_cond"))
    cls_unet64 = load_unet(os.path.join(UNET_FIXTURES, "class_cond"), torch.float64)
    assert cls_unet.config.num_class_embeds == NULL_CLASS + 1

    x_T = seeded_randn(ATTN_X_T_SEED, (2, 3, 8, 8))
    diags = {}
    outputs = []
    with torch.no_grad():
        t, m, diags["ddim"] = case_ddim50(attn, attn64, x_T, args.out_dir)
        outputs.append(("ddim50_attn.safetensors", t, m))
        t, m, diags["ddpm"], noise_steps = case_ddpm20(attn, attn64, x_T)
        outputs.append(("ddpm20_attn.safetensors", t, m))
        t, m, diags["cfg"] = case_cfg(cls_unet, cls_unet64)
        outputs.append(("ddim20_cfg_class.safetensors", t, m))
        t, m, diags["dpmpp"] = case_dpmpp(attn, attn64, x_T)
        outputs.append(("dpmpp20_attn.safetensors", t, m))

    files = []
    metas = {}
    tensors_by_file = {}
    total = 0
    for fname, tensors, meta in outputs:
        path = os.path.join(args.out_dir, fname)
        write_safetensors(path, tensors, meta)
        check_roundtrip(path, tensors, meta)
        size = os.path.getsize(path)
        total += size
        files.append((fname, size))
        metas[fname] = meta
        tensors_by_file[fname] = tensors
        print(f"{fname} {size}B keys={sorted(tensors, key=_key_order)}")
    for f in sorted(os.listdir(os.path.join(args.out_dir, MODEL_DIR_NAME))):
        size = os.path.getsize(os.path.join(args.out_dir, MODEL_DIR_NAME, f))
        total += size
        files.append((f"{MODEL_DIR_NAME}/{f}", size))
    for k, v in diags.items():
        print(k, {kk: vv for kk, vv in v.items() if kk != "sigmas"})

    # The README lists its own size as part of the total; iterate to a fixed point.
    readme_size = 0
    for _ in range(5):
        text = readme(files, metas, tensors_by_file, diags, noise_steps, total + readme_size)
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
