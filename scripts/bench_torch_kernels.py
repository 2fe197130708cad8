#!/usr/bin/env python3
"""PyTorch CPU timings of the ops that `haze-bench kernels` times, at the same shapes and with the
same protocol (3 warm-up calls, median of 10), written as JSON keyed by the same case names:

    {"conv2d 3x3 [64,64,28,28]->64": {"forward_ms": ..., "forward_backward_ms": ...}, ...}

Run with the reference virtualenv (../shared/reference/setup.sh), 2 threads, BLAS overrides unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $HOME/haze-ref-venv/bin/python \
        scripts/bench_torch_kernels.py --threads 2 --out /tmp/torch-kernels.json
    .build/release/haze-bench kernels --compare /tmp/torch-kernels.json

forward+backward = forward, then autograd backward of sum(out * r) with a fixed cotangent r,
gradients for every input (as Haze's valueWithGradient does).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def cases(n):
    out = []

    def conv(c, o, hw, k=3, stride=1):
        x, w, b = torch.randn(n, c, hw, hw), torch.randn(o, c, k, k) * 0.05, torch.zeros(o)
        name = f"conv2d {k}x{k}{f' s{stride}' if stride > 1 else ''} [{n},{c},{hw},{hw}]->{o}"
        out.append((name, [x, w, b], lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=k // 2)))

    conv(32, 32, 28)
    conv(64, 64, 28)
    conv(64, 64, 14)
    conv(32, 32, 28, stride=2)
    conv(64, 64, 14, stride=2)
    conv(128, 128, 7)
    conv(256, 128, 7)
    conv(96, 32, 28, k=1)
    conv(128, 384, 7, k=1)
    for c, hw in [(32, 28), (128, 7)]:
        out.append((f"group norm [{n},{c},{hw},{hw}] g8", [torch.randn(n, c, hw, hw), torch.ones(c), torch.zeros(c)],
                    lambda x, w, b: F.group_norm(x, 8, w, b)))
    x = torch.randn(n, 64, 28, 28)
    out.append((f"silu [{n},64,28,28]", [x], F.silu))
    out.append((f"add [{n},64,28,28]", [x, x.clone()], lambda a, b: a + b))
    q, k, v = (torch.randn(n, 16, 49, 8) for _ in range(3))
    out.append((f"attention [{n},16 heads,49,8]", [q, k, v], F.scaled_dot_product_attention))
    out.append((f"linear [{n * 49},128]->384", [torch.randn(n * 49, 128), torch.randn(384, 128) * 0.05, torch.zeros(384)],
                F.linear))
    out.append((f"softmax [{n * 16},49,49]", [torch.randn(n * 16, 49, 49)], lambda s: s.softmax(-1)))
    return out


def median_ms(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    for name, inputs, op in cases(args.batch):
        with torch.no_grad():
            fwd = median_ms(lambda: op(*inputs))
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        r = torch.randn_like(op(*inputs).detach())

        def both():
            for t in leaves:
                t.grad = None
            (op(*leaves) * r).sum().backward()

        results[name] = {"forward_ms": fwd, "forward_backward_ms": median_ms(both)}
        print(f"{name:36s} {fwd:8.2f} {results[name]['forward_backward_ms']:10.2f}")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
