#!/usr/bin/env python3
"""Whole-command sampling speed: `haze sample` against diffusers' own DDIMPipeline on the same
model, steps and batch, in one run (issue 17).

For each workload (bench_torch.py's configs: fmnist-s, cifar-ddpm, faces-64) the script saves a
randomly initialised diffusers UNet2DModel (seed 0) with a DDIMScheduler config into a temporary
folder, then alternates, `--rounds` times:
  diffusers  DDIMPipeline(unet, scheduler)(batch_size=B, num_inference_steps=S, eta=0,
             output_type="np") with torch.set_num_threads(T), timed with perf_counter
             (one untimed warm-up call first);
  haze       `haze sample --model FOLDER --scheduler ddim --steps S --count B --batch-size B
             --threads T --save-tensor …`, the whole process timed (start-up, model load,
             sampling, writing), as a user runs it.
It prints images per second for both and the ratio haze/diffusers (higher is better for Haze),
medians over the rounds. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment
of both sides (as in speed_table.py). The script runs itself under --python, the interpreter with
torch and diffusers (default ~/haze-ref-venv/bin/python), so any python3 can start it:

    python3 scripts/bench_sample.py --workloads fmnist-s cifar-ddpm faces-64 --steps 20 --rounds 3
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference")
sys.path.insert(0, os.path.abspath(REFERENCE))

BATCHES = {"fmnist-s": 64, "cifar-ddpm": 8, "faces-64": 16}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--haze", default=".build/release/haze")
    ap.add_argument("--workloads", nargs="*", default=["fmnist-s", "cifar-ddpm"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default=os.path.expanduser("~/haze-ref-venv/bin/python"))
    args = ap.parse_args()
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(name, None)
    try:
        import torch
    except ImportError:
        if os.path.abspath(sys.executable) == os.path.abspath(args.python) or not os.access(args.python, os.X_OK):
            sys.exit(f"bench_sample.py: {sys.executable} has no torch, and --python {args.python} is not another "
                     "interpreter to run under (make one with ../shared/reference/setup.sh)")
        os.execv(args.python, [args.python] + sys.argv)
    import bench_torch as bt
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel
    from diffusers.utils import logging
    logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    configs = {name: cfg for name, cfg, _ in bt.WORKLOADS}
    haze = os.path.abspath(args.haze)
    for name in args.workloads:
        batch = BATCHES[name]
        with tempfile.TemporaryDirectory() as folder:
            torch.manual_seed(0)
            unet = UNet2DModel(**configs[name]).eval()
            scheduler = DDIMScheduler()
            unet.save_pretrained(folder, safe_serialization=True)
            scheduler.save_config(folder)
            pipeline = DDIMPipeline(unet=unet, scheduler=scheduler)
            pipeline.set_progress_bar_config(disable=True)

            def diffusers_run():
                with torch.no_grad():
                    pipeline(batch_size=batch, num_inference_steps=args.steps, eta=0.0, output_type="np",
                             generator=torch.Generator().manual_seed(1))

            def haze_run():
                subprocess.run([haze, "sample", "--model", folder, "--scheduler", "ddim", "--steps", str(args.steps),
                                "--count", str(batch), "--batch-size", str(batch), "--threads", str(args.threads),
                                "--save-tensor", os.path.join(folder, "s.safetensors")],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            diffusers_run()
            times = {"diffusers": [], "haze": []}
            for _ in range(args.rounds):
                for side, run in (("diffusers", diffusers_run), ("haze", haze_run)):
                    start = time.perf_counter()
                    run()
                    times[side].append(time.perf_counter() - start)
            d, h = statistics.median(times["diffusers"]), statistics.median(times["haze"])
            print(f"{name}: {batch} images, DDIM {args.steps} steps, {args.threads} threads: "
                  f"diffusers {batch / d:.2f} images/s ({d:.2f} s), haze {batch / h:.2f} images/s ({h:.2f} s, whole command), "
                  f"haze/diffusers {d / h:.2f}x", flush=True)


if __name__ == "__main__":
    main()
