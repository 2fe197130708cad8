#!/usr/bin/env bash
# Data-parallel training throughput on this machine, Haze and PyTorch DDP in one run:
# fmnist-s at global batch 64, 1 rank × 1 thread, 2 ranks × 1 thread, 1 rank × 2 threads.
#   scripts/bench_ddp.sh [PYTHON]      (PYTHON: the reference venv's, default ~/haze-ref-venv/bin/python)
# Run from the repository root after `swift build -c release --product haze-bench`. OPENBLAS_* unset,
# as for every benchmark.
set -euo pipefail
PY="${1:-$HOME/haze-ref-venv/bin/python}"
BENCH=.build/release/haze-bench
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
echo "PyTorch DDP (gloo), ../shared/reference/ddp_scaling.py:"
torch=$(run "$PY" ../shared/reference/ddp_scaling.py | tail -1)
echo "  $torch"
h11=$(run "$BENCH" ddp --threads 1)
h21=$(run mpirun -np 2 --bind-to core "$BENCH" ddp --threads 1)
h12=$(run "$BENCH" ddp --threads 2)
h21n=$(run mpirun -np 2 --bind-to core "$BENCH" ddp --threads 1 --bucket-mb 0)
for line in "$h11" "$h21" "$h12" "$h21n"; do echo "Haze: $line"; done
"$PY" - "$torch" "$h11" "$h21" "$h12" "$h21n" <<'PYEOF'
import json, sys
t = json.loads(sys.argv[1]); h = [json.loads(a) for a in sys.argv[2:]]
ms = [x["step_ms_median"] for x in h]
print(f"step ms, Haze / PyTorch: 1x1 {ms[0]:.0f} / {t['1x1']:.0f} ({ms[0]/t['1x1']:.2f}x), "
      f"2x1 {ms[1]:.0f} / {t['2x1']:.0f} ({ms[1]/t['2x1']:.2f}x), 1x2 {ms[2]:.0f} / {t['1x2']:.0f} ({ms[2]/t['1x2']:.2f}x)")
print(f"speed-up over 1x1: Haze 2x1 {ms[0]/ms[1]:.2f}x, 1x2 {ms[0]/ms[2]:.2f}x; "
      f"PyTorch 2x1 {t['speedup_2x1_over_1x1']:.2f}x, 1x2 {t['speedup_1x2_over_1x1']:.2f}x")
hidden = h[3]['exposed_ms'] - h[1]['exposed_ms']
print(f"Haze 2x1: one blocking allreduce of the {h[1]['gradient_mb']:.1f} MB of gradients {h[1]['allreduce_ms']:.1f} ms; wait at the end "
      f"of the backward pass {h[1]['exposed_ms']:.1f} ms with 4 MB buckets, {h[3]['exposed_ms']:.1f} ms with one bucket after it "
      f"(step {h[3]['step_ms_median']:.0f} ms): the buckets hide {hidden:.1f} ms of {h[1]['allreduce_ms']:.1f} "
      f"({100 * hidden / max(h[1]['allreduce_ms'], 1e-9):.0f} %)")
PYEOF
