#!/usr/bin/env python3
"""Golden values of DDIM inversion (diffusers' DDIMInverseScheduler) for Haze's `ddimInversion`.

Writes Tests/HazeDiffusionTests/Fixtures/sampling/ddim_inversion_attn.safetensors (committed; CI
has no Python):

  image            [2, 3, 8, 8] the images encoded (a smooth deterministic pattern in [-1, 1])
  x_T              their DDIM code: for t in DDIMInverseScheduler.timesteps (increasing):
                       x = inverse.step(unet(x, t).sample, t, x).prev_sample
  reconstruction   DDIM (eta 0) from x_T with the same steps: DDIMScheduler.step in its loop

Model: the committed random `attn` UNet2DModel (Tests/HazeNNTests/Fixtures/unet/attn). Both
schedulers: linear betas 1e-4..0.02, 1000 steps, "leading" spacing, steps_offset 0,
set_alpha_to_one True, clip_sample False (a random network's clipped loops are chaotic, see
make_sampling_fixtures.py), 10 steps. Metadata: the DDIMScheduler config (json, sorted keys,
without `_use_default_values`) and num_inference_steps.

    $HOME/haze-ref-venv/bin/python scripts/make_inversion_fixture.py [--out-dir DIR]

Determinism: torch.set_num_threads(1), deterministic algorithms, written by
make_tensor_fixtures.write_safetensors.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import diffusers
from diffusers import DDIMInverseScheduler, DDIMScheduler, UNet2DModel

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import write_safetensors  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
MODEL = os.path.join(REPO, "Tests", "HazeNNTests", "Fixtures", "unet", "attn")
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeDiffusionTests", "Fixtures", "sampling")
STEPS = 10


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    unet = UNet2DModel.from_pretrained(MODEL).eval()
    kwargs = dict(clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    forward, inverse = DDIMScheduler(**kwargs), DDIMInverseScheduler(**kwargs)
    forward.set_timesteps(STEPS)
    inverse.set_timesteps(STEPS)
    assert torch.equal(inverse.timesteps, forward.timesteps.flip(0)), (inverse.timesteps, forward.timesteps)

    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    image = torch.stack([torch.stack([torch.sin(2 * xs + c + b) * torch.cos(ys - c) for c in range(3)]) for b in range(2)])
    image = image.to(torch.float32).contiguous()
    with torch.no_grad():
        x = image.clone()
        for t in inverse.timesteps:
            x = inverse.step(unet(x, t).sample, t, x).prev_sample
        code = x.clone()
        for t in forward.timesteps:
            x = forward.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    config = {k: v for k, v in dict(forward.config).items() if k != "_use_default_values"}
    meta = {"scheduler_class": "DDIMScheduler", "scheduler_config": json.dumps(config, sort_keys=True),
            "num_inference_steps": str(STEPS), "model": "Tests/HazeNNTests/Fixtures/unet/attn",
            "diffusers_version": diffusers.__version__,
            "reconstruction_mean_abs_error": repr(float((x - image).abs().mean()))}
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "ddim_inversion_attn.safetensors")
    write_safetensors(path, {"image": image, "x_T": code, "reconstruction": x.contiguous()}, meta)
    print(f"wrote {path}; reconstruction mean |error| {meta['reconstruction_mean_abs_error']}")


if __name__ == "__main__":
    main()
