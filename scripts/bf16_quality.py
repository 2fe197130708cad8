#!/usr/bin/env python3
"""Sample quality of bf16 against float32 (issue 23): FID/KID on Haze's classifier features of
COUNT samples from one model, DDIM-50 and DPM-Solver++ 20, the same seed (the same initial noise)
in both precisions; and the mean |x_bf16 − x_f32| per pixel of the final images (on [−1, 1]).
Standard-library Python; needs a release `haze` and a CPU with AVX512_BF16.

    python3 scripts/bf16_quality.py --model Examples/.build/tutorial-run --count 2000
"""
import argparse
import array
import json
import os
import struct
import subprocess
import sys
import tempfile
import time


def read_tensor(path):
    """The one float32 tensor of a safetensors file, as an array of floats."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    (name, meta), = [(k, v) for k, v in header.items() if k != "__metadata__"]
    start, end = meta["data_offsets"]
    values = array.array("f")
    values.frombytes(data[8 + n + start:8 + n + end])
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--haze", default=".build/release/haze")
    p.add_argument("--model", required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--difference-count", type=int, default=256, help="images for the mean |x_bf16 − x_f32|")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    samplers = [("ddim", 50), ("dpm++2m", 20)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scheduler, steps in samplers:
            result = {"sampler": f"{scheduler} {steps}"}
            tensors = {}
            for precision in ("f32", "bf16"):
                out = os.path.join(tmp, f"{scheduler}-{precision}.json")
                started = time.time()
                subprocess.run([args.haze, "evaluate", "--model", args.model, "--count", str(args.count), "--scheduler", scheduler,
                                "--steps", str(steps), "--seed", str(args.seed), "--batch-size", "250", "--threads", str(args.threads),
                                "--precision", precision, "--json", out], check=True, stdout=subprocess.DEVNULL)
                with open(out) as f:
                    metrics = json.load(f)
                result[precision] = (metrics["fid"], metrics["kid_mean"], metrics["kid_std"], time.time() - started)
                tensor = os.path.join(tmp, f"{scheduler}-{precision}.safetensors")
                subprocess.run([args.haze, "sample", "--model", args.model, "--count", str(args.difference_count), "--scheduler",
                                scheduler, "--steps", str(steps), "--seed", str(args.seed), "--batch-size", "64", "--threads",
                                str(args.threads), "--precision", precision, "--save-tensor", tensor], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                tensors[precision] = read_tensor(tensor)
            a, b = tensors["f32"], tensors["bf16"]
            result["difference"] = sum(abs(x - y) for x, y in zip(a, b)) / len(a)
            result["max_difference"] = max(abs(x - y) for x, y in zip(a, b))
            rows.append(result)
            print(json.dumps(result), file=sys.stderr)
    print(f"| sampler | FID f32 | FID bf16 | bf16/f32 | KID f32 | KID bf16 | mean \\|x_bf16 − x_f32\\| | max |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, b = r["f32"], r["bf16"]
        print(f"| {r['sampler']} | {f[0]:.2f} | {b[0]:.2f} | {b[0] / f[0]:.3f} | {f[1]:.2f} ± {f[2]:.2f} | {b[1]:.2f} ± {b[2]:.2f} "
              f"| {r['difference']:.4f} | {r['max_difference']:.3f} |")


if __name__ == "__main__":
    main()
