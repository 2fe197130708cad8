#!/usr/bin/env python3
"""Generate golden values from diffusers' noise schedulers for the HazeDiffusion Swift tests.

Writes into Tests/HazeDiffusionTests/Fixtures/schedulers/ (CI has no Python, so the files are
committed; re-run this script only when a case is added or changed):

  schedules.safetensors       betas / alphas_cumprod of 1000-step training schedules
  add_noise.safetensors       DDPMScheduler.add_noise and get_velocity
  ddpm_posterior.safetensors  DDPM posterior variance and posterior-mean coefficients
  <case>.safetensors          one sampling trajectory per scheduler configuration
  README.md                   the conventions (written by this script; do not edit by hand)

Cases: DDPM (fixed_small/large, clipping, thresholding, T=50), DDIM (eta 0/1, leading/trailing/
linspace, epsilon/v/sample), DPM-Solver++ 2M (linspace, Karras+v, exponential sigmas, and the
SDE variant sde-dpmsolver++ which consumes noise), Euler (linspace, N=20, trailing+v, Karras,
exponential sigmas), EulerAncestral, Heun (linspace; Karras+v: N steps call the model 2N-1
times, `timesteps`/`sigmas` are diffusers' interleaved arrays and every index counts model
calls) and UniPC (bh2 predictor-corrector, order 2; linspace and Karras+v; the files also hold
the data predictions x0_pred.<i> and the corrected samples corrected_sample.<i>).

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_scheduler_fixtures.py
    $HOME/haze-ref-venv/bin/python scripts/make_scheduler_fixtures.py --out-dir /tmp/sched
    $HOME/haze-ref-venv/bin/python scripts/make_scheduler_fixtures.py --keep-existing

--keep-existing leaves .safetensors files that already exist untouched (after checking them
against the fresh values to KEEP_RTOL) and writes only missing ones plus the README: the float32
bits depend on the CPU (torch's vectorised sqrt/sin are not correctly rounded, differently on
different processors), so a full regeneration on another machine rewrites every file by ulps.

The README.md written next to the fixtures documents every convention the Swift side needs
(stand-in model, how x_T is scaled, which noise tensor is consumed at which step, which keys
each file holds). Summary:

- Stand-in model, float32 elementwise: model_output(x, t) = 0.5*sin(x) + 0.1*x*cos(t/300),
  t = the scheduler's timestep value as float32, x = scheduler.scale_model_input(sample, t);
  one model call and one step() per entry of scheduler.timesteps (2N-1 for Heun).
- x_T = torch.randn([2,3,4,4], generator seeded 0) * scheduler.init_noise_sigma.
- Scheduler noise is not drawn from an RNG: diffusers' randn_tensor is monkeypatched (in
  diffusers.utils.torch_utils and in every scheduler module that imported it) to return the
  pre-generated tensor `noise.<i>` during step i; the number of calls per step is asserted.
  Modules that never draw noise (Heun, UniPC) are listed in NOISE_FREE_MODULES and must not
  import randn_tensor; torch.randn/randn_like raise during every step.

Determinism: torch.set_num_threads(1), fixed seeds, files written by
make_tensor_fixtures.write_safetensors (sorted tensor names, sorted metadata, header padded
to 8 bytes) and read back with the safetensors library. The scheduler config is stored as
json.dumps(config, sort_keys=True) without diffusers' internal `_use_default_values` list
(its order comes from a Python set and changes from run to run).
"""
import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from fractions import Fraction

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network

import numpy as np
import torch
import diffusers
import diffusers.utils.torch_utils as diffusers_torch_utils
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers import (
    scheduling_ddim,
    scheduling_ddpm,
    scheduling_dpmsolver_multistep,
    scheduling_euler_ancestral_discrete,
    scheduling_euler_discrete,
    scheduling_heun_discrete,
    scheduling_unipc_multistep,
)
from diffusers.utils import logging as diffusers_logging

diffusers_logging.set_verbosity_error()

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import check_roundtrip, write_safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeDiffusionTests", "Fixtures", "schedulers")
MAX_TOTAL_BYTES = 1_500_000

SHAPE = (2, 3, 4, 4)
X_T_SEED = 0
NOISE_SEED = 1
ADD_NOISE_X0_SEED = 2
ADD_NOISE_NOISE_SEED = 3
POSTERIOR_SEED = 4
MODEL_FORMULA = "model_output(x, t) = 0.5*sin(x) + 0.1*x*cos(t/300)  (float32, elementwise)"

