#!/usr/bin/env python3
"""Generate full sampling-loop references (tiny UNet2DModel + diffusers scheduler) for Haze.

Writes into Tests/HazeDiffusionTests/Fixtures/sampling/ (CI has no Python, so the files are
committed; re-run this script only when a case is added or changed):

  ddim50_attn.safetensors              DDIM, 50 steps, eta 0, clip_sample, `attn` UNet
  ddim50_attn_noclip.safetensors       the same with clip_sample=False
  ddim50_attn_model/                   copy of the `attn` model folder + ddim50_attn's
                                       scheduler_config.json (scheduler.save_config)
  ddpm20_attn.safetensors              DDPM fixed_small + clip_sample, 20 steps, explicit noise
  ddim20_cfg_class.safetensors         DDIM, 20 steps, classifier-free guidance, `class_cond` UNet
  ddim20_cfg_class_noclip.safetensors  the same with clip_sample=False
  dpmpp20_attn.safetensors             DPM-Solver++ (2M), 20 steps, `attn` UNet
  README.md                            the conventions (written by this script; do not edit)

IMPORTANT: with clip_sample=True the DDIM eta-0 loops are chaotic for these random-weight UNets
(the float64 re-run of ddim50_attn differs from the float32 one by a relative 1.7 at the end;
ddim20_cfg_class by 7e-4), so those files also store early checkpoints `prev_sample.<k>` and
have clip_sample=False companions. The README's Sensitivity table (from the `f64_rel_error`
metadata) says which tensors can be matched at 1e-3.

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


def sample_loop(eps_fn, sched, x_T, n, eta=None, noise=None, checkpoints=()):
    """The pipeline loop. noise: per-step tensors (None = no draw expected at that step).
    Returns (final sample, timesteps, info); info has the per-step draw counts, the first
    step's model output and prev_sample.<k> for k in checkpoints."""
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
        if i in checkpoints:
            info[f"prev_sample.{i}"] = out.prev_sample
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

CASES = [
    # The four requested references. clip_sample=True makes the two DDIM eta-0 loops chaotic
    # with these random-weight UNets (see README "Sensitivity"), so they also store early
    # checkpoints, and each has a clip_sample=False companion whose final sample is robust.
    dict(name="ddim50_attn", model="attn", cls=DDIMScheduler, kw=DDIM_KW, n=50, eta=0.0,
         checkpoints=[0, 4, 9], pipeline=DDIMPipeline),
    dict(name="ddim50_attn_noclip", model="attn", cls=DDIMScheduler,
         kw=dict(DDIM_KW, clip_sample=False), n=50, eta=0.0, checkpoints=[0], pipeline=DDIMPipeline),
    dict(name="ddpm20_attn", model="attn", cls=DDPMScheduler, kw=DDPM_KW, n=20, eta=None,
         checkpoints=[0], pipeline=DDPMPipeline, noise_seed=DDPM_NOISE_SEED),
    dict(name="ddim20_cfg_class", model="class_cond", cls=DDIMScheduler, kw=DDIM_KW, n=20, eta=0.0,
         checkpoints=[0, 4, 9], cfg=True),
    dict(name="ddim20_cfg_class_noclip", model="class_cond", cls=DDIMScheduler,
         kw=dict(DDIM_KW, clip_sample=False), n=20, eta=0.0, checkpoints=[0], cfg=True),
    dict(name="dpmpp20_attn", model="attn", cls=DPMSolverMultistepScheduler, kw=DPMPP_KW, n=20,
         eta=None, checkpoints=[0]),
]
MODEL_FOLDER_CASE = "ddim50_attn"  # whose scheduler goes into ddim50_attn_model/scheduler_config.json

MODELS = {
    "attn": dict(rel=ATTN_REL, x_T_seed=ATTN_X_T_SEED, shape=(2, 3, 8, 8)),
    "class_cond": dict(rel=CLASS_REL, x_T_seed=CLASS_X_T_SEED, shape=(2, 1, 8, 8)),
}

