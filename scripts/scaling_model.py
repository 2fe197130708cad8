#!/usr/bin/env python3
"""Predicted efficiency of data-parallel training over several hosts (Documentation/distributed.md).

Each host is one of this project's 2-core machines running one rank with 2 threads on its own
batch (weak scaling: the global batch grows with the hosts). Per step, a ring allreduce sends and
receives 2(N-1)/N x G bytes per rank (G: the gradient bytes) in 2(N-1) messages; with overlap, the
buckets travel during the backward pass, so only what does not fit in it, or at least the last
4 MB bucket, is exposed. Efficiency = step / (step + exposed communication).

The inputs are measured on this machine (commit and commands in Documentation/distributed.md):
  step    haze-bench ddp --config C --batch B --threads 2 (AdamW, no EMA or clipping)
  forward haze-bench unet --config C --batch B --mode infer; backward window = step - forward
  G       haze-bench ddp's gradient_mb
Run: python3 scripts/scaling_model.py [--latency-us 30]  (standard library only)
"""
import argparse

MEASURED = {  # name: (per-host batch, step ms, forward ms, gradient MB)
    "fmnist-s": (64, 725.0, 203.4, 15.76),
    "cifar-ddpm": (8, 1210.3, 353.2, 142.99),
}
BUCKET_MB = 4.194304

parser = argparse.ArgumentParser()
parser.add_argument("--latency-us", type=float, default=30.0, help="per-message latency of the network (TCP: tens of µs)")
args = parser.parse_args()

print("| model (per-host batch) | hosts | link | bytes per rank per step | allreduce | efficiency, no overlap | with overlap |")
print("|---|---|---|---|---|---|---|")
for name, (batch, step, forward, grad_mb) in MEASURED.items():
    window = step - forward
    for hosts in (8, 32):
        for gbit in (10, 25, 100):
            sent_mb = 2 * (hosts - 1) / hosts * grad_mb
            comm = sent_mb * 8 / (gbit * 1000) * 1000 + 2 * (hosts - 1) * args.latency_us / 1000  # ms
            last = comm * min(1.0, BUCKET_MB / grad_mb)
            exposed = max(comm - window, last)
            print(f"| {name} ({batch}) | {hosts} | {gbit} Gb/s | {sent_mb:.1f} MB | {comm:.1f} ms | "
                  f"{100 * step / (step + comm):.1f} % | {100 * step / (step + exposed):.1f} % |")
