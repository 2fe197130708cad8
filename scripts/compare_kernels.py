#!/usr/bin/env python3
"""Haze against PyTorch per op, alternating call by call, so that both sides see the same state of the machine.

`bench_torch_kernels.py` then `haze-bench kernels --compare` runs the two sides a minute apart; on a shared
machine whose speed drifts by tens of percent between spells, one round's ratio can land on either side of 1.
Here `haze-bench kernels --serve` runs in a subprocess and this script alternates short bursts: a few PyTorch
calls, then as many Haze calls (the order flips every pair), each call timed inside its own process. The first
call of a burst is a warm-up; the burst's time is the median of the others, so both sides are measured back to
back as in a training loop. A short pause between bursts keeps one side's idle worker threads from spinning
into the other's calls. Each pair of bursts gives a ratio Haze/PyTorch; the table shows the median of those
ratios and their quartiles, and the medians of the two sides' burst times.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $HOME/haze-ref-venv/bin/python scripts/compare_kernels.py \
        --haze-bench .build/release/haze-bench --threads 2 --pairs 30 --filter conv2d
"""
import argparse
import statistics
import subprocess
import time

import torch

from bench_torch_kernels import cases


class HazeServer:
    """`haze-bench kernels --serve`: one timed call per request line."""

    def __init__(self, binary, threads, batch):
        self.process = subprocess.Popen([binary, "kernels", "--serve", "--threads", str(threads), "--batch", str(batch)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            raise SystemExit(f"{binary} kernels --serve answered {ready!r} instead of 'ready'")

    def call(self, mode, name):
        self.process.stdin.write(f"{mode} {name}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        try:
            return float(answer)
        except ValueError:
            raise SystemExit(f"haze-bench: {answer or 'no answer (did it crash?)'}")

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def timed_ms(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def quartiles(values):
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--haze-bench", default=".build/release/haze-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=15, help="timed pairs of bursts per op and mode (after 2 warm-up pairs)")
    ap.add_argument("--burst", type=int, default=4, help="calls per burst; the first is not counted")
    ap.add_argument("--pause", type=float, default=0.01, help="seconds between bursts")
    ap.add_argument("--filter", help="only ops whose name contains this text")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    haze = HazeServer(args.haze_bench, args.threads, args.batch)
    print(f"{'op':36s} {'mode':8s} {'haze ms':>8s} {'torch ms':>9s}  {'ratio haze/torch':>16s}  (quartiles of the pair ratios)")
    for name, inputs, op in cases(args.batch):
        if args.filter and args.filter not in name:
            continue
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        r = torch.randn_like(op(*inputs).detach())

        def forward():
            with torch.no_grad():
                op(*inputs)

        def both():
            for t in leaves:
                t.grad = None
            (op(*leaves) * r).sum().backward()

        for mode, torch_call in [("forward", forward), ("both", both)]:
            hs, ts = [], []
            for i in range(args.pairs + 2):
                order = [0, 1] if i % 2 == 0 else [1, 0]
                pair = [None, None]
                for side in order:
                    time.sleep(args.pause)
                    burst = [haze.call(mode, name) if side == 0 else timed_ms(torch_call) for _ in range(args.burst)]
                    pair[side] = statistics.median(burst[1:])
                if i >= 2:
                    hs.append(pair[0])
                    ts.append(pair[1])
            ratios = [h / t for h, t in zip(hs, ts)]
            lo, hi = quartiles(ratios)
            label = "fwd" if mode == "forward" else "fwd+bwd"
            print(f"{name:36s} {label:8s} {statistics.median(hs):8.2f} {statistics.median(ts):9.2f}  "
                  f"{statistics.median(ratios):15.2f}x  ({lo:.2f}–{hi:.2f})", flush=True)
    haze.close()


if __name__ == "__main__":
    main()