ROBUST = 1e-4     # float64-vs-float32 difference at least 10x below the tolerance
MARGINAL = REL_TOL


def verdict(rel):
    return "robust" if rel <= ROBUST else ("marginal" if rel <= MARGINAL else "CHAOTIC")


def run_case(case, unets):
    n, eta = case["n"], case["eta"]
    minfo = MODELS[case["model"]]
    x_T = seeded_randn(minfo["x_T_seed"], minfo["shape"])
    unet, unet64 = unets[case["model"]]
    rec = {}
    if case.get("cfg"):
        eps_fn = cfg_eps_fn(unet, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE, record=rec)
        eps_fn64 = cfg_eps_fn(unet64, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE)
    else:
        eps_fn, eps_fn64 = unet_eps_fn(unet), unet_eps_fn(unet64)

    sched = case["cls"](**case["kw"])
    sched.set_timesteps(n)
    noise_all, noise = None, None
    if "noise_seed" in case:
        noise_all = seeded_randn(case["noise_seed"], minfo["shape"], n)
        noise = [noise_all[i] if int(t) > 0 else None for i, t in enumerate(sched.timesteps)]
    sample, ts, info = sample_loop(eps_fn, sched, x_T, n, eta=eta, noise=noise,
                                   checkpoints=case["checkpoints"])
    expected = [1 if nz is not None else 0 for nz in noise] if noise else [0] * n
    assert info["draws"] == expected, (case["name"], info["draws"], expected)
    noise_steps = [i for i, d in enumerate(info["draws"]) if d == 1]

    tensors = {"x_T": f32(x_T), "sample": f32(sample), "timesteps": f32(ts),
               "model_output.0": f32(info["model_output.0"])}
    for k in case["checkpoints"]:
        tensors[f"prev_sample.{k}"] = f32(info[f"prev_sample.{k}"])
    for i in noise_steps:
        tensors[f"noise.{i}"] = f32(noise_all[i])

    # Sensitivity: the same loop with the UNet and x_T in float64.
    s64, _, info64 = sample_loop(eps_fn64, case["cls"](**case["kw"]), x_T.double(), n, eta=eta,
                                 noise=noise, checkpoints=case["checkpoints"])
    sens = {"sample": rel_err(sample, s64)}
    for k in case["checkpoints"]:
        sens[f"prev_sample.{k}"] = rel_err(info[f"prev_sample.{k}"], info64[f"prev_sample.{k}"])

    diag = {"sens": sens, "absmax": sample.abs().max().item(),
            "saturated": (sample.abs() == 1).to(torch.float64).mean().item(),
            "timesteps": [int(t) for t in ts], "noise_steps": noise_steps}

    if case.get("pipeline") is not None:  # cross-check against the diffusers pipeline itself
        pipe = case["pipeline"](unet=unet, scheduler=case["cls"](**case["kw"]))
        pipe.set_progress_bar_config(disable=True)
        kw = {} if eta is None else {"eta": eta}
        FEED.load([noise_all[i] for i in noise_steps])
        img = pipe(batch_size=minfo["shape"][0], num_inference_steps=n, output_type="pt",
                   generator=torch.Generator().manual_seed(minfo["x_T_seed"]), **kw).images
        assert FEED.calls == len(noise_steps) and not FEED.queue, (case["name"], FEED.calls)
        assert torch.equal(img, (sample / 2 + 0.5).clamp(0, 1)), f"{case['name']}: pipeline disagrees"
        diag["pipeline_checked"] = True

    if case.get("cfg"):
        tensors["class_labels"] = torch.tensor(COND_LABELS, dtype=torch.float32)
        tensors["uncond_class_labels"] = torch.tensor([NULL_CLASS] * len(COND_LABELS), dtype=torch.float32)
        tensors["eps_cond.0"] = f32(rec["eps_cond.0"])
        tensors["eps_uncond.0"] = f32(rec["eps_uncond.0"])
        two, _, _ = sample_loop(cfg_eps_fn(unet, COND_LABELS, NULL_CLASS, GUIDANCE_SCALE, batched=False),
                                case["cls"](**case["kw"]), x_T, n, eta=eta)
        diag["two_calls_equal"] = torch.equal(two, sample)
        diag["two_calls_rel"] = rel_err(two, sample)
        g1, _, _ = sample_loop(cfg_eps_fn(unet, COND_LABELS, NULL_CLASS, 1.0),
                               case["cls"](**case["kw"]), x_T, n, eta=eta)
        diag["g1_rel"] = rel_err(g1, sample)

    if case["cls"] is DDIMScheduler and case["kw"]["clip_sample"]:
        fracs = ddim_x0_clip_stats(eps_fn, case["kw"], x_T, n)
        diag.update(clip_frac_first=fracs[0], clip_frac_last=fracs[-1],
                    clip_steps=sum(1 for f in fracs if f > 0))
    if case["cls"] is DDPMScheduler and case["kw"]["clip_sample"]:
        noclip, _, _ = sample_loop(eps_fn, case["cls"](**dict(case["kw"], clip_sample=False)), x_T, n,
                                   eta=eta, noise=noise)
        diag.update(noclip_rel=rel_err(sample, noclip), noclip_absmax=noclip.abs().max().item())

    meta = {
        "scheduler_class": type(sched).__name__,
        "scheduler_config": config_json(sched),
        "num_inference_steps": str(n),
        "init_noise_sigma": repr(float(sched.init_noise_sigma)),
        "model": minfo["rel"],
        "x_T_seed": str(minfo["x_T_seed"]),
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "f64_rel_error": json.dumps({k: float(g3(v)) for k, v in sens.items()}, sort_keys=True),
    }
    if eta is not None:
        meta["eta"] = repr(float(eta))
    if noise is not None:
        meta.update(noise_seed=str(case["noise_seed"]), noise_steps=",".join(map(str, noise_steps)))
    if case.get("cfg"):
        meta.update(guidance_scale=repr(GUIDANCE_SCALE), null_class_label=str(NULL_CLASS),
                    cfg_formula="eps_uncond + guidance_scale * (eps_cond - eps_uncond)",
                    cfg_batching="one UNet call per step on cat([x, x]) with class_labels "
                                 f"{COND_LABELS + [NULL_CLASS] * len(COND_LABELS)}; "
                                 "chunk(2): first half = cond, second half = uncond")
    if case["name"] == MODEL_FOLDER_CASE:
        meta["model_folder"] = MODEL_DIR_NAME
    return tensors, meta, diag, sched, x_T