# Modules whose namespace holds diffusers' randn_tensor (patched during every step).
NOISE_PATCH_MODULES = [
    diffusers_torch_utils,
    scheduling_ddpm,
    scheduling_ddim,
    scheduling_dpmsolver_multistep,
    scheduling_euler_discrete,
    scheduling_euler_ancestral_discrete,
]
# Scheduler modules that never draw noise (no randn_tensor import); asserted in patched_randn,
# and torch.randn / torch.randn_like are made to raise during every step anyway.
NOISE_FREE_MODULES = [
    scheduling_heun_discrete,
    scheduling_unipc_multistep,
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def config_json(sched):
    cfg = {k: v for k, v in dict(sched.config).items() if k != "_use_default_values"}
    return json.dumps(cfg, sort_keys=True)


def stand_in_model(x, t):
    """0.5*sin(x) + 0.1*x*cos(t/300) on float32; t is converted to a float32 scalar first."""
    assert x.dtype == torch.float32
    t32 = torch.as_tensor(t).detach().to(torch.float32).reshape(())
    c = torch.cos(t32 / 300.0)  # float32 scalar
    return 0.5 * torch.sin(x) + (0.1 * x) * c


def seeded_randn(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32)


class NoiseFeed:
    """Replacement for diffusers' randn_tensor that hands out one pre-generated tensor per step."""

    def __init__(self):
        self.current = None
        self.calls = 0

    def arm(self, noise):
        self.current = noise
        self.calls = 0

    def disarm(self):
        calls, self.current, self.calls = self.calls, None, 0
        return calls

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        if self.current is None:
            raise AssertionError("randn_tensor called outside a scheduler step")
        assert generator is None, "fixtures never pass a generator"
        assert tuple(shape) == tuple(self.current.shape), (shape, self.current.shape)
        assert dtype in (None, torch.float32), dtype
        self.calls += 1
        return self.current.clone()


FEED = NoiseFeed()


@contextmanager
def patched_randn():
    saved = []
    for mod in NOISE_PATCH_MODULES:
        if hasattr(mod, "randn_tensor"):
            saved.append((mod, mod.randn_tensor))
            mod.randn_tensor = FEED
    assert len(saved) == len(NOISE_PATCH_MODULES), "a scheduler module no longer imports randn_tensor"
    for mod in NOISE_FREE_MODULES:
        assert not hasattr(mod, "randn_tensor"), f"{mod.__name__} now imports randn_tensor: patch it"
    # Any other RNG use inside a step would bypass the feed: make it fail loudly.
    saved_torch = (torch.randn, torch.randn_like)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.randn called inside a scheduler step (not via randn_tensor)")

    torch.randn = torch.randn_like = forbidden
    try:
        yield
    finally:
        torch.randn, torch.randn_like = saved_torch
        for mod, fn in saved:
            mod.randn_tensor = fn


def ulp_diff(a, b):
    """Max distance in float32 ulps between two float32 arrays of the same sign pattern."""
    ai = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    bi = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
    return int(np.abs(ai - bi).max())


# ---------------------------------------------------------------------------
# Recipes: how each float32 schedule is reproduced bit for bit outside PyTorch
# ---------------------------------------------------------------------------

def fma_f32(a, b, c):
    """Correctly rounded float32 fma(a, b, c) (ties to even)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    r = np.float32(float(exact))
    best = None
    for cand in (np.nextafter(r, np.float32(-np.inf)), r, np.nextafter(r, np.float32(np.inf))):
        err = abs(Fraction(float(cand)) - exact)
        odd = int(np.array(cand, np.float32).view(np.int32)) & 1
        key = (err, odd)
        if best is None or key < best[0]:
            best = (key, cand)
    return best[1]


def linspace_f32_recipe(start, end, n):
    """torch.linspace(start, end, n, dtype=float32) on CPU: start/end rounded to float32,
    step = (end - start) / (n - 1) in float32, then i < n/2: fma(step, i, start),
    else fma(-step, n - 1 - i, end)."""
    s, e = np.float32(start), np.float32(end)
    step = np.float32(np.float32(e - s) / np.float32(n - 1))
    half = n // 2
    out = np.empty(n, np.float32)
    for i in range(n):
        if i < half:
            out[i] = fma_f32(step, np.float32(i), s)
        else:
            out[i] = fma_f32(-step, np.float32(n - 1 - i), e)
    return out


def cumprod_recipe(betas32):
    """torch.cumprod on CPU float32 accumulates in float64: alphas = 1 - betas (float32),
    cumulative product in float64, each partial product rounded to float32."""
    alphas = (np.float32(1.0) - betas32).astype(np.float32)
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32)


def cos_betas_recipe(n):
    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)],
                    dtype=np.float64).astype(np.float32)


# ---------------------------------------------------------------------------
# 1. schedules.safetensors
# ---------------------------------------------------------------------------

SCHEDULES = [
    # name, class, kwargs, description
    ("linear", DDPMScheduler, dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
     "DDPMScheduler(beta_schedule='linear', beta_start=1e-4, beta_end=0.02)"),
    ("scaled_linear", DDPMScheduler,
     dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
     "DDPMScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)"),
    ("squaredcos_cap_v2", DDPMScheduler, dict(beta_schedule="squaredcos_cap_v2"),
     "DDPMScheduler(beta_schedule='squaredcos_cap_v2')"),
    ("sigmoid", DDPMScheduler, dict(beta_schedule="sigmoid", beta_start=1e-4, beta_end=0.02),
     "DDPMScheduler(beta_schedule='sigmoid', beta_start=1e-4, beta_end=0.02)"),
    ("linear_zero_snr", DDIMScheduler,
     dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, rescale_betas_zero_snr=True),
     "DDIMScheduler(beta_schedule='linear', beta_start=1e-4, beta_end=0.02, "
     "rescale_betas_zero_snr=True)"),
    ("trained_betas", DDPMScheduler,
     dict(trained_betas=np.linspace(1e-4, 0.02, 1000).tolist()),
     "DDPMScheduler(trained_betas=np.linspace(1e-4, 0.02, 1000).tolist()) "
     "(float64 values, converted by torch.tensor(..., dtype=float32))"),
]


def make_schedules():
    tensors, meta, facts = {}, {}, {}
    scheds = {}
    for name, cls, kw, desc in SCHEDULES:
        s = cls(num_train_timesteps=1000, **kw)
        scheds[name] = s
        assert s.betas.dtype == torch.float32 and s.alphas_cumprod.dtype == torch.float32
        tensors[name + ".betas"] = f32(s.betas)
        tensors[name + ".alphas_cumprod"] = f32(s.alphas_cumprod)
        meta[name] = desc

    # Same schedule from the other scheduler classes must be bit-identical.
    for name in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        kw = SCHEDULES[[n for n, *_ in SCHEDULES].index(name)][2]
        for cls in (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                    EulerAncestralDiscreteScheduler, HeunDiscreteScheduler,
                    UniPCMultistepScheduler):
            o = cls(num_train_timesteps=1000, **kw)
            assert torch.equal(o.betas, scheds[name].betas), (name, cls)
            assert torch.equal(o.alphas_cumprod, scheds[name].alphas_cumprod), (name, cls)
    z_ddpm = DDPMScheduler(rescale_betas_zero_snr=True)
    assert torch.equal(z_ddpm.alphas_cumprod, scheds["linear_zero_snr"].alphas_cumprod)
    z_euler = EulerDiscreteScheduler(rescale_betas_zero_snr=True)
    z_dpm = DPMSolverMultistepScheduler(rescale_betas_zero_snr=True)
    z_unipc = UniPCMultistepScheduler(rescale_betas_zero_snr=True)
    zl = scheds["linear_zero_snr"].alphas_cumprod
    for o in (z_euler, z_dpm, z_unipc):
        assert torch.equal(o.alphas_cumprod[:-1], zl[:-1]) and o.alphas_cumprod[-1].item() == 2.0**-24
    facts["zero_snr_last"] = (zl[-1].item(), scheds["linear_zero_snr"].betas[-1].item())
    for cls in (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler):
        try:
            cls(beta_schedule="sigmoid")
            raise AssertionError(f"{cls.__name__} now supports sigmoid; update the README")
        except NotImplementedError:
            pass

    # Bit-exact recipes (documented in the README).
    lin = linspace_f32_recipe(1e-4, 0.02, 1000)
    assert np.array_equal(lin, scheds["linear"].betas.numpy()), "linear recipe"
    sq = linspace_f32_recipe(0.00085 ** 0.5, 0.012 ** 0.5, 1000)
    assert np.array_equal((sq * sq).astype(np.float32), scheds["scaled_linear"].betas.numpy())
    assert np.array_equal(cos_betas_recipe(1000), scheds["squaredcos_cap_v2"].betas.numpy())
    for name in ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "trained_betas"):
        s = scheds[name]
        assert np.array_equal(cumprod_recipe(s.betas.numpy()), s.alphas_cumprod.numpy()), name
        seq = np.empty(1000, np.float32)
        p = np.float32(1.0)
        for i, a in enumerate((np.float32(1.0) - s.betas.numpy()).astype(np.float32)):
            p = np.float32(p * a)
            seq[i] = p
        facts.setdefault("seq_f32_cumprod_ulps", {})[name] = ulp_diff(seq, s.alphas_cumprod.numpy())
    x = linspace_f32_recipe(-6, 6, 1000)
    assert np.array_equal(x, torch.linspace(-6, 6, 1000).numpy())
    sig_torch = torch.sigmoid(torch.from_numpy(x)).numpy()
    # scalar part: Python scalars become float32 constants, separate (unfused) mul and add
    sig_scale = lambda sg: (sg * np.float32(0.02 - 1e-4) + np.float32(1e-4)).astype(np.float32)
    assert np.array_equal(sig_scale(sig_torch), scheds["sigmoid"].betas.numpy())
    sig64 = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    facts["sigmoid_recipe_ulps"] = ulp_diff(sig_scale(sig64), scheds["sigmoid"].betas.numpy())
    facts["sigmoid_only_ulps"] = ulp_diff(sig64, sig_torch)
    tb = scheds["trained_betas"].betas.numpy()
    facts["trained_vs_linear"] = (int((tb != scheds["linear"].betas.numpy()).sum()),
                                  ulp_diff(tb, scheds["linear"].betas.numpy()))
    facts["naive_linspace_ulps"] = ulp_diff(
        (np.float32(1e-4) + np.arange(1000, dtype=np.float32) *
         np.float32((np.float32(0.02) - np.float32(1e-4)) / np.float32(999))).astype(np.float32),
        scheds["linear"].betas.numpy())
    return tensors, meta, facts


# ---------------------------------------------------------------------------
# 2. Trajectories
# ---------------------------------------------------------------------------

def noise_list(n):
    g = torch.Generator().manual_seed(NOISE_SEED)
    return [torch.randn(SHAPE, generator=g, dtype=torch.float32) for _ in range(n)]


# Multistep solvers that return no pred_original_sample: their files hold x0_pred.<i> instead.
X0_PRED_CLASSES = (DPMSolverMultistepScheduler, UniPCMultistepScheduler)
SIGMA_CLASSES = (DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                 EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler)


def run_trajectory(case):
    name, cls, kw, steps, eta = case["name"], case["cls"], case["kwargs"], case["steps"], case["eta"]
    assert sys.modules[cls.__module__] in NOISE_PATCH_MODULES + NOISE_FREE_MODULES, cls
    sched = cls(**kw)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps.clone()
    n = len(timesteps)  # number of model calls (2N-1 for Heun)
    assert n == case.get("expect_len", steps), (name, n)

    x_unit = seeded_randn(X_T_SEED, SHAPE)
    init_sigma = sched.init_noise_sigma
    x = x_unit * init_sigma
    assert x.dtype == torch.float32
    noises = noise_list(n)

    tensors = {"x_T_unit": x_unit, "x_T": f32(x), "timesteps": f32(timesteps)}
    has_sigmas = hasattr(sched, "sigmas") and cls in SIGMA_CLASSES
    if has_sigmas:
        tensors["sigmas"] = f32(sched.sigmas)
    prev_ts = []
    noise_steps = []
    thresh_s = []
    heun_states = []
    with patched_randn():
        for i, t in enumerate(timesteps):
            if cls is DDPMScheduler:
                prev_ts.append(float(sched.previous_timestep(t)))
            elif cls is DDIMScheduler:
                prev_ts.append(float(t - sched.config.num_train_timesteps // sched.num_inference_steps))
            model_in = sched.scale_model_input(x, t)
            mo = stand_in_model(model_in, t)
            step_kw = {}
            if cls is DDIMScheduler:
                step_kw["eta"] = eta
            if getattr(sched.config, "thresholding", False) and cls is DDPMScheduler:
                thresh_s.append(threshold_s(sched, x, mo, t))
            if cls is HeunDiscreteScheduler:
                heun_states.append(1 if sched.state_in_first_order else 2)
            FEED.arm(noises[i])
            out = sched.step(mo, t, x, **step_kw)
            calls = FEED.disarm()
            assert calls in (0, 1), (name, i, calls)
            if calls:
                noise_steps.append(i)
                tensors[f"noise.{i}"] = noises[i]
            tensors[f"model_input.{i}"] = f32(model_in)
            tensors[f"model_output.{i}"] = f32(mo)
            tensors[f"prev_sample.{i}"] = f32(out.prev_sample)
            if cls in X0_PRED_CLASSES:
                assert getattr(out, "pred_original_sample", None) is None
                tensors[f"x0_pred.{i}"] = f32(sched.model_outputs[-1])
            else:
                assert out.pred_original_sample is not None
                tensors[f"pred_original_sample.{i}"] = f32(out.pred_original_sample)
            if cls is UniPCMultistepScheduler and i > 0:
                # the sample after the UniC corrector, i.e. what the predictor of step i started from
                tensors[f"corrected_sample.{i}"] = f32(sched.last_sample)
            assert out.prev_sample.dtype == torch.float32
            assert torch.isfinite(out.prev_sample).all(), (name, i)
            x = out.prev_sample
    assert noise_steps == case["expect_noise"](timesteps), (name, noise_steps)
    last = n - 1
    if cls in X0_PRED_CLASSES:
        # final sigma 0: the first-order update returns the data prediction exactly
        assert sched.sigmas[-1].item() == 0.0
        assert torch.equal(tensors[f"prev_sample.{last}"], tensors[f"x0_pred.{last}"]), name
    if cls in (EulerDiscreteScheduler, HeunDiscreteScheduler):
        # sigma_next = 0: prev = x + (x - x0)/sigma * (0 - sigma), which is x0 up to rounding
        info_euler_last = (tensors[f"prev_sample.{last}"] -
                           tensors[f"pred_original_sample.{last}"]).abs().max().item()
        assert info_euler_last < 1e-5, (name, info_euler_last)
    if cls is HeunDiscreteScheduler:
        assert heun_states == [1] + [2, 1] * (steps - 1), (name, heun_states)
        assert len(sched.sigmas) == 2 * steps and sched.sigmas[-1].item() == 0.0
    if cls is DDIMScheduler and eta and kw.get("set_alpha_to_one"):
        t_last = int(timesteps[-1])
        assert sched._get_variance(t_last, t_last - 1000 // n).item() == 0.0
    if prev_ts:
        tensors["prev_timesteps"] = torch.tensor(prev_ts, dtype=torch.float32)

    init_repr = repr(float(init_sigma))
    meta = {
        "scheduler_class": cls.__name__,
        "scheduler_config": config_json(sched),
        "num_inference_steps": str(steps),
        "eta": repr(float(eta)) if eta is not None else "n/a",
        "init_noise_sigma": init_repr,
        "model": MODEL_FORMULA,
        "x_T_seed": str(X_T_SEED),
        "noise_seed": str(NOISE_SEED),
        "noise_steps": ",".join(str(i) for i in noise_steps),
        "diffusers_version": diffusers.__version__,
    }
    if n != steps:
        meta["num_model_calls"] = str(n)
    info = {"timesteps": timesteps.tolist(), "noise_steps": noise_steps, "n": n, "steps": steps,
            "init_sigma": float(init_sigma), "prev_ts": prev_ts, "thresh_s": thresh_s,
            "sigmas": sched.sigmas.tolist() if has_sigmas else None}
    return tensors, meta, info


def threshold_s(sched, sample, model_output, t):
    """Per-batch dynamic-thresholding s (before clamp to [1, sample_max_value]) for the README."""
    a = sched.alphas_cumprod[t]
    x0 = (sample - (1 - a) ** 0.5 * model_output) / a ** 0.5
    flat = x0.reshape(x0.shape[0], -1).abs()
    return torch.quantile(flat, sched.config.dynamic_thresholding_ratio, dim=1).tolist()


def all_but_t0(timesteps):
    return [i for i, t in enumerate(timesteps.tolist()) if t > 0]


def every_step(timesteps):
    return list(range(len(timesteps)))


def no_step(timesteps):
    return []


LINEAR = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
SCALED = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
              beta_end=0.012)

CASES = [
    dict(name="ddpm_fixed_small_clip", cls=DDPMScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, variance_type="fixed_small", clip_sample=True, clip_sample_range=1.0,
                     prediction_type="epsilon"),
         expect_noise=all_but_t0),
    dict(name="ddpm_fixed_large_noclip", cls=DDPMScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, variance_type="fixed_large", clip_sample=False,
                     prediction_type="epsilon"),
         expect_noise=all_but_t0),
    dict(name="ddpm_full_50", cls=DDPMScheduler, steps=50, eta=None,
         kwargs=dict(num_train_timesteps=50, beta_schedule="linear", beta_start=1e-4,
                     beta_end=0.02, variance_type="fixed_small", clip_sample=False,
                     prediction_type="epsilon"),
         expect_noise=all_but_t0),
    dict(name="ddpm_thresholding", cls=DDPMScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, variance_type="fixed_small", clip_sample=False, thresholding=True,
                     dynamic_thresholding_ratio=0.995, sample_max_value=1.0,
                     prediction_type="epsilon"),
         expect_noise=all_but_t0),
    dict(name="ddpm_thresholding_max3", cls=DDPMScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, variance_type="fixed_small", clip_sample=False, thresholding=True,
                     dynamic_thresholding_ratio=0.995, sample_max_value=3.0,
                     prediction_type="epsilon"),
         expect_noise=all_but_t0),
    dict(name="ddim_eta0_leading", cls=DDIMScheduler, steps=10, eta=0.0,
         kwargs=dict(LINEAR, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                     timestep_spacing="leading", prediction_type="epsilon"),
         expect_noise=no_step),
    dict(name="ddim_eta1_trailing", cls=DDIMScheduler, steps=10, eta=1.0,
         kwargs=dict(LINEAR, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                     timestep_spacing="trailing", prediction_type="epsilon"),
         expect_noise=every_step),
    dict(name="ddim_vpred_linspace", cls=DDIMScheduler, steps=10, eta=0.0,
         kwargs=dict(LINEAR, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True,
                     steps_offset=0, timestep_spacing="linspace", prediction_type="v_prediction"),
         expect_noise=no_step),
    dict(name="ddim_sample_pred", cls=DDIMScheduler, steps=10, eta=0.0,
         kwargs=dict(SCALED, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                     timestep_spacing="leading", prediction_type="sample"),
         expect_noise=no_step),
    dict(name="dpmpp2m", cls=DPMSolverMultistepScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                     lower_order_final=True, prediction_type="epsilon",
                     timestep_spacing="linspace"),
         expect_noise=no_step),
    dict(name="dpmpp2m_karras_vpred", cls=DPMSolverMultistepScheduler, steps=10, eta=None,
         kwargs=dict(SCALED, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                     lower_order_final=True, use_karras_sigmas=True,
                     prediction_type="v_prediction", timestep_spacing="linspace"),
         expect_noise=no_step),
    dict(name="euler", cls=EulerDiscreteScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, prediction_type="epsilon", timestep_spacing="linspace"),
         expect_noise=no_step),
    dict(name="euler_20", cls=EulerDiscreteScheduler, steps=20, eta=None,
         kwargs=dict(LINEAR, prediction_type="epsilon", timestep_spacing="linspace"),
         expect_noise=no_step),
    dict(name="euler_ancestral", cls=EulerAncestralDiscreteScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, prediction_type="epsilon", timestep_spacing="linspace"),
         expect_noise=every_step),
    dict(name="euler_trailing_vpred", cls=EulerDiscreteScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, prediction_type="v_prediction", timestep_spacing="trailing"),
         expect_noise=no_step),
    dict(name="euler_karras", cls=EulerDiscreteScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, prediction_type="epsilon", timestep_spacing="linspace",
                     use_karras_sigmas=True),
         expect_noise=no_step,
         note="Karras sigmas (rho 7, sigma_min = sigmas_train[0], sigma_max = "
              "sigmas_train[999]); timesteps = `_sigma_to_t(sigma)`, fractional, cast to "
              "float32 (not rounded); the model sees the fractional t, the step uses the "
              "Karras sigmas."),
    dict(name="euler_exponential", cls=EulerDiscreteScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, prediction_type="epsilon", timestep_spacing="linspace",
                     use_exponential_sigmas=True),
         expect_noise=no_step,
         note="Exponential sigmas `exp(linspace(log(sigma_max), log(sigma_min), N))`; "
              "timesteps fractional float32 as in `euler_karras`."),
    dict(name="heun", cls=HeunDiscreteScheduler, steps=8, expect_len=15, eta=None,
         kwargs=dict(LINEAR, prediction_type="epsilon", timestep_spacing="linspace"),
         expect_noise=no_step,
         note="N = 8 inference steps, 15 model calls: calls 0, 2, ..., 14 are first-order "
              "(Euler) calls, calls 1, 3, ..., 13 the Heun corrections; `timesteps` [15] and "
              "`sigmas` [16] are the interleaved arrays, every `<i>` is a model-call index. "
              "The last call (14) is an Euler step from sigma_min to 0."),
    dict(name="heun_karras_vpred", cls=HeunDiscreteScheduler, steps=8, expect_len=15, eta=None,
         kwargs=dict(LINEAR, prediction_type="v_prediction", timestep_spacing="linspace",
                     use_karras_sigmas=True),
         expect_noise=no_step,
         note="As `heun`, with Karras sigmas (N = 8) and fractional float32 timesteps, "
              "v_prediction (x0 of a correction call uses s_{j+1} in the v formula)."),
    dict(name="unipc", cls=UniPCMultistepScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, solver_order=2, solver_type="bh2", predict_x0=True,
                     lower_order_final=True, prediction_type="epsilon",
                     timestep_spacing="linspace"),
         expect_noise=no_step,
         note="Orders: predictor p_i = 1, 2, 2, 2, 2, 2, 2, 2, 2, 1; corrector at steps 1..9 "
              "with order p_{i-1} (1 at step 1, then 2). `x0_pred.<i>` and "
              "`corrected_sample.<i>` (i >= 1) hold the solver state."),
    dict(name="unipc_karras_vpred", cls=UniPCMultistepScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, solver_order=2, solver_type="bh2", predict_x0=True,
                     lower_order_final=True, use_karras_sigmas=True,
                     prediction_type="v_prediction", timestep_spacing="linspace"),
         expect_noise=no_step,
         note="Karras sigmas identical to `euler_karras`; timesteps = round(`_sigma_to_t`) "
              "(half-to-even), int64, so the model sees e.g. 937 where Euler uses 936.92218."),
    dict(name="dpmpp2m_sde", cls=DPMSolverMultistepScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, algorithm_type="sde-dpmsolver++", solver_order=2,
                     solver_type="midpoint", lower_order_final=True, prediction_type="epsilon",
                     timestep_spacing="linspace"),
         expect_noise=every_step,
         note="SDE-DPM-Solver++ 2M: noise drawn at all steps; at the last step it is "
              "multiplied by sigma_t = 0 (deterministic update, prev_sample = x0_pred)."),
    dict(name="dpmpp2m_exponential", cls=DPMSolverMultistepScheduler, steps=10, eta=None,
         kwargs=dict(LINEAR, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                     lower_order_final=True, use_exponential_sigmas=True,
                     prediction_type="epsilon", timestep_spacing="linspace"),
         expect_noise=no_step,
         note="Exponential sigmas identical to `euler_exponential`; timesteps = "
              "`_sigma_to_t(sigma)` **truncated** toward zero by the int64 cast (not "
              "rounded): 999, 886, 757, 602, 409, 202, 72, 21, 4, 0."),
]


# ---------------------------------------------------------------------------
# 3. add_noise.safetensors
# ---------------------------------------------------------------------------

ADD_NOISE_T = [0, 10, 500, 999]


def make_add_noise():
    s = DDPMScheduler(**LINEAR)
    x0 = seeded_randn(ADD_NOISE_X0_SEED, (4, 3, 4, 4))
    noise = seeded_randn(ADD_NOISE_NOISE_SEED, (4, 3, 4, 4))
    ts = torch.tensor(ADD_NOISE_T, dtype=torch.int64)
    noisy = s.add_noise(x0, noise, ts)
    vel = s.get_velocity(x0, noise, ts)
    ac = s.alphas_cumprod[ts]
    sa, so = ac ** 0.5, (1 - ac) ** 0.5
    assert torch.equal(noisy, sa[:, None, None, None] * x0 + so[:, None, None, None] * noise)
    assert torch.equal(vel, sa[:, None, None, None] * noise - so[:, None, None, None] * x0)
    tensors = {"x0": x0, "noise": noise, "timesteps": ts.to(torch.float32),
               "noisy_samples": f32(noisy), "velocity": f32(vel),
               "sqrt_alpha_prod": f32(sa), "sqrt_one_minus_alpha_prod": f32(so)}
    meta = {"scheduler_class": "DDPMScheduler", "scheduler_config": config_json(s),
            "x0_seed": str(ADD_NOISE_X0_SEED), "noise_seed": str(ADD_NOISE_NOISE_SEED),
            "diffusers_version": diffusers.__version__}
    return tensors, meta


# ---------------------------------------------------------------------------
# 4. ddpm_posterior.safetensors
# ---------------------------------------------------------------------------

POSTERIOR_T = [0, 1, 10, 500, 999]
POSTERIOR_FACTS = {}


def make_posterior():
    s = DDPMScheduler(**LINEAR, variance_type="fixed_small")  # no set_timesteps: prev_t = t - 1
    cols = {k: [] for k in ("posterior_variance", "coef_x0", "coef_xt", "beta_t",
                            "alpha_prod_t", "alpha_prod_t_prev")}
    x0 = seeded_randn(POSTERIOR_SEED, SHAPE)
    xt = seeded_randn(POSTERIOR_SEED + 1, SHAPE)
    sample_sched = DDPMScheduler(**LINEAR, variance_type="fixed_small", clip_sample=False,
                                 prediction_type="sample")
    for t in POSTERIOR_T:
        prev_t = s.previous_timestep(t)
        assert prev_t == t - 1
        # exactly the float32 tensor expressions of DDPMScheduler.step
        alpha_prod_t = s.alphas_cumprod[t]
        alpha_prod_t_prev = s.alphas_cumprod[prev_t] if prev_t >= 0 else s.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        coef_x0 = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        coef_xt = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        var = s._get_variance(t)
        assert torch.equal(var, s._get_variance(t, variance_type="fixed_small"))
        assert torch.equal(s._get_variance(t, variance_type="fixed_large"), current_beta_t)
        # cross-check against step(): prediction_type "sample" feeds x0 directly; zero noise
        with patched_randn():
            FEED.arm(torch.zeros(SHAPE))
            out = sample_sched.step(x0, torch.tensor(t), xt)
            calls = FEED.disarm()
        assert calls == (1 if t > 0 else 0)
        assert torch.equal(out.prev_sample, coef_x0 * x0 + coef_xt * xt), t
        for k, v in (("posterior_variance", var), ("coef_x0", coef_x0), ("coef_xt", coef_xt),
                     ("beta_t", current_beta_t), ("alpha_prod_t", alpha_prod_t),
                     ("alpha_prod_t_prev", alpha_prod_t_prev)):
            assert v.dtype == torch.float32 and v.dim() == 0, (k, v)
            cols[k].append(v.item())
    tensors = {k: torch.tensor(v, dtype=torch.float32) for k, v in cols.items()}
    tensors["t"] = torch.tensor(POSTERIOR_T, dtype=torch.float32)
    betas = s.betas[torch.tensor(POSTERIOR_T)]
    POSTERIOR_FACTS["beta_rel_err"] = [
        (t, b.item(), r.item(), abs(r.item() / b.item() - 1))
        for t, b, r in zip(POSTERIOR_T, betas, tensors["beta_t"])]
    meta = {"scheduler_class": "DDPMScheduler", "scheduler_config": config_json(s),
            "diffusers_version": diffusers.__version__}
    return tensors, meta


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------

def fmt_list(xs, nd=None):
    out = []
    for x in xs:
        if nd is not None:
            out.append(f"{x:.{nd}g}")
        elif float(x).is_integer():
            out.append(str(int(x)))
        else:
            out.append(repr(float(np.float32(x))))
    return "[" + ", ".join(out) + "]"


def case_kwargs_str(case):
    return ", ".join(f"{k}={v!r}" for k, v in case["kwargs"].items())


def readme(files, sched_facts, infos):
    L = []
    w = L.append
    w("# Scheduler fixtures (diffusers golden values)\n")
    w("Generated by `scripts/make_scheduler_fixtures.py` with diffusers "
      f"{diffusers.__version__} and torch {torch.__version__.split('+')[0]} (CPU, one thread). "
      "Do not edit: this README is written by the script. All tensors are float32; integer "
      "quantities (timesteps, indices) are stored as float32 holding integers. Every file has "
      "`__metadata__` (string -> string); trajectory files carry `scheduler_class`, "
      "`scheduler_config` (= `json.dumps(dict(scheduler.config), sort_keys=True)` without "
      "diffusers' internal `_use_default_values` list), `num_inference_steps`, `eta`, "
      "`init_noise_sigma`, `model`, `x_T_seed`, `noise_seed`, `noise_steps`, "
      "`diffusers_version`; Heun files also `num_model_calls` (2N-1, while "
      "`num_inference_steps` is N).\n")
    w("Note: DPMSolverMultistepScheduler's config contains `\"lambda_min_clipped\": -Infinity` "
      "(Python's json writes `-Infinity`, which strict JSON parsers such as Foundation's "
      "JSONSerialization reject unless JSON5 is allowed; real `scheduler_config.json` files "
      "saved by diffusers contain the same token).\n")

    w("## Files\n")
    w("| file | bytes | content |")
    w("|---|---|---|")
    for fname, size, desc in files:
        w(f"| `{fname}` | {size} | {desc} |")
    w("")

    # ---- schedules
    w("## schedules.safetensors\n")
    w("Keys `<schedule>.betas` and `<schedule>.alphas_cumprod`, each [1000], exactly "
      "`scheduler.betas` / `scheduler.alphas_cumprod` (num_train_timesteps = 1000):\n")
    w("| schedule | built by |")
    w("|---|---|")
    for name, _, _, desc in SCHEDULES:
        w(f"| `{name}` | `{desc}` |")
    w("")
    w("How to reproduce them bit for bit (each recipe is asserted by the script unless a "
      "ulp distance is given):\n")
    w("- `alphas = 1 - betas` in float32; `alphas_cumprod = torch.cumprod(alphas)`, which on "
      "CPU **accumulates in float64** and rounds each partial product to float32 (bit-exact "
      "for every schedule). A running float32 product drifts by up to "
      + ", ".join(f"{k}: {v}" for k, v in sched_facts["seq_f32_cumprod_ulps"].items())
      + " ulps.")
    w("- `linear`: `torch.linspace(beta_start, beta_end, 1000, dtype=float32)`. On CPU this is: "
      "start and end rounded to float32, `step = Float((end - start) / 999)` computed in "
      "float32, then for `i < 500` `fma(step, Float(i), start)` and for `i >= 500` "
      "`fma(-step, Float(999 - i), end)` (fused multiply-add, i.e. Swift "
      "`start.addingProduct(step, Float(i))`). Bit-exact. The naive `start + Float(i) * step` "
      f"is off by up to {sched_facts['naive_linspace_ulps']} ulp(s).")
    w("- `scaled_linear`: the same float32 linspace from `sqrt(0.00085)` to `sqrt(0.012)` "
      "(square roots in Double, then rounded to float32), then squared in float32 (`b * b`). "
      "Bit-exact.")
    w("- `squaredcos_cap_v2`: computed in Double: `alpha_bar(t) = cos((t + 0.008) / 1.008 * "
      "pi / 2)^2`, `beta_i = min(1 - alpha_bar((i+1)/N) / alpha_bar(i/N), 0.999)`, then rounded "
      "to float32. Bit-exact here (libm cos may differ in the last Double bit elsewhere, "
      "which almost never changes the float32). The last beta is clipped to 0.999.")
    w("- `sigmoid` (DDPMScheduler only; "
      "DDIM, Euler, EulerAncestral, Heun, UniPC and DPMSolverMultistep raise "
      "NotImplementedError for "
      "beta_schedule='sigmoid'): "
      "`torch.sigmoid(torch.linspace(-6, 6, 1000)) * (beta_end - beta_start) + beta_start`, "
      "all float32 (the linspace is the float32 recipe above). Computing the sigmoid in Double "
      "and rounding gives sigmoid values within "
      f"{sched_facts['sigmoid_only_ulps']} ulp(s) of torch's vectorised float32 sigmoid and "
      f"betas within {sched_facts['sigmoid_recipe_ulps']} ulp(s). The scaling is bit-exact "
      "given torch's sigmoid: `(beta_end - beta_start)` is computed in Double and rounded to "
      "float32, `beta_start` rounded to float32, then a float32 multiply and a separate float32 "
      "add (no fma).")
    zl, zb = sched_facts["zero_snr_last"]
    w("- `linear_zero_snr`: `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1) applied "
      "to the linear betas, in float32 torch ops: `s = sqrt(cumprod(1 - betas))`, "
      "`s0 = s[0]`, `sT = s[-1]`, `s = (s - sT) * (s0 / (s0 - sT))`, `abar = s^2`, "
      "`alphas = [abar[0], abar[1:] / abar[:-1]]`, `betas = 1 - alphas`. "
      f"The last beta is {zb!r} and the last alphas_cumprod is {zl!r} (terminal SNR 0). "
      "DDPMScheduler gives identical values. EulerDiscreteScheduler, "
      "DPMSolverMultistepScheduler and UniPCMultistepScheduler then overwrite "
      "`alphas_cumprod[-1] = 2**-24` "
      "(so that sigma stays finite); this file stores the DDIM/DDPM value.")
    n_diff, u_diff = sched_facts["trained_vs_linear"]
    w("- `trained_betas`: `np.linspace(1e-4, 0.02, 1000)` in float64, passed as "
      "`trained_betas=list`, then `torch.tensor(..., dtype=float32)` (round to nearest). "
      f"It differs from `linear` (torch's float32 linspace) in {n_diff} of 1000 entries, by "
      f"at most {u_diff} ulp.")
    w("")

    # ---- model & noise
    w("## Trajectory files: common conventions\n")
    w("**Stand-in model.** `model_output(x, t) = 0.5 * sin(x) + 0.1 * x * cos(t / 300)`, "
      "evaluated in float32 as `(0.5 * sin(x)) + ((0.1 * x) * c)` with the scalar "
      "`c = cos(Float(t) / 300)` computed once in float32; 0.5, 0.1 and 300 are float32 "
      "constants (torch casts Python scalars to the tensor dtype). torch's vectorised float32 "
      "sin/cos are not always correctly rounded (about 5% of sin values differ by 1 ulp from "
      "the correctly rounded result), so compare `model_output.<i>` with a small tolerance. "
      "`t` is the timestep exactly as it "
      "appears in `scheduler.timesteps` (int64 for DDPM/DDIM/DPM-Solver/UniPC, converted to "
      "float32; float32 for Euler/EulerAncestral/Heun, possibly fractional, e.g. in `euler_20`, "
      "`heun` and every Euler/Heun Karras or exponential case). "
      "`x` is `scheduler.scale_model_input(sample, t)`, which is the identity for DDPM, DDIM, "
      "DPM-Solver and UniPC and `sample / sqrt(sigma^2 + 1)` for Euler/EulerAncestral/Heun "
      "(Heun: `sigma = sigmas[i]` of its interleaved array, i = model-call index). The model is "
      "called exactly once per step, except for Heun: N inference steps call it 2N-1 times "
      "(see HeunDiscreteScheduler below); in Heun files every index `<i>` counts model calls.\n")
    w("**Initial sample.** `x_T_unit = torch.randn([2, 3, 4, 4], generator=torch.Generator()"
      f".manual_seed({X_T_SEED}))` (the same tensor in every file), and the first `sample` is "
      "`x_T = x_T_unit * scheduler.init_noise_sigma` (float32 multiply). `init_noise_sigma` is "
      "1.0 for DDPM, DDIM, DPM-Solver and UniPC; for Euler/EulerAncestral/Heun it is "
      "`max(sigmas)` (a float32 tensor) for timestep_spacing linspace/trailing and "
      "`sqrt(max(sigmas)^2 + 1)` for leading.\n")
    w("**Loop** (what a diffusers pipeline does):\n")
    w("```")
    w("sample = x_T")
    w("for i, t in enumerate(scheduler.timesteps):")
    w("    model_input.<i>  = scheduler.scale_model_input(sample, t)")
    w("    model_output.<i> = model(model_input.<i>, t)")
    w("    out = scheduler.step(model_output.<i>, t, sample[, eta=eta for DDIM])   # randn_tensor -> noise.<i>")
    w("    prev_sample.<i> = out.prev_sample; pred_original_sample.<i> = out.pred_original_sample")
    w("    sample = prev_sample.<i>")
    w("```\n")
    w("Note that `step` always receives the *unscaled* `sample` (for Euler/Heun: the "
      "sigma-space sample `x0 + sigma * eps`), never `model_input`. For Heun the loop runs over "
      "the 2N-1 entries of `timesteps` exactly like this (each entry is one model call and one "
      "`step` call; the scheduler alternates internally between its first-order and correction "
      "state). The multistep solvers (DPM-Solver, UniPC) keep state between calls, so the "
      "steps must be run in order on a fresh scheduler.\n")
    w("**Noise.** No RNG is used inside the schedulers: diffusers' `randn_tensor` is replaced "
      "(in `diffusers.utils.torch_utils` and in each scheduler module's namespace) by a function "
      "that returns a copy of the pre-generated tensor for the current step. The pre-generated "
      f"tensors are the i-th draw, i = 0..N-1, of `torch.randn([2,3,4,4], generator="
      f"torch.Generator().manual_seed({NOISE_SEED}))`; `noise.<i>` is stored only for the steps "
      "where the scheduler actually called `randn_tensor` (listed in `noise_steps` metadata), "
      "and the script asserts the number of calls per step (0 or 1, and which steps). A Swift "
      "implementation must use `noise.<i>` at step i. Per scheduler:\n")
    w("- DDPM: one draw per step with `t > 0`; the step with `t == 0` draws nothing. Added as "
      "`sqrt(variance) * noise` (fixed_small, fixed_large).")
    w("- DDIM: one draw per step, at **every** step (including the last), iff `eta > 0`; added "
      "as `std_dev_t * noise` with `std_dev_t = eta * sqrt(variance)`. With eta=1 and "
      "set_alpha_to_one=True the last step's variance is exactly 0, so `noise.<N-1>` is drawn "
      "but multiplied by 0.")
    w("- EulerAncestral: one draw at every step including the last, added as "
      "`noise * sigma_up`; at the last step `sigma_to = 0` so `sigma_up = 0`.")
    w("- DPM-Solver SDE (`algorithm_type=\"sde-dpmsolver++\"`, `dpmpp2m_sde`): one draw at "
      "**every** step including the last (`step` calls `randn_tensor` whenever no "
      "`variance_noise` is passed), added as `sigma_t * sqrt(1 - exp(-2h)) * noise`; at the "
      "last step the target sigma is 0, so `sigma_t = 0` and `noise.<N-1>` is drawn but "
      "multiplied by 0 (the last update is deterministic).")
    w("- Euler (s_churn = 0, the default), DPM-Solver++ (ODE, algorithm_type dpmsolver++), "
      "Heun, UniPC: never draw (the Heun and UniPC modules do not even import `randn_tensor`; "
      "the script also makes `torch.randn`/`torch.randn_like` raise during every step).\n")
    w("**Keys** in every trajectory file (i = 0..N-1):\n")
    w("- `x_T_unit`, `x_T` [2,3,4,4]; `timesteps` [N] = `scheduler.timesteps` after "
      "`set_timesteps(N)`.")
    w("- `model_input.<i>`, `model_output.<i>`, `prev_sample.<i>` [2,3,4,4].")
    w("- `pred_original_sample.<i>`: returned by DDPM, DDIM, Euler, EulerAncestral and Heun "
      "(after clipping/thresholding where configured; for Heun's correction calls it is the x0 "
      "of the second evaluation, see below). DPMSolverMultistepScheduler and "
      "UniPCMultistepScheduler return no `pred_original_sample`; their files instead hold "
      "`x0_pred.<i>` = `scheduler.model_outputs[-1]` after step i, i.e. the output of "
      "`convert_model_output` (the data prediction x0 used by DPM-Solver++ / UniPC with "
      "predict_x0).")
    w("- UniPC only: `corrected_sample.<i>` (i >= 1) = `scheduler.last_sample` after step i, "
      "i.e. the sample after the UniC corrector, from which the UniP predictor of step i "
      "starts (at i = 0 there is no corrector and the predictor starts from `x_T`). Lets a "
      "port test corrector and predictor separately.")
    w("- `noise.<i>` for each i in `noise_steps`.")
    w("- DDPM/DDIM only: `prev_timesteps` [N], the previous timestep the scheduler used at "
      "step i (see below; negative means \"before t = 0\").")
    w("- Euler/EulerAncestral/DPM-Solver/UniPC: `sigmas` [N+1] = `scheduler.sigmas` (the "
      "last entry is the final sigma, 0). Heun: `sigmas` [2N] = its interleaved "
      "`scheduler.sigmas` `[s_0, s_1, s_1, ..., s_{N-1}, s_{N-1}, 0]`, and `timesteps` "
      "[2N-1] = `[t_0, t_1, t_1, ..., t_{N-1}, t_{N-1}]`.\n")
    w("Teacher forcing is the most robust test: feed the stored `model_output.<i>` and the "
      "stored sample (`x_T` or `prev_sample.<i-1>`) into the Swift `step` and compare with "
      "`prev_sample.<i>`; a free-running comparison (Swift model + Swift scheduler over all "
      "steps) also works but accumulates float32 rounding (sin/cos differ by an ulp between "
      "libms, and early Euler/DDPM steps amplify it by up to sigma_max ~ 157). For the "
      "stateful solvers teacher forcing means: run the Swift scheduler over all steps in "
      "order, but feed it the stored `model_output.<i>` and the stored input sample each "
      "time (its history then holds its own x0 predictions, which match `x0_pred.<i>` to "
      "float32 rounding).\n")

    # ---- per-case
    w("## Trajectory cases\n")
    w("All use num_train_timesteps = 1000 except `ddpm_full_50` (50). `linear` = "
      "beta_start 1e-4, beta_end 0.02; `scaled_linear` = 0.00085, 0.012. Arguments not listed "
      "are diffusers' defaults (the full config is in each file's metadata).\n")
    for case in CASES:
        info = infos[case["name"]]
        w(f"### `{case['name']}.safetensors`\n")
        w(f"- `{case['cls'].__name__}({case_kwargs_str(case)})`, `set_timesteps({case['steps']})`"
          + (f", `step(..., eta={case['eta']})`" if case["eta"] is not None else ""))
        w(f"- timesteps: `{fmt_list(info['timesteps'])}`")
        if info["prev_ts"]:
            w(f"- prev_timesteps: `{fmt_list(info['prev_ts'])}`")
        if info["sigmas"] is not None:
            w(f"- sigmas: `{fmt_list(info['sigmas'], nd=8)}`")
        w(f"- init_noise_sigma: {info['init_sigma']!r}")
        ns = info["noise_steps"]
        if ns:
            w(f"- noise consumed at steps {fmt_list(ns)} (`noise.<i>` for those i)")
        else:
            w("- no noise consumed")
        if info["thresh_s"]:
            w("- 99.5% quantile of |x0| per batch item, before clamping to "
              f"[1, sample_max_value], step by step: "
              + "; ".join("(" + ", ".join(f"{v:.4g}" for v in s) + ")" for s in info["thresh_s"]))
        if case.get("note"):
            w(f"- {case['note']}")
        w("")

    # ---- algorithms
    w("## Scheduler algorithms as diffusers implements them\n")
    w("All scalar schedule quantities below are float32 0-d tensors (alphas_cumprod indexed "
      "with the timestep), so intermediate results round to float32 after every operation. "
      "torch's CPU float32 `sqrt` / `** 0.5` (vectorised, AVX512) is "
      "not always correctly rounded, and how often depends on the CPU: about 0.7% of results "
      "are 1 ulp away from IEEE sqrt on the machine that generated the first files, about 17% "
      "on the AMD EPYC that generated the Heun, UniPC, SDE, Karras-Euler and exponential cases "
      "(see Regenerating), so "
      "stored coefficients and sigmas can differ from a Swift `.squareRoot()` by 1 ulp. An "
      "independent float64 re-implementation of the formulas below (teacher-forced) matches "
      "every stored `prev_sample`/`pred_original_sample`/`x0_pred`/`corrected_sample` to "
      "< 2e-5 relative to max(1, |value|) (the Heun, UniPC, SDE, Karras and exponential "
      "cases to < 4e-6).\n")
    w("### Timestep spacing (`set_timesteps(N)`, T = num_train_timesteps)\n")
    w("- DDPM/DDIM `leading`: `ratio = T // N`; `timesteps = round(arange(0, N) * ratio)` "
      "reversed, `+ steps_offset`. (T=1000, N=10: 900 ... 0; with steps_offset 1: 901 ... 1.)")
    w("- DDPM/DDIM `trailing`: `round(arange(T, 0, -T/N)) - 1` (float64 arange; 999, 899, ... 99).")
    w("- DDPM/DDIM `linspace`: `round(linspace(0, T-1, N))` reversed (float64, numpy `round` is "
      "round-half-to-even; 999, 888, ..., 111, 0).")
    w("- DPM-Solver `linspace` (its default): `round(linspace(0, T-1, N+1))` reversed, **dropping "
      "the last (0)**: T=1000, N=10 gives `linspace = 0, 99.9, 199.8, ..., 499.5, ..., 999` so "
      "999, 899, 799, 699, 599, 500, 400, 300, 200, 100 (499.5 rounds half-to-even to 500; "
      "numpy's linspace is `start + arange(num) * step` in float64 with the last element set "
      "to stop). `leading` uses `ratio = T // (N+1)` and also drops the last; `trailing` is "
      "as DDIM. (`last_timestep` is T because lambda_min_clipped is -inf.)")
    w("- Euler/EulerAncestral `linspace` (default): `np.linspace(0, T-1, N, dtype=float32)` "
      "reversed (computed in float64, rounded to float32, **not rounded to integers**: "
      "N=20 gives 999, 946.42108, ...). `leading`: `round(arange(N) * (T // N))` reversed + "
      "steps_offset; `trailing`: `round(arange(T, 0, -T/N)) - 1`; stored as float32.")
    w("- Heun: as Euler (`linspace` float32, not rounded: N=8 gives 999, 856.28571, ..., "
      "142.71428, 0), then interleaved (see HeunDiscreteScheduler below).")
    w("- UniPC `linspace` (default): the DPM-Solver formula `round(linspace(0, T-1, N+1))` "
      "reversed, dropping the last (0) (UniPC has no lambda_min_clipped; the range is always "
      "0..T-1); int64. `leading`/`trailing` as DPM-Solver.")
    w("- Karras / exponential sigmas (any of these schedulers): see \"Karras and exponential "
      "sigmas\" below.\n")
    w("### DDPMScheduler.step\n")
    w("- `prev_t = previous_timestep(t)`: once `set_timesteps` was called, the **next entry of "
      "`timesteps`** (-1 after the last); without `set_timesteps`, `t - 1`. "
      "`a_t = alphas_cumprod[t]`, `a_prev = alphas_cumprod[prev_t]` if `prev_t >= 0` else 1.")
    w("- `beta_prod_t = 1 - a_t`, `beta_prod_prev = 1 - a_prev`, `current_alpha_t = a_t / a_prev`, "
      "`current_beta_t = 1 - current_alpha_t` (for strided schedules this is the effective "
      "beta over the whole stride, not `betas[t]`).")
    w("- x0: epsilon `(x - beta_prod_t**0.5 * eps) / a_t**0.5`; sample: `model_output`; "
      "v_prediction: `a_t**0.5 * x - beta_prod_t**0.5 * v`. Then thresholding (if enabled) "
      "else clip to `[-clip_sample_range, clip_sample_range]` (if clip_sample).")
    w("- mean = `coef_x0 * x0 + coef_xt * x` with `coef_x0 = (a_prev**0.5 * current_beta_t) / "
      "beta_prod_t`, `coef_xt = current_alpha_t**0.5 * beta_prod_prev / beta_prod_t` "
      "(computed in exactly this order).")
    w("- if `t > 0`: `+ sqrt(variance) * noise` where fixed_small `variance = "
      "clamp((1 - a_prev) / (1 - a_t) * current_beta_t, min=1e-20)` and fixed_large "
      "`variance = current_beta_t` (the clamp does not apply to fixed_large).")
    w("- Dynamic thresholding (`_threshold_sample`): per batch item, flatten C*H*W (= 48 here), "
      "`s = torch.quantile(|x0|, dynamic_thresholding_ratio)` (linear interpolation between "
      "order statistics: position `q * (n - 1)` in the sorted values), `s = clamp(s, 1, "
      "sample_max_value)`, `x0 = clamp(x0, -s, s) / s`. **With sample_max_value = 1.0 (the "
      "`ddpm_thresholding` case) s is always 1, so thresholding is identical to clipping to "
      "[-1, 1]**; `ddpm_thresholding_max3` (sample_max_value 3.0) exercises the quantile.\n")
    w("### DDIMScheduler.step\n")
    w("- `prev_t = t - T // N` **regardless of timestep_spacing** (not the next entry of "
      "`timesteps`). For `linspace` this is inconsistent with the schedule: at t=888 DDIM "
      "jumps to alphas_cumprod[788] although the next model call is at 777 (see "
      "`prev_timesteps` of `ddim_vpred_linspace`). For `leading` with steps_offset 1 the last "
      "prev_t is -99. `a_prev = alphas_cumprod[prev_t]` if `prev_t >= 0` else "
      "`final_alpha_cumprod` (1.0 if set_alpha_to_one else alphas_cumprod[0]).")
    w("- x0 and eps: epsilon `x0 = (x - (1-a_t)**0.5 * eps) / a_t**0.5`; sample: "
      "`x0 = model_output`, `eps = (x - a_t**0.5 * x0) / (1-a_t)**0.5`; v_prediction: "
      "`x0 = a_t**0.5 * x - (1-a_t)**0.5 * v`, `eps = a_t**0.5 * v + (1-a_t)**0.5 * x`. "
      "Clip/threshold x0 afterwards; eps is **not** recomputed from the clipped x0 "
      "(use_clipped_model_output=False).")
    w("- `variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)`, `std = eta * "
      "variance**0.5`, `prev = a_prev**0.5 * x0 + (1 - a_prev - std**2)**0.5 * eps`, then "
      "`+ std * noise` if eta > 0.\n")
    w("### DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint)\n")
    w("- `sigmas` (VE sigmas) = `sqrt((1 - alphas_cumprod) / alphas_cumprod)` in float32, "
      "interpolated at the timesteps with `np.interp` (exact lookups here, integer timesteps), "
      "then the final sigma 0 is appended (final_sigmas_type \"zero\"); stored as float32. "
      "For each sigma: `alpha_t = 1 / sqrt(sigma^2 + 1)`, `sigma_t = sigma * alpha_t`, "
      "`lambda = log(alpha_t) - log(sigma_t)` (float32).")
    w("- `convert_model_output` -> x0: epsilon `(x - sigma_t * eps) / alpha_t`; v_prediction "
      "`alpha_t * x - sigma_t * v` (alpha_t, sigma_t at the current step's sigma).")
    w("- Step i uses `s0 = sigmas[i]`, `t = sigmas[i+1]`, `h = lambda_t - lambda_s0`. "
      "First order (step 0, since no history, and the final step): "
      "`x = (sigma_t / sigma_s0) * x - (alpha_t * (exp(-h) - 1)) * D0`. "
      "Second order (steps 1..N-2): `h_0 = lambda_s0 - lambda_s1`, `r0 = h_0 / h`, "
      "`D0 = m0`, `D1 = (1 / r0) * (m0 - m1)`, `x = (sigma_t / sigma_s0) * x - (alpha_t * "
      "(exp(-h) - 1)) * D0 - 0.5 * (alpha_t * (exp(-h) - 1)) * D1`, with m0 the current and "
      "m1 the previous x0 prediction.")
    w("- **Final step**: the final sigma is 0, so `alpha_t = 1`, `sigma_t = 0`, `lambda_t = "
      "+inf`, `h = +inf`, `exp(-h) = 0` and the first-order update returns exactly `D0`: "
      "`prev_sample.<N-1> == x0_pred.<N-1>` bit for bit. The final step is forced to first "
      "order whenever final_sigmas_type is \"zero\", even with lower_order_final=False or "
      "N >= 15. A Swift port must special-case sigma = 0 (or rely on IEEE inf arithmetic: "
      "`log(0) = -inf`, `0 * x = 0` only if x is finite).")
    w("- Karras (`dpmpp2m_karras_vpred`): `sigma_min = sigmas_train[0]`, `sigma_max = "
      "sigmas_train[999]` (float32 values promoted to Double), `rho = 7`, "
      "`sigmas = (max^(1/rho) + linspace(0, 1, N) * (min^(1/rho) - max^(1/rho)))^rho` in "
      "Double; timesteps = `_sigma_to_t(sigma)`: `log_sigmas = np.log(sigmas_train)` (in "
      "float32), `low = last index with log_sigmas[low] <= log(sigma)` clipped to [0, 998], "
      "`w = clip((log_sigmas[low] - log(sigma)) / (log_sigmas[low] - log_sigmas[low+1]), 0, "
      "1)`, `t = (1 - w) * low + w * (low + 1)` (Double), and then "
      "**rounded to integers** (half-to-even; not rounded for squaredcos_cap_v2). The sigmas "
      "used by the solver stay the Karras sigmas, **not** the training sigmas at the rounded "
      "timesteps; the model sees the rounded timestep. The final sigma 0 is appended and the "
      "array is cast to float32.\n")
    w("- **SDE variant** (`algorithm_type=\"sde-dpmsolver++\"`, `dpmpp2m_sde`; "
      "`dpm_solver_first_order_update` / `multistep_dpm_solver_second_order_update`): "
      "same sigmas, alpha_t, sigma_t, lambda, h, r0, D0, D1 and the same order schedule "
      "(first order at step 0 and at the final step, second order in between). First order: "
      "`x = (sigma_t / sigma_s0 * exp(-h)) * x + (alpha_t * (1 - exp(-2h))) * D0 + sigma_t * "
      "sqrt(1 - exp(-2h)) * noise`. Second order (midpoint): `x = (sigma_t / sigma_s0 * "
      "exp(-h)) * x + (alpha_t * (1 - exp(-2h))) * D0 + 0.5 * (alpha_t * (1 - exp(-2h))) * D1 "
      "+ sigma_t * sqrt(1 - exp(-2h)) * noise` (all float32; evaluated left to right). `noise` "
      "= `noise.<i>` (drawn at every step by `step()`, `randn_tensor(model_output.shape, "
      "dtype=float32)`, or taken from its `variance_noise` argument). At the final step "
      "`exp(-h) = 0` and `sigma_t = 0`, so `prev_sample.<N-1> == x0_pred.<N-1>` bit for bit "
      "(asserted).\n")
    w("### Karras and exponential sigmas\n")
    w("Used by `euler_karras`, `euler_exponential`, `heun_karras_vpred`, "
      "`unipc_karras_vpred`, `dpmpp2m_karras_vpred`, `dpmpp2m_exponential` "
      "(`_convert_to_karras`, `_convert_to_exponential`, `_sigma_to_t` in each scheduler "
      "module; the functions are copies of EulerDiscreteScheduler's).\n")
    w("- `sigmas_train = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` (float32 torch, then "
      "numpy). `sigma_max` = `in_sigmas[0]`, `sigma_min` = `in_sigmas[-1]` as Python floats: "
      "for Euler/Heun `in_sigmas` = the linspace-interpolated inference sigmas (float64, "
      "exact lookups at t = 999 and t = 0), for DPM-Solver/UniPC the flipped training sigmas; "
      "either way `sigma_max = sigmas_train[999]` (157.40727 here) and `sigma_min = "
      "sigmas_train[0]` (0.01000133), the float32 values promoted to Double. (Euler and UniPC "
      "would take `config.sigma_min`/`sigma_max` instead if set; they are None.)")
    w("- Karras: `ramp = np.linspace(0, 1, N)` (Double), `sigmas = (sigma_max^(1/7) + ramp * "
      "(sigma_min^(1/7) - sigma_max^(1/7)))^7` (rho = 7; Double).")
    w("- Exponential: `sigmas = np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), "
      "N))` (Double; geometric spacing from sigma_max down to sigma_min).")
    w("- sigma -> t (`_sigma_to_t(sigma, log_sigmas)`): `log_sigmas = np.log(sigmas_train)` "
      "**in float32**, `log_sigma = log(max(sigma, 1e-10))` in Double; `low` = the last index "
      "with `log_sigmas[low] <= log_sigma` (computed as `argmax(cumsum(log_sigma - "
      "log_sigmas >= 0))`, 0 if there is none), clipped to <= 998; `w = clip((log_sigmas[low] - "
      "log_sigma) / (log_sigmas[low] - log_sigmas[low+1]), 0, 1)`; `t = (1 - w) * low + w * "
      "(low + 1)` (Double; linear interpolation in **log sigma**, unlike the sigma-space "
      "np.interp used without Karras). sigma_max maps to 999 and sigma_min to 0 exactly.")
    w("- What becomes of t: **Euler and Heun keep it fractional** (cast to float32: "
      "`euler_karras` 999, 936.92218, ..., 18.309189, 0); **DPM-Solver and UniPC with Karras "
      "round** it (numpy round, half-to-even; DPM-Solver skips the rounding for "
      "squaredcos_cap_v2, whose t are then truncated by the int64 cast like the exponential "
      "ones below; UniPC always rounds) and store int64; **DPM-Solver (and UniPC) with "
      "exponential sigmas do not round**: the Double t goes through "
      "`torch.from_numpy(t).to(int64)`, which **truncates toward zero** "
      "(`dpmpp2m_exponential`: 886.399 -> 886, 757.336 -> 757, 602.770 -> 602, 409.974 -> "
      "409, ..., 4.806 -> 4, compare the fractional timesteps of `euler_exponential`, whose "
      "sigmas are identical).")
    w("- In every case the solver uses the converted sigmas (cast to float32, final 0 "
      "appended; Heun interleaves them), **not** `sigmas_train` at the (rounded) timestep; the "
      "model only sees t. `init_noise_sigma` of Euler/Heun is `max(sigmas)` = the float32 "
      "sigma_max.\n")
    w("### EulerDiscreteScheduler / EulerAncestralDiscreteScheduler\n")
    w("- Training sigmas `sqrt((1 - a) / a)` (float32); inference sigmas = `np.interp(timesteps, "
      "arange(1000), sigmas_train)` in float64 (linear interpolation in sigma, not log-sigma; "
      "matters for fractional timesteps, see `euler_20`), then append 0 and cast to float32.")
    w("- `scale_model_input`: `sample / (sigma^2 + 1) ** 0.5` with `sigma = sigmas[i]`. The model "
      "is called with the raw float32 timestep (`timestep_type=\"discrete\"`).")
    w("- Euler step (s_churn = 0 so gamma = 0, sigma_hat = sigma, no noise): x0 = epsilon "
      "`x - sigma * eps`, v_prediction `v * (-sigma / (sigma^2 + 1) ** 0.5) + x / (sigma^2 + 1)`; "
      "`derivative = (x - x0) / sigma`, `dt = sigmas[i+1] - sigma`, `prev = x + derivative * dt`. "
      "x0 is never clipped. At the last step `sigmas[N] = 0`, so `prev` equals x0 up to "
      "float32 rounding (not bit for bit, unlike DPM-Solver).")
    w("- EulerAncestral step: same x0; `sigma_up = sqrt(sigma_to^2 * (sigma_from^2 - sigma_to^2) "
      "/ sigma_from^2)`, `sigma_down = sqrt(sigma_to^2 - sigma_up^2)`, "
      "`prev = x + ((x - x0) / sigma) * (sigma_down - sigma) + noise * sigma_up`.")
    w("- `euler_karras` / `euler_exponential`: identical step; only the sigmas and the "
      "(fractional) timesteps change, see above. The last inference sigma is sigma_min "
      "(t = 0), then 0.\n")
    w("### HeunDiscreteScheduler\n")
    w("(`scheduling_heun_discrete.py`: `set_timesteps`, `scale_model_input`, `step`, "
      "`state_in_first_order`.)\n")
    w("- `set_timesteps(N)`: base timesteps `t_0..t_{N-1}` as Euler (linspace float32 "
      "fractional), base sigmas `s_j = np.interp(t_j, arange(1000), sigmas_train)` (Double), "
      "or Karras/exponential sigmas with `t_j = _sigma_to_t(s_j)` (fractional Double); then "
      "`s = float32([s_0, ..., s_{N-1}, 0])` and interleaved: `sigmas = cat([s[:1], "
      "s[1:-1].repeat_interleave(2), s[-1:]])` = `[s_0, s_1, s_1, ..., s_{N-1}, s_{N-1}, 0]` "
      "(2N entries), `timesteps = cat([t[:1], t[1:].repeat_interleave(2)])` = "
      "`[t_0, t_1, t_1, ..., t_{N-1}, t_{N-1}]` (2N-1 entries, float32). The model is called "
      "once per entry of `timesteps`, i.e. 2N-1 times.")
    w("- A call counter k = 0..2N-2 (`step_index`, initialised from the position of t_0 and "
      "incremented by every `step`). `scale_model_input`: `sample / (sigmas[k]^2 + 1) ** 0.5`. "
      "The state is first-order when no `dt` is stored: k even -> first-order call, k odd -> "
      "correction call.")
    w("- First-order call k = 2j (sample x): `sigma = sigmas[k] = s_j`, `sigma_next = "
      "sigmas[k+1] = s_{j+1}`; x0: epsilon `x - sigma * eps`, v_prediction `v * (-sigma / "
      "(sigma^2 + 1) ** 0.5) + x / (sigma^2 + 1)`, sample `model_output`; "
      "`d1 = (x - x0) / sigma`, `dt = sigma_next - sigma`; stores d1, dt and x; returns "
      "`prev_sample = x + d1 * dt` (a plain Euler step to s_{j+1}, the point where the "
      "model is evaluated next) and `pred_original_sample = x0`.")
    w("- Correction call k = 2j+1: the sample passed in is the Euler prediction "
      "`x~ = prev_sample.<k-1>`, the model was evaluated at t_{j+1} on `x~ / (s_{j+1}^2 + 1) "
      "** 0.5`. x0 is computed with **sigma_next = s_{j+1}** (epsilon `x~ - s_{j+1} * eps`, "
      "v_prediction with s_{j+1} in place of sigma); `d2 = (x~ - x0) / s_{j+1}`, "
      "`d = (d1 + d2) / 2`; returns `prev_sample = x + d * dt` with the x and dt stored by "
      "call k-1 (x = the sample passed to call k-1), and `pred_original_sample` = this x0 (of "
      "the second evaluation). Then d1, dt and x are cleared (next call is first order).")
    w("- The last call k = 2N-2 is a first-order call from s_{N-1} to 0: a plain Euler step "
      "whose `prev_sample` equals x0 up to float32 rounding (asserted < 1e-5); the final "
      "sample is not Heun-corrected and the scheduler is left in the correction state. "
      "gamma is 0 (sigma_hat = sigma); clip_sample is False. All arithmetic is float32 "
      "(0-d float32 sigmas).\n")
    w("### UniPCMultistepScheduler (bh2, predict_x0, solver_order 2)\n")
    w("(`scheduling_unipc_multistep.py`: `set_timesteps`, `convert_model_output`, `step`, "
      "`multistep_uni_p_bh_update` (UniP, predictor), `multistep_uni_c_bh_update` (UniC, "
      "corrector), `_sigma_to_alpha_sigma_t`.)\n")
    w("- `set_timesteps(N)`: timesteps as above (linspace: 999, 899, ..., 500, ..., 100; "
      "Karras: rounded `_sigma_to_t`), `sigmas` = `np.interp(timesteps, arange(1000), "
      "sigmas_train)` (Double; exact lookups) or the Karras sigmas, then final 0 appended "
      "(final_sigmas_type \"zero\") and cast to float32. `init_noise_sigma = 1`, "
      "`scale_model_input` is the identity.")
    w("- For a sigma s (float32): `alpha = 1 / (s^2 + 1) ** 0.5`, `sigma_t = s * alpha`, "
      "`lambda = log(alpha) - log(sigma_t)` (the VP quantities, as DPM-Solver).")
    w("- `convert_model_output` at step i (s = sigmas[i], x = the sample passed to `step`, "
      "i.e. the *uncorrected* `prev_sample.<i-1>`): epsilon `m_i = (x - sigma_t * eps) / "
      "alpha`, v_prediction `m_i = alpha * x - sigma_t * v`, sample `m_i = model_output` "
      "(`x0_pred.<i>`).")
    w("- `step` i: (1) `m_i` as above; (2) if i > 0: corrector -> `xc_i` "
      "(`corrected_sample.<i>`), with order `p_{i-1}`; else `xc_0 = x_T`; (3) history "
      "`model_outputs = [m_{i-1}, m_i]`; (4) order `p_i = min(2, N - i, i + 1)` "
      "(lower_order_final and warm-up: p_0 = 1, p_1..p_{N-2} = 2, p_{N-1} = 1); "
      "(5) `last_sample = xc_i`; `prev_sample.<i>` = predictor from `xc_i` with order p_i.")
    w("- Predictor (UniP, bh2), from s0 = sigmas[i] to t = sigmas[i+1]: `h = lambda_t - "
      "lambda_s0`, `hh = -h` (predict_x0), `h_phi_1 = expm1(hh)`, `B_h = expm1(hh)` (bh2; "
      "bh1 would use hh). `x_t_ = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m_i` "
      "(sigma_t, sigma_s0 the VP sigmas). Order 1: `prev = x_t_` (minus `alpha_t * B_h * 0`). "
      "Order 2: `r1 = (lambda(sigmas[i-1]) - lambda_s0) / h`, `D1 = (m_{i-1} - m_i) / r1`, "
      "`rhos_p = [0.5]` (hard-coded for order 2, no linear solve), "
      "`prev = x_t_ - alpha_t * B_h * (0.5 * D1)`.")
    w("- Corrector (UniC, bh2) at step i, from s0 = sigmas[i-1] to t = sigmas[i], with "
      "x = `xc_{i-1}` (`last_sample`), m0 = `m_{i-1}`, model_t = `m_i`: h, hh, h_phi_1, B_h "
      "as above for this interval; `x_t_ = sigma_t / sigma_s0 * xc_{i-1} - alpha_t * h_phi_1 "
      "* m_{i-1}`; `D1_t = m_i - m_{i-1}`. Order 1 (only at step 1): `rhos_c = [0.5]`, "
      "`xc_i = x_t_ - alpha_t * B_h * (0.5 * D1_t)`. Order 2: `r1 = (lambda(sigmas[i-2]) - "
      "lambda_s0) / h`, `D1 = (m_{i-2} - m_{i-1}) / r1`, `R = [[1, 1], [r1, 1]]`, "
      "`b = [b1, b2]` with `k1 = h_phi_1 / hh - 1`, `b1 = k1 * 1 / B_h`, `k2 = k1 / hh - 1/2`, "
      "`b2 = k2 * 2 / B_h`; `rhos_c = torch.linalg.solve(R, b)` (float32 LAPACK, LU with "
      "partial pivoting; closed form `rhos_c[0] = (b1 - b2) / (1 - r1)`, `rhos_c[1] = b1 - "
      "rhos_c[0]`); `xc_i = x_t_ - alpha_t * B_h * (rhos_c[0] * D1 + rhos_c[1] * D1_t)`.")
    w("- Final step: sigmas[N] = 0, so `alpha_t = 1`, `sigma_t = 0`, `lambda_t = +inf`, "
      "`hh = -inf`, `h_phi_1 = B_h = -1` and the order-1 predictor returns `m_{N-1}`: "
      "`prev_sample.<N-1> == x0_pred.<N-1>` bit for bit (asserted). The last predictor output "
      "is never corrected (the corrector runs at the start of the following `step`).")
    w("- All step arithmetic is float32 (0-d tensors); only set_timesteps builds sigmas in "
      "Double before the float32 cast.\n")

    # ---- add_noise / posterior
    w("## add_noise.safetensors\n")
    w("`DDPMScheduler(linear)`; `x0` [4,3,4,4] = randn seed "
      f"{ADD_NOISE_X0_SEED}, `noise` [4,3,4,4] = randn seed {ADD_NOISE_NOISE_SEED} (each from "
      "its own `torch.Generator().manual_seed(seed)`), `timesteps` [4] = "
      f"{ADD_NOISE_T} (passed as int64, one per batch item). "
      "`sqrt_alpha_prod` [4] = `alphas_cumprod[t] ** 0.5`, `sqrt_one_minus_alpha_prod` [4] = "
      "`(1 - alphas_cumprod[t]) ** 0.5` (float32), `noisy_samples` = `add_noise(x0, noise, t)` "
      "= `sqrt_alpha_prod * x0 + sqrt_one_minus_alpha_prod * noise`, `velocity` = "
      "`get_velocity(x0, noise, t)` = `sqrt_alpha_prod * noise - sqrt_one_minus_alpha_prod * x0` "
      "(both bit-identical to these float32 expressions, asserted).\n")
    w("## ddpm_posterior.safetensors\n")
    w("`DDPMScheduler(linear, variance_type=\"fixed_small\")` **without** `set_timesteps`, so "
      "`prev_t = t - 1`. For `t` [5] = "
      f"{POSTERIOR_T} (t = 0 added to cover `prev_t < 0`, where `alpha_prod_t_prev = 1`):\n")
    w("- `alpha_prod_t`, `alpha_prod_t_prev`, `beta_t` = `1 - alpha_prod_t / alpha_prod_t_prev` "
      "(= the fixed_large variance),")
    w("- `posterior_variance` = `scheduler._get_variance(t)` = `clamp((1 - a_prev) / (1 - a_t) "
      "* beta_t, min=1e-20)` (at t = 0 this is the clamp value 1e-20; DDPM adds no noise at "
      "t = 0 anyway),")
    w("- `coef_x0` = `(a_prev ** 0.5 * beta_t) / (1 - a_t)`, `coef_xt` = "
      "`(a_t / a_prev) ** 0.5 * (1 - a_prev) / (1 - a_t)`, computed with the same float32 "
      "tensor expressions as `DDPMScheduler.step`; the script checks that `step()` with "
      "prediction_type \"sample\" and zero noise returns exactly `coef_x0 * x0 + coef_xt * x_t`.\n")
    w("Note that `beta_t` recomputed from alphas_cumprod in float32 is **not** `betas[t]`: "
      + "; ".join(f"t={t}: betas[t] = {b:.7g}, beta_t = {r:.7g} (rel. diff {e:.1e})"
                  for t, b, r, e in POSTERIOR_FACTS["beta_rel_err"])
      + ". The cancellation in `1 - a_t / a_prev` costs ~4 significant digits at small t, so "
      "a Swift port must use the same expression (not `betas[t]`) to match DDPM's float32 "
      "variance and coefficients.\n")
    w("## Regenerating\n")
    w("```\n$HOME/haze-ref-venv/bin/python scripts/make_scheduler_fixtures.py\n```\n")
    w("The output is byte-for-byte deterministic on one machine (checked by running twice "
      "into different directories and comparing), but **not across CPUs**: torch's "
      "vectorised float32 sqrt/sin/exp/log round differently on different processors, so a "
      "regeneration elsewhere changes many values by an ulp. To add cases without rewriting "
      "the committed files, use\n")
    w("```\n$HOME/haze-ref-venv/bin/python scripts/make_scheduler_fixtures.py --keep-existing\n```\n")
    w("which leaves every existing `.safetensors` file untouched (it checks them against the "
      "fresh values: same keys and metadata, values within "
      f"{KEEP_RTOL:g} * max(1, |value|)), writes only the missing ones and regenerates this "
      "README from the kept files' own timesteps/sigmas. The original 18 files were "
      "generated on one machine; `euler_karras`, `euler_exponential`, `heun`, "
      "`heun_karras_vpred`, `unipc`, `unipc_karras_vpred`, `dpmpp2m_sde` and "
      "`dpmpp2m_exponential` were added with `--keep-existing` on an AMD EPYC (AVX512).")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def check_cross_case_facts(infos):
    """Facts the README states about the Karras/exponential/Heun cases."""
    ek, ee = infos["euler_karras"], infos["euler_exponential"]
    uk, de = infos["unipc_karras_vpred"], infos["dpmpp2m_exponential"]
    assert uk["sigmas"] == ek["sigmas"] and de["sigmas"] == ee["sigmas"]
    assert uk["timesteps"] == [float(np.round(t)) for t in ek["timesteps"]]
    assert de["timesteps"] == [float(math.trunc(t)) for t in ee["timesteps"]]
    assert de["timesteps"] == [999, 886, 757, 602, 409, 202, 72, 21, 4, 0]
    assert [round(t, 3) for t in ee["timesteps"][1:5]] == [886.399, 757.336, 602.770, 409.974]
    assert round(ee["timesteps"][8], 3) == 4.806
    assert f"{ek['timesteps'][1]:.8g}" == "936.92218" and f"{ek['timesteps'][8]:.8g}" == "18.309189"
    assert f"{uk['timesteps'][1]:.8g}" == "937"
    for name in ("euler_karras", "euler_exponential", "heun_karras_vpred"):
        ts, sg = infos[name]["timesteps"], infos[name]["sigmas"]
        assert ts[0] == 999 and ts[-1] == 0, name
        assert f"{sg[0]:.8g}" == "157.40727" and f"{sg[-2]:.8g}" == "0.01000133", name
    ht = infos["heun"]["timesteps"]
    assert f"{ht[1]:.8g}" == "856.28571" and f"{ht[-3]:.8g}" == "142.71428" and ht[-1] == 0
    assert ht[1] == ht[2] and infos["heun"]["sigmas"][1] == infos["heun"]["sigmas"][2]


KEEP_RTOL = 1e-4  # fresh values vs a kept file: |a - b| <= KEEP_RTOL * max(1, |b|)


def check_kept(path, tensors, meta):
    """A file kept by --keep-existing must hold the same keys and metadata as a fresh run and
    values equal up to float32 rounding (torch's vectorised sqrt/sin round differently on
    different CPUs). Returns the stored tensors."""
    with safe_open(path, framework="pt") as f:
        stored_meta = f.metadata() or {}
        stored = {k: f.get_tensor(k) for k in f.keys()}
    assert set(stored) == set(tensors), (path, sorted(set(stored) ^ set(tensors)))
    fresh_meta = {k: str(v) for k, v in meta.items()}
    assert set(stored_meta) == set(fresh_meta), path
    for k, v in fresh_meta.items():
        if k == "init_noise_sigma":
            assert abs(float(v) - float(stored_meta[k])) <= KEEP_RTOL * max(1.0, abs(float(v))), path
        else:
            assert stored_meta[k] == v, (path, k)
    for k, t in tensors.items():
        r = stored[k]
        assert r.dtype == torch.float32 and r.shape == t.shape, (path, k)
        tol = KEEP_RTOL * torch.clamp(r.abs(), min=1.0)
        assert ((t - r).abs() <= tol).all(), (path, k, (t - r).abs().max().item())
    return stored, stored_meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--keep-existing", action="store_true",
                    help="do not rewrite .safetensors files that already exist in --out-dir; check "
                         "them against the fresh values instead (tolerance KEEP_RTOL) and describe "
                         "the kept files' values in the README")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out_dir, exist_ok=True)

    outputs = []  # (file name, tensors, metadata, description, case name or None)
    tensors, meta, sched_facts = make_schedules()
    outputs.append(("schedules.safetensors", tensors, meta,
                    "betas / alphas_cumprod of 6 training schedules", None))
    infos = {}
    for case in CASES:
        t, m, info = run_trajectory(case)
        infos[case["name"]] = info
        desc = f"{case['cls'].__name__}, {info['steps']} steps"
        if info["n"] != info["steps"]:
            desc += f" ({info['n']} model calls)"
        outputs.append((case["name"] + ".safetensors", t, m, desc, case["name"]))
    check_cross_case_facts(infos)
    t, m = make_add_noise()
    outputs.append(("add_noise.safetensors", t, m, "DDPM add_noise and get_velocity", None))
    t, m = make_posterior()
    outputs.append(("ddpm_posterior.safetensors", t, m,
                    "DDPM posterior variance and mean coefficients", None))

    files = []
    total = 0
    for fname, tensors, meta, desc, case_name in outputs:
        path = os.path.join(args.out_dir, fname)
        if args.keep_existing and os.path.exists(path):
            stored, stored_meta = check_kept(path, tensors, meta)
            if case_name is not None:  # the README describes the file's own values
                info = infos[case_name]
                info["init_sigma"] = float(stored_meta["init_noise_sigma"])
                info["timesteps"] = stored["timesteps"].tolist()
                if info["sigmas"] is not None:
                    info["sigmas"] = stored["sigmas"].tolist()
            action = "kept"
        else:
            write_safetensors(path, tensors, meta)
            check_roundtrip(path, tensors, meta)
            action = "written"
        size = os.path.getsize(path)
        total += size
        files.append((fname, size, desc))
        print(f"{fname} {size}B {len(tensors)} tensors ({action})")
    text = readme(files, sched_facts, infos)
    with open(os.path.join(args.out_dir, "README.md"), "w") as fh:
        fh.write(text)
    total += len(text.encode())
    print(f"total {total} bytes in {args.out_dir}")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"total {total} bytes exceeds {MAX_TOTAL_BYTES}")


if __name__ == "__main__":
    main()
