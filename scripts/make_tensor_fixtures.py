#!/usr/bin/env python3
"""Generate small PyTorch reference fixtures for the HazeTensor Swift tests.

Writes one safetensors file per case into Tests/HazeTensorTests/Fixtures/
(`<case>.safetensors`). CI has no Python, so the generated files are committed;
re-run this script only when a case is added or changed.

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_tensor_fixtures.py

The venv is made by ../shared/reference/setup.sh (torch CPU + safetensors).
Optional: `--out-dir DIR` writes somewhere else (e.g. to check determinism).

Conventions (the Swift tests depend on them):
- All tensors float32, contiguous, NCHW for images.
- Each case seeds with torch.manual_seed(<fixed per-case seed>). Inputs are float32
  random normals; conv inputs, weights and biases are small integers (randint(-3, 4))
  so the conv forward is exact in float32.
- References are computed in float64 from the stored float32 inputs (forward and
  backward), then stored cast back to float32.
- Keys: inputs by role name (x, weight, bias, query, key, value, running_mean,
  running_var); `out` = forward output; `grad_out` = float32 random normal cotangent of
  out's shape; `grad_<input>` = d(sum(out * grad_out)) / d(input).
- Hyperparameters go in `__metadata__` (string -> string). Padding is always
  "top,bottom,left,right".

Determinism: single-threaded torch, deterministic algorithms, fixed seeds, and the
file is serialized here (sorted header keys, sorted tensor order) instead of by
safetensors.torch.save_file, whose `__metadata__` key order varies from run to run.
Every written file is read back with the safetensors library and compared.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from safetensors import safe_open

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeTensorTests", "Fixtures")
MAX_FILE_BYTES = 100 * 1000


# ---------------------------------------------------------------------------
# Serialization (deterministic safetensors writer)
# ---------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    """Write float32 tensors + string metadata as safetensors, byte-deterministically."""
    # __metadata__ is always written (possibly empty) so every file has the same layout.
    header = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        assert t.dtype == torch.float32, (name, t.dtype)
        t = t.detach().contiguous().cpu()
        data = t.numpy().astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)  # pad header to 8-byte alignment
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def check_roundtrip(path, tensors, metadata):
    with safe_open(path, framework="pt") as f:
        assert set(f.keys()) == set(tensors), (path, sorted(f.keys()))
        assert (f.metadata() or {}) == {k: str(v) for k, v in metadata.items()}, path
        for k, t in tensors.items():
            r = f.get_tensor(k)
            assert r.dtype == torch.float32 and r.shape == t.shape, (path, k)
            assert torch.equal(r, t), (path, k)


# ---------------------------------------------------------------------------
# Case machinery
# ---------------------------------------------------------------------------

def randn(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def randint(*shape):
    return torch.randint(-3, 4, shape).to(torch.float32)


def run_case(name, inputs, fn, metadata, grad_inputs=None, extra=None):
    """inputs: ordered dict role -> float32 tensor (already drawn from the seeded RNG).
    fn(**float64 inputs) -> float64 output. extra(float64 inputs) -> dict of extra
    float64 tensors to store (evaluated after the forward, e.g. updated running stats).
    grad_out is drawn from the same RNG after the inputs."""
    if grad_inputs is None:
        grad_inputs = list(inputs)
    x64 = {}
    for k, v in inputs.items():
        d = v.detach().to(torch.float64).clone()
        if k in grad_inputs:
            d.requires_grad_(True)
        x64[k] = d
    out = fn(**x64)
    grad_out = randn(*out.shape)
    (out * grad_out.to(torch.float64)).sum().backward()

    tensors = {k: v.contiguous() for k, v in inputs.items()}
    tensors["out"] = out.detach().to(torch.float32).contiguous()
    tensors["grad_out"] = grad_out
    for k in grad_inputs:
        tensors["grad_" + k] = x64[k].grad.detach().to(torch.float32).contiguous()
    if extra is not None:
        for k, v in extra(x64).items():
            tensors[k] = v.detach().to(torch.float32).contiguous()
    return name, tensors, {k: str(v) for k, v in metadata.items()}


def pad_str(top, bottom, left, right):
    return f"{top},{bottom},{left},{right}"


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def conv_case(name, seed, x_shape, w_shape, stride, padding):
    torch.manual_seed(seed)
    inputs = {"x": randint(*x_shape), "weight": randint(*w_shape), "bias": randint(w_shape[0])}
    fn = lambda x, weight, bias: F.conv2d(x, weight, bias, stride=stride, padding=padding)
    return run_case(name, inputs, fn,
                    {"stride": stride, "padding": pad_str(padding, padding, padding, padding)})


def conv_asym_case():
    # diffusers Downsample2D(use_conv=True, padding=0): F.pad(x, (0,1,0,1)) then conv s2 p0.
    torch.manual_seed(1003)
    inputs = {"x": randint(2, 4, 8, 8), "weight": randint(4, 4, 3, 3), "bias": randint(4)}

    def fn(x, weight, bias):
        xp = F.pad(x, (0, 1, 0, 1))  # (left, right, top, bottom)
        return F.conv2d(xp, weight, bias, stride=2, padding=0)

    return run_case("conv2d_3x3_stride2_asym", inputs, fn,
                    {"stride": 2, "padding": pad_str(0, 1, 0, 1)})


def group_norm_case(name, seed, x_shape, groups, eps):
    torch.manual_seed(seed)
    c = x_shape[1]
    inputs = {"x": randn(*x_shape), "weight": randn(c), "bias": randn(c)}
    fn = lambda x, weight, bias: F.group_norm(x, groups, weight, bias, eps)
    return run_case(name, inputs, fn, {"groups": groups, "eps": repr(eps)})


def batch_norm_case(name, seed, training):
    torch.manual_seed(seed)
    momentum, eps = 0.1, 1e-5
    inputs = {
        "x": randn(4, 3, 5, 5),
        "weight": randn(3),
        "bias": randn(3),
        "running_mean": randn(3),
        "running_var": torch.rand(3, dtype=torch.float32) + 0.5,  # in [0.5, 1.5)
    }

    def fn(x, weight, bias, running_mean, running_var):
        # F.batch_norm updates running_mean / running_var in place in training mode.
        return F.batch_norm(x, running_mean, running_var, weight, bias,
                            training=training, momentum=momentum, eps=eps)

    extra = None
    if training:
        extra = lambda t: {"running_mean_after": t["running_mean"],
                           "running_var_after": t["running_var"]}
    meta = {"momentum": repr(momentum), "eps": repr(eps),
            "training": "1" if training else "0"}
    if training:
        # PyTorch updates running_var with the unbiased (N-1) batch variance.
        meta["running_var_update"] = "unbiased"
    return run_case(name, inputs, fn, meta, grad_inputs=["x", "weight", "bias"], extra=extra)


def attention_case(name, seed, q_shape, k_shape, v_shape):
    torch.manual_seed(seed)
    inputs = {"query": randn(*q_shape), "key": randn(*k_shape), "value": randn(*v_shape)}
    fn = lambda query, key, value: F.scaled_dot_product_attention(query, key, value)
    scale = 1.0 / math.sqrt(q_shape[-1])
    return run_case(name, inputs, fn, {"scale": repr(scale), "causal": "0"})


def softmax_case(name, seed, log, dim):
    torch.manual_seed(seed)
    inputs = {"x": randn(3, 4, 5)}
    op = F.log_softmax if log else F.softmax
    return run_case(name, inputs, lambda x: op(x, dim=dim), {"axis": dim})


def linear_case():
    torch.manual_seed(1012)
    inputs = {"x": randn(3, 4, 6), "weight": randn(5, 6), "bias": randn(5)}
    return run_case("linear", inputs, lambda x, weight, bias: F.linear(x, weight, bias), {})


def layer_norm_case():
    torch.manual_seed(1013)
    eps = 1e-5
    inputs = {"x": randn(3, 4, 10), "weight": randn(10), "bias": randn(10)}
    fn = lambda x, weight, bias: F.layer_norm(x, (10,), weight, bias, eps)
    return run_case("layer_norm", inputs, fn, {"eps": repr(eps), "normalized_shape": "10"})


def all_cases():
    yield conv_case("conv2d_3x3_pad1", 1001, (2, 3, 7, 6), (4, 3, 3, 3), 1, 1)
    yield conv_case("conv2d_3x3_stride2_pad1", 1002, (2, 3, 8, 7), (5, 3, 3, 3), 2, 1)
    yield conv_asym_case()
    yield conv_case("conv2d_1x1", 1004, (2, 5, 4, 4), (3, 5, 1, 1), 1, 0)
    yield group_norm_case("group_norm", 1005, (2, 8, 5, 5), 4, 1e-5)
    yield group_norm_case("group_norm_eps6", 1006, (3, 6, 4, 4), 3, 1e-6)
    yield batch_norm_case("batch_norm_train", 1007, training=True)
    yield batch_norm_case("batch_norm_eval", 1008, training=False)
    yield attention_case("attention", 1009, (2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7))
    # fmnist-s attention block geometry: 49 tokens (7x7), head width 8. The model has
    # 16 heads at batch 64; [1,4,49,8] keeps the token/width geometry while keeping the
    # file (8 tensors) under 100 KB ([2,16,49,8] would be ~400 KB).
    yield attention_case("attention_fmnist", 1010, (1, 4, 49, 8), (1, 4, 49, 8), (1, 4, 49, 8))
    yield softmax_case("softmax_axis1", 1011, log=False, dim=1)
    yield softmax_case("log_softmax_last", 1014, log=True, dim=-1)
    yield linear_case()
    yield layer_norm_case()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out_dir, exist_ok=True)

    total = 0
    for name, tensors, meta in all_cases():
        path = os.path.join(args.out_dir, name + ".safetensors")
        write_safetensors(path, tensors, meta)
        check_roundtrip(path, tensors, meta)
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            sys.exit(f"{name}: {size} bytes exceeds {MAX_FILE_BYTES}")
        total += size
        shapes = " ".join(f"{k}{list(t.shape)}" for k, t in tensors.items())
        metas = ",".join(f"{k}={v}" for k, v in sorted(meta.items()))
        print(f"{name}.safetensors {size}B {shapes} {{{metas}}}")
    print(f"total {total} bytes in {args.out_dir}")


if __name__ == "__main__":
    main()