def write_model_folder(out_dir, case, sched, x_T, sample):
    """Byte copy of the source model folder + scheduler.save_config; reload and reproduce."""
    mdir = os.path.join(out_dir, MODEL_DIR_NAME)
    if os.path.isdir(mdir):
        shutil.rmtree(mdir)
    os.makedirs(mdir)
    for f in MODEL_FILES:
        shutil.copyfile(os.path.join(REPO, MODELS[case["model"]]["rel"], f), os.path.join(mdir, f))
    sched.save_config(mdir)
    assert sorted(os.listdir(mdir)) == sorted(MODEL_FILES + ["scheduler_config.json"]), os.listdir(mdir)
    sched2 = case["cls"].from_pretrained(mdir)
    assert config_json(sched2) == config_json(sched), "scheduler_config.json does not round-trip"
    unet2 = load_unet(mdir)
    s2, _, _ = sample_loop(unet_eps_fn(unet2), sched2, x_T, case["n"], eta=case["eta"])
    assert torch.equal(s2, sample), "the model folder does not reproduce the sample"


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------

def _key_order(k):
    if "." in k:
        base, idx = k.rsplit(".", 1)
        if idx.isdigit():
            return (base, int(idx))
    return (k, -1)


def fmt_ts(ts):
    return ", ".join(str(t) for t in ts)


def kwargs_str(kw):
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())


def readme(files, keys_by_file, diags, total):
    L = []
    a = L.append
    d = diags
    a("# Sampling-loop fixtures (tiny UNet2DModel + diffusers scheduler)")
    a("")
    a(f"Generated by `scripts/make_sampling_fixtures.py` with diffusers {diffusers.__version__} and torch "
      f"{torch.__version__.split('+')[0]} (CPU, one thread, deterministic algorithms). Do not edit: this "
      "README is written by the script. Each file is the result of a full diffusers sampling loop that "
      "`haze sample` should reproduce with relative error `max|haze - ref| / max|ref|` <= "
      f"{REL_TOL:g} -- but read **Sensitivity** first: with clip_sample=True the DDIM eta-0 loops are "
      "chaotic for these random-weight UNets, and their final samples cannot be matched by any "
      "float32 implementation that is not bit-identical to torch.")
    a("")
    a("All tensors are float32; integer quantities (timesteps, class labels) are stored as float32 holding "
      "integers. Every file's `__metadata__` has `scheduler_class`, `scheduler_config` "
      "(`json.dumps(dict(scheduler.config), sort_keys=True)` without diffusers' internal "
      "`_use_default_values`), `num_inference_steps`, `init_noise_sigma`, `model` (source model folder), "
      "`x_T_seed`, `diffusers_version`, `torch_version`, `f64_rel_error` (JSON, see Sensitivity), and "
      "`eta` for DDIM; case-specific keys are listed below.")
    a("")
    a("## Files")
    a("")
    a("| file | bytes | tensors |")
    a("|---|---|---|")
    for fname, size in files:
        keys = keys_by_file.get(fname)
        ks = "" if keys is None else ", ".join(f"`{k}`" for k in sorted(keys, key=_key_order))
        if keys is not None and any(k.startswith("noise.") for k in keys):
            nk = sorted((k for k in keys if k.startswith("noise.")), key=_key_order)
            rest = [k for k in sorted(keys, key=_key_order) if not k.startswith("noise.")]
            ks = ", ".join(f"`{k}`" for k in rest) + f", `{nk[0]}` .. `{nk[-1]}`"
        a(f"| `{fname}` | {size} | {ks} |")
    a(f"| total | {total} | |")
    a("")
    a("Common tensors: `x_T` (initial sample), `sample` (final sample after the last step, raw, not "
      "`(x / 2 + 0.5).clamp(0, 1)`), `timesteps` (`scheduler.timesteps` after `set_timesteps(N)`), "
      "`model_output.0` (the eps passed to the first `step`; the guided eps for CFG), `prev_sample.<k>` "
      "(the sample after step k, k = 0-based step index, i.e. after k + 1 steps).")
    a("")
    a("## Sensitivity (read this before writing a test)")
    a("")
    a("Every loop was re-run with the UNet and `x_T` in float64 (scheduler tables stay float32, as in "
      "diffusers). The relative difference between that run and the stored float32 one estimates how far "
      "float32 rounding differences (which any Haze UNet will have: other summation orders in conv, "
      "attention, GroupNorm) are amplified by the loop. It is stored per tensor in the `f64_rel_error` "
      f"metadata. Verdict: robust <= {ROBUST:g} (10x margin), marginal <= {MARGINAL:g}, CHAOTIC above "
      "(the reference is not reproducible at the tolerance).")
    a("")
    a("| file | tensor | float64 vs float32 | verdict |")
    a("|---|---|---|---|")
    for case in CASES:
        sens = d[case["name"]]["sens"]
        for k in sorted(sens, key=lambda k: (k == "sample", _key_order(k))):
            a(f"| `{case['name']}.safetensors` | `{k}` | {g3(sens[k])} | {verdict(sens[k])} |")
    a("")
    a("Why: with clip_sample=True the x0 prediction of these untrained UNets is far outside [-1, 1] at "
      "almost every step, so DDIM's `prev = sqrt(abar_prev) * clip(x0) + sqrt(1 - abar_prev) * eps` "
      "keeps almost nothing of the current sample except through `eps(x)`: the loop iterates the "
      "random network x -> eps(x), whose gain is > 1, and a 1e-7 perturbation grows by ~1.4x per step "
      "(50 steps: ~1e-7 * 1.4^50 >> 1). Without clipping, DDIM's update is close to the identity plus a "
      "small eps correction and is stable; DDPM keeps `current_sample_coeff * x` plus fresh noise and is "
      "stable even with clipping; DPM-Solver++ does not clip. Hence the `_noclip` companions (the same "
      "loops with clip_sample=False) and the early `prev_sample.<k>` checkpoints in the clipped files.")
    a("")
    folder_cls = next(c["cls"].__name__ for c in CASES if c["name"] == MODEL_FOLDER_CASE)
    a("## Models")
    a("")
    a(f"- `attn`: `{ATTN_REL}/` (3 channels, 8x8, unconditional).")
    a(f"- `class_cond`: `{CLASS_REL}/` (1 channel, 8x8, `num_class_embeds` 10).")
    a("")
    a("Both are loaded with `UNet2DModel.from_pretrained(folder)` in float32, `eval()` mode, no grad. "
      f"`{MODEL_DIR_NAME}/` is a byte-for-byte copy of the `attn` folder (`config.json`, "
      "`diffusion_pytorch_model.safetensors`) plus the `scheduler_config.json` written by "
      f"`scheduler.save_config` for `{MODEL_FOLDER_CASE}` (flat layout, no `model_index.json`). The "
      f"script reloads it with `UNet2DModel.from_pretrained` and `{folder_cls}.from_pretrained`, checks the config round-trips and that the loop reproduces "
      f"`{MODEL_FOLDER_CASE}.safetensors`'s `sample` bit for bit. Note: it carries clip_sample=true, so "
      "its 50-step final sample is CHAOTIC (see above); a loader test should check the parsed config "
      "and the early checkpoints.")
    a("")
    a("## Loop (all cases)")
    a("")
    a("Exactly diffusers' `DDIMPipeline` / `DDPMPipeline` loop:")
    a("")
    a("```")
    a("scheduler.set_timesteps(N)")
    a("x = x_T * scheduler.init_noise_sigma      # init_noise_sigma = 1.0 in every case")
    a("for t in scheduler.timesteps:             # t: 0-dim int64 tensor, passed as is to the UNet")
    a("    eps = unet(scheduler.scale_model_input(x, t), t).sample   # scale_model_input = identity here")
    a("    x = scheduler.step(eps, t, x[, eta=0.0]).prev_sample      # eta only for DDIM")
    a("sample = x")
    a("```")
    a("")
    checked = [c["name"] for c in CASES if d[c["name"]].get("pipeline_checked")]
    a("The script checks " + ", ".join(f"`{n}`" for n in checked) + " against `DDIMPipeline` / "
      "`DDPMPipeline` themselves (`output_type=\"pt\"`, generator `torch.Generator().manual_seed(x_T_seed)`, "
      "same noise queue): the pipeline output equals `(sample / 2 + 0.5).clamp(0, 1)` bit for bit.")
    a("")
    a("**Initial sample.** `x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed))`, "
      f"which is what the pipelines draw with that generator: seed {ATTN_X_T_SEED}, shape [2, 3, 8, 8] for "
      "every `attn` case (all share the same `x_T`); seed "
      f"{CLASS_X_T_SEED}, shape [2, 1, 8, 8] for the class-conditional cases.")
    a("")
    a("**Noise.** No RNG is used inside the schedulers: diffusers' `randn_tensor` is replaced (in "
      "`diffusers.utils.torch_utils` and in the `scheduling_ddpm`, `scheduling_ddim` and "
      "`scheduling_dpmsolver_multistep` module namespaces) by a queue of pre-generated tensors, and the "
      "script asserts the number of draws at every step. Only DDPM draws; DDIM with eta 0 and "
      "DPM-Solver++ never do.")
    a("")
    a("## Cases")
    a("")
    c = d["ddim50_attn"]
    a("### `ddim50_attn.safetensors` (and `ddim50_attn_noclip.safetensors`)")
    a("")
    a(f"`DDIMScheduler({kwargs_str(DDIM_KW)})`, `set_timesteps(50)`, `eta=0.0`, `attn` model. "
      f"Metadata also `model_folder` = `{MODEL_DIR_NAME}`. The `_noclip` file is identical except "
      "clip_sample=False (its config in its metadata).")
    a("")
    a(f"Timesteps (leading spacing: step ratio 1000 // 50 = 20, `arange(50) * 20` reversed, steps_offset "
      f"0): {fmt_ts(c['timesteps'])}. t = 999 is never visited. The previous timestep of t is t - 20; at "
      "the last step (t = 0, prev = -20) `alpha_prod_t_prev = final_alpha_cumprod = 1.0` "
      "(set_alpha_to_one), so the last step returns the (clipped) x0 prediction itself.")
    a("")
    a(f"clip_sample matters: the unclipped x0 prediction has entries outside [-1, 1] at {c['clip_steps']} "
      f"of 50 steps ({g3(100 * c['clip_frac_first'])}% of entries at the first step, "
      f"{g3(100 * c['clip_frac_last'])}% at the last). The clipped final sample lies in [-1, 1] "
      f"({g3(100 * c['saturated'])}% of entries exactly +-1); the unclipped one reaches "
      f"|x| = {g3(d['ddim50_attn_noclip']['absmax'])}.")
    a("")
    c = d["ddpm20_attn"]
    a("### `ddpm20_attn.safetensors`")
    a("")
    a(f"`DDPMScheduler({kwargs_str(DDPM_KW)})` (timestep_spacing 'leading', steps_offset 0, "
      "clip_sample_range 1.0 by default), `set_timesteps(20)`, `attn` model, same `x_T` as "
      "`ddim50_attn`. Metadata also `noise_seed`, `noise_steps`.")
    a("")
    a(f"Timesteps: {fmt_ts(c['timesteps'])}; the previous timestep of t is t - 50 (the last step, "
      "t = 0, uses alpha_prod_t_prev = 1).")
    a("")
    ns = c["noise_steps"]
    a("Noise: the pre-generated tensors are the i-th draw, i = 0..19, of `torch.randn([2, 3, 8, 8])` "
      f"from ONE generator `torch.Generator().manual_seed({DDPM_NOISE_SEED})`, drawn in order. `step` "
      "draws exactly once per step with t > 0 (asserted) and adds `sqrt(variance(t)) * noise` "
      "(fixed_small: the posterior variance `(1 - abar_prev) / (1 - abar_t) * beta_t`, clamped to "
      ">= 1e-20); the last step (t = 0) draws nothing. `noise.<i>` is stored only for the steps that "
      f"draw, i = {ns[0]}..{ns[-1]} (also listed in `noise_steps`); there is no "
      f"`noise.{len(c['timesteps']) - 1}`. A Haze run must add `noise.<i>` at step i.")
    a("")
    a(f"clip_sample matters here too: with clip_sample=False the final sample differs by a relative "
      f"{g3(c['noclip_rel'])} (|x| up to {g3(c['noclip_absmax'])}); the clipped final sample is "
      f"clip(x0) of the last step ({g3(100 * c['saturated'])}% of entries exactly +-1).")
    a("")
    c = d["ddim20_cfg_class"]
    a("### `ddim20_cfg_class.safetensors` (and `ddim20_cfg_class_noclip.safetensors`)")
    a("")
    a(f"DDIM configured as in `ddim50_attn` (the `_noclip` file: clip_sample=False), `set_timesteps(20)` "
      f"(timesteps {fmt_ts(c['timesteps'])}), `eta=0.0`, `class_cond` model, classifier-free guidance. "
      "Extra tensors: `class_labels` [2], `uncond_class_labels` [2], `eps_cond.0`, `eps_uncond.0` (first "
      "step, before guidance). Metadata also `guidance_scale`, `null_class_label`, `cfg_formula`, "
      "`cfg_batching`.")
    a("")
    a(f"- Conditional labels `{COND_LABELS}`; the null (\"unconditional\") class is the LAST embedding "
      f"index, `num_class_embeds - 1 = {NULL_CLASS}`, so the unconditional labels are "
      f"`{[NULL_CLASS] * len(COND_LABELS)}`.")
    a(f"- Guidance scale g = {GUIDANCE_SCALE}: `eps = eps_uncond + g * (eps_cond - eps_uncond)` in "
      "float32, in that order of operations.")
    a("- Batching: ONE UNet call per step, batch 4, on `cat([x, x])` with class_labels "
      f"`{COND_LABELS + [NULL_CLASS] * len(COND_LABELS)}` and the same scalar t; the output is split with "
      "`chunk(2)` into `eps_cond` (first half) and `eps_uncond` (second half). Two separate batch-2 calls "
      + ("give a bit-identical `sample` here, so either is fine." if c["two_calls_equal"] else
         f"give a `sample` within a relative {g3(c['two_calls_rel'])} of it."))
    a(f"- Guidance matters: g = 1 (plain conditional sampling) gives a final sample that differs by a "
      f"relative {g3(c['g1_rel'])}.")
    a("")
    c = d["dpmpp20_attn"]
    a("### `dpmpp20_attn.safetensors`")
    a("")
    a(f"`DPMSolverMultistepScheduler({kwargs_str(DPMPP_KW)})`, other options at their defaults "
      "(timestep_spacing 'linspace', solver_type 'midpoint', lower_order_final True, final_sigmas_type "
      "'zero', thresholding False, use_karras_sigmas False, lambda_min_clipped -inf), "
      "`set_timesteps(20)`, `attn` model, same `x_T` as `ddim50_attn` (init_noise_sigma 1).")
    a("")
    a(f"Timesteps: {fmt_ts(c['timesteps'])} (`round(linspace(0, 999, 21))[::-1][:-1]`). Step 0 is first "
      "order (no history), steps 1..18 are second order (DPM-Solver++ 2M, midpoint), and the last step "
      "is first order because final_sigmas_type is 'zero' (it steps to sigma = 0, i.e. returns the x0 "
      "prediction). No clipping or thresholding, so the sample is not confined to [-1, 1] "
      f"(max |sample| {g3(c['absmax'])}). Note the scheduler config contains "
      "`\"lambda_min_clipped\": -Infinity`, which strict JSON parsers reject.")
    a("")
    a("## Determinism")
    a("")
    a("torch.set_num_threads(1), torch.use_deterministic_algorithms(True), fixed seeds. The "
      "`.safetensors` files are written by `make_tensor_fixtures.write_safetensors` (sorted tensor "
      "names, sorted metadata, header padded to 8 bytes) and read back with the safetensors library; "
      "the model folder is a byte copy plus `save_config`'s sorted JSON. Two runs give identical bytes.")
    a("")
    return "\n".join(L)


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

    unets = {name: (load_unet(os.path.join(REPO, m["rel"])),
                    load_unet(os.path.join(REPO, m["rel"]), torch.float64))
             for name, m in MODELS.items()}
    assert unets["class_cond"][0].config.num_class_embeds == NULL_CLASS + 1

    files, keys_by_file, diags = [], {}, {}
    total = 0
    with torch.no_grad():
        for case in CASES:
            tensors, meta, diag, sched, x_T = run_case(case, unets)
            diags[case["name"]] = diag
            fname = case["name"] + ".safetensors"
            path = os.path.join(args.out_dir, fname)
            write_safetensors(path, tensors, meta)
            check_roundtrip(path, tensors, meta)
            size = os.path.getsize(path)
            total += size
            files.append((fname, size))
            keys_by_file[fname] = list(tensors)
            print(f"{fname} {size}B keys={sorted(tensors, key=_key_order)}")
            print("   ", {k: v for k, v in diag.items() if k not in ("timesteps",)})
            if case["name"] == MODEL_FOLDER_CASE:
                write_model_folder(args.out_dir, case, sched, x_T, tensors["sample"])
    mdir = os.path.join(args.out_dir, MODEL_DIR_NAME)
    for f in sorted(os.listdir(mdir)):
        size = os.path.getsize(os.path.join(mdir, f))
        total += size
        files.append((f"{MODEL_DIR_NAME}/{f}", size))

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
