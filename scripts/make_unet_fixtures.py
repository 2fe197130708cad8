#!/usr/bin/env python3
"""Generate tiny diffusers UNet2DModel reference fixtures for the HazeNN Swift tests.

Writes one folder per case into Tests/HazeNNTests/Fixtures/unet/<case>/. CI has no Python,
so the generated files are committed; re-run this script only when a case is added or
changed. Each case folder holds:

  config.json                         exactly what UNet2DModel.save_pretrained writes
  diffusion_pytorch_model.safetensors (safe_serialization=True, float32 weights)
  io.safetensors      sample [B,C,H,W]; timesteps [B] (float32 holding integers);
                      class_labels [B] (float32 holding integers; class-conditional cases
                      only); out = model(sample, timesteps, class_labels).sample; target
                      (random normal, shape of out); loss [1] = F.mse_loss(out, target)
                      (mean); losses [3] = the loss at each AdamW step, before its update
  grads.safetensors   d loss / d parameter for every parameter, keyed by state_dict name
  adamw3.safetensors  every parameter after 3 torch.optim.AdamW steps (zero_grad, forward,
                      mse, backward, step; same sample/timesteps/target each step), keyed by
                      state_dict name; hyperparameters in __metadata__

The `legacy_names` case is `attn` re-saved with the pre-0.14 attention key names (query,
key, value, proj_attn instead of to_q, to_k, to_v, to_out.0); it has only config.json,
the weights and io.safetensors (identical to attn's).

Run from the repository root (/work/main):

    $HOME/haze-ref-venv/bin/python scripts/make_unet_fixtures.py
    $HOME/haze-ref-venv/bin/python scripts/make_unet_fixtures.py --out-dir /tmp/unet  # elsewhere

Check that a model folder written by Haze loads in diffusers and reproduces an output:

    $HOME/haze-ref-venv/bin/python scripts/make_unet_fixtures.py \\
        --check-haze-folder DIR --io FILE

loads DIR with UNet2DModel.from_pretrained, runs it on `sample`, `timesteps` (and
`class_labels` if present) from FILE, prints the max abs difference to FILE's `out`, and
exits non-zero if max|diff| / max|out| > 1e-4 or if any weight was missing, unexpected or
of the wrong shape.

Conventions (the Swift tests depend on them):
- All tensors float32. Every parameter is re-initialised after construction (so that
  zero-initialised layers such as conv_out and attention to_out do not hide bugs):
  GroupNorm weight 1 + 0.1*N(0,1), GroupNorm bias 0.1*N(0,1), every other bias 0.1*N(0,1),
  every other weight (conv, linear, embedding) 0.2*N(0,1).
- The forward/backward runs in model.eval() mode, float32, single-threaded, deterministic.
- Timesteps are passed to diffusers as a float32 tensor (diffusers casts to float32 inside
  get_timestep_embedding anyway; the script asserts that int64 timesteps give a bit-identical
  out). class_labels are passed as int64 (nn.Embedding needs integer indices).

Determinism: fixed seeds, torch.set_num_threads(1), torch.use_deterministic_algorithms(True).
config.json and diffusion_pytorch_model.safetensors come from save_pretrained (its only
safetensors metadata key is "format", so its header order is fixed); every other file is
written by make_tensor_fixtures.write_safetensors (sorted tensor names, sorted metadata) and
read back with the safetensors library. Every saved model folder is reloaded with
UNet2DModel.from_pretrained and must reproduce `out` bit for bit.
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only; never touch the network

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from diffusers import UNet2DModel
from diffusers.utils import logging as diffusers_logging

diffusers_logging.set_verbosity_error()  # hide the "accelerate not found" notice on every load

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import check_roundtrip, write_safetensors  # noqa: E402

REPO = os.path.dirname(SCRIPTS)
DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeNNTests", "Fixtures", "unet")
MAX_CASE_BYTES = 620 * 1000
MAX_TOTAL_BYTES = 3 * 1000 * 1000
WEIGHTS = "diffusion_pytorch_model.safetensors"
CHECK_REL_TOL = 1e-4

ADAMW = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
ADAMW_STEPS = 3

# ---------------------------------------------------------------------------
# Cases. Channel counts are tiny so that each case folder (weights + grads + adamw3 =
# 12 bytes per parameter) stays under ~600 KB and all of them under 3 MB.
# ---------------------------------------------------------------------------

ATTN_CONFIG = dict(
    sample_size=8, in_channels=3, out_channels=3,
    block_out_channels=(8, 16), layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4, attention_head_dim=8,  # 16 channels / 8 = 2 heads
)

CASES = [
    dict(name="attn", seed=2001, batch=2, timesteps=[10, 500], class_labels=None,
         config=ATTN_CONFIG),
    dict(name="scale_shift_pad0", seed=2002, batch=2, timesteps=[1, 999], class_labels=None,
         config=dict(
             sample_size=8, in_channels=1, out_channels=1,
             block_out_channels=(8, 12), layers_per_block=2,  # group sizes 2 and 3
             down_block_types=("DownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "UpBlock2D"),
             norm_num_groups=4, resnet_time_scale_shift="scale_shift",
             downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
             add_attention=False)),
    dict(name="class_cond", seed=2003, batch=2, timesteps=[250, 37], class_labels=[3, 7],
         config=dict(
             sample_size=8, in_channels=1, out_channels=1,
             block_out_channels=(8, 16), layers_per_block=1,
             down_block_types=("DownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "UpBlock2D"),
             norm_num_groups=4, attention_head_dim=4,  # 16 / 4 = 4 heads
             num_class_embeds=10)),
    # google/ddpm-cifar10-32 ((128, 256, 256, 256), 32 groups) shrunk to (4, 8, 8, 8), 2 groups.
    dict(name="cifar_like", seed=2004, batch=1, timesteps=[123], class_labels=None,
         config=dict(
             sample_size=8, in_channels=3, out_channels=3,
             block_out_channels=(4, 8, 8, 8), layers_per_block=2,
             down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
             norm_num_groups=2, attention_head_dim=None,  # diffusers: head dim = channels, 1 head
             downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
             center_input_sample=False, norm_eps=1e-6, act_fn="silu")),
]

# Current -> legacy attention parameter names (diffusers < 0.14 AttentionBlock).
LEGACY_RENAMES = [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."),
                  (".to_out.0.", ".proj_attn.")]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def setup_torch():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def reinit_parameters(model, gen):
    """Re-initialise EVERY parameter with non-trivial random values (see docstring)."""
    done = set()
    with torch.no_grad():
        for mname, module in model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                if isinstance(module, nn.GroupNorm):
                    p.copy_(1.0 + 0.1 * noise if pname == "weight" else 0.1 * noise)
                elif pname == "bias":
                    p.copy_(0.1 * noise)
                else:
                    p.copy_(0.2 * noise)
                done.add(full)
    names = set(model.state_dict())
    assert done == names, sorted(done ^ names)


def run_model(model, sample, timesteps, class_labels):
    labels = None if class_labels is None else class_labels.to(torch.long)
    return model(sample, timesteps, class_labels=labels).sample


def read_safetensors(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})


def save(path, tensors, meta):
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in meta.items()}
    write_safetensors(path, tensors, meta)
    check_roundtrip(path, tensors, meta)


def load_checked(folder):
    """from_pretrained + a list of loading problems (missing/unexpected/mismatched keys)."""
    model, info = UNet2DModel.from_pretrained(folder, output_loading_info=True)
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            problems.append(f"{key}: {info[key]}")
    return model.float().eval(), problems


def folder_bytes(folder):
    return {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}


# ---------------------------------------------------------------------------
# Fixture generation
# ---------------------------------------------------------------------------

def make_case(case, root):
    name, seed, cfg, batch = case["name"], case["seed"], case["config"], case["batch"]
    folder = os.path.join(root, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)

    torch.manual_seed(seed)
    model = UNet2DModel(**cfg)
    reinit_parameters(model, torch.Generator().manual_seed(seed))
    model.eval()
    params = dict(model.named_parameters())
    assert list(params) == list(model.state_dict()), "parameters and state_dict differ"

    dgen = torch.Generator().manual_seed(seed + 100)
    hw = cfg["sample_size"]
    sample = torch.randn(batch, cfg["in_channels"], hw, hw, generator=dgen)
    target = torch.randn(batch, cfg["out_channels"], hw, hw, generator=dgen)
    assert len(case["timesteps"]) == batch and len(set(case["timesteps"])) == batch
    timesteps = torch.tensor(case["timesteps"], dtype=torch.float32)
    class_labels = None
    if case["class_labels"] is not None:
        class_labels = torch.tensor(case["class_labels"], dtype=torch.float32)

    # save_pretrained BEFORE any optimizer step: the folder holds the initial weights.
    model.save_pretrained(folder, safe_serialization=True)
    assert sorted(os.listdir(folder)) == ["config.json", WEIGHTS], os.listdir(folder)

    # Reference forward / backward at the initial weights.
    model.zero_grad(set_to_none=True)
    out = run_model(model, sample, timesteps, class_labels)
    loss = F.mse_loss(out, target)
    loss.backward()
    out = out.detach().clone()
    grads = {}
    for k, p in params.items():
        assert p.grad is not None, f"{name}: {k} has no gradient"
        grads[k] = p.grad.detach().clone()
    model.zero_grad(set_to_none=True)

    with torch.no_grad():
        # int64 timesteps give the same result as float32 ones.
        out_long = run_model(model, sample, timesteps.to(torch.long), class_labels)
        assert torch.equal(out_long, out), f"{name}: int64 vs float32 timesteps differ"
    # from_pretrained of the saved folder reproduces out exactly.
    reloaded, problems = load_checked(folder)
    assert not problems, (name, problems)
    with torch.no_grad():
        assert torch.equal(run_model(reloaded, sample, timesteps, class_labels), out), name

    # AdamW, 3 steps.
    opt = torch.optim.AdamW(model.parameters(), lr=ADAMW["lr"], betas=ADAMW["betas"],
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])
    losses = []
    for step in range(ADAMW_STEPS):
        opt.zero_grad()
        o = run_model(model, sample, timesteps, class_labels)
        step_loss = F.mse_loss(o, target)
        losses.append(step_loss.detach().clone())
        step_loss.backward()
        if step == 0:
            assert torch.equal(o.detach(), out), name
            for k, p in params.items():
                assert torch.equal(p.grad, grads[k]), (name, k)
        opt.step()
    adamw3 = {k: p.detach().clone() for k, p in params.items()}

    io = {"sample": sample, "timesteps": timesteps, "out": out, "target": target,
          "loss": loss.detach().reshape(1), "losses": torch.stack(losses)}
    if class_labels is not None:
        io["class_labels"] = class_labels
    io_meta = {"case": name, "loss": "F.mse_loss(out, target), mean reduction",
               "mode": "eval", "losses": "loss before each AdamW step's update"}
    save(os.path.join(folder, "io.safetensors"), io, io_meta)
    save(os.path.join(folder, "grads.safetensors"), grads,
         {"case": name, "of": "loss in io.safetensors"})
    beta1, beta2 = ADAMW["betas"]
    save(os.path.join(folder, "adamw3.safetensors"), adamw3, {
        "case": name, "optimizer": "torch.optim.AdamW", "steps": ADAMW_STEPS,
        "lr": repr(ADAMW["lr"]), "betas": f"{beta1!r},{beta2!r}", "beta1": repr(beta1),
        "beta2": repr(beta2), "eps": repr(ADAMW["eps"]),
        "weight_decay": repr(ADAMW["weight_decay"]), "amsgrad": "0", "maximize": "0"})

    # The --check-haze-folder path on our own folder.
    rel = check_folder(folder, os.path.join(folder, "io.safetensors"), quiet=True)
    assert rel == 0.0, (name, rel)

    nparams = sum(p.numel() for p in params.values())
    gnorm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())).item()
    stats = (f"max|out| {out.abs().max().item():.3f}  loss {loss.item():.5f}  "
             f"losses {[round(x.item(), 5) for x in losses]}  |grad| {gnorm:.3f}")
    return folder, nparams, len(params), stats


def make_legacy_case(root, attn_folder):
    """`attn` with legacy attention key names; checks that diffusers converts them on load."""
    name = "legacy_names"
    folder = os.path.join(root, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    shutil.copyfile(os.path.join(attn_folder, "config.json"), os.path.join(folder, "config.json"))
    shutil.copyfile(os.path.join(attn_folder, "io.safetensors"),
                    os.path.join(folder, "io.safetensors"))

    weights, wmeta = read_safetensors(os.path.join(attn_folder, WEIGHTS))
    legacy, renamed = {}, 0
    for k, v in weights.items():
        new = k
        if ".attentions." in k:
            for cur, old in LEGACY_RENAMES:
                new = new.replace(cur, old)
        renamed += new != k
        legacy[new] = v
    assert renamed > 0 and len(legacy) == len(weights)
    save(os.path.join(folder, WEIGHTS), legacy, wmeta)  # wmeta == {"format": "pt"}

    # Does diffusers still convert the legacy names?
    model, problems = load_checked(folder)
    attn_model, _ = load_checked(attn_folder)
    same_weights = all(torch.equal(a, b) for a, b in
                       zip(model.state_dict().values(), attn_model.state_dict().values()))
    rel = check_folder(folder, os.path.join(folder, "io.safetensors"), quiet=True)
    ok = not problems and same_weights and rel == 0.0
    note = ("diffusers converts legacy names: loads, same weights, bit-identical out" if ok else
            f"diffusers does NOT convert legacy names: problems={problems} "
            f"same_weights={same_weights} rel={rel}")
    nparams = sum(v.numel() for v in legacy.values())
    return folder, nparams, len(legacy), f"{renamed} keys renamed; {note}", ok


# ---------------------------------------------------------------------------
# --check-haze-folder
# ---------------------------------------------------------------------------

def check_folder(folder, io_path, quiet=False):
    """Returns max|diff| / max|out| (inf on loading problems); prints a line unless quiet."""
    model, problems = load_checked(folder)
    io, _ = read_safetensors(io_path)
    labels = io.get("class_labels")
    with torch.no_grad():
        pred = run_model(model, io["sample"].float(), io["timesteps"].float(), labels)
    ref = io["out"].float()
    if pred.shape != ref.shape:
        problems.append(f"out shape {list(pred.shape)} != {list(ref.shape)}")
        diff, rel = float("inf"), float("inf")
    else:
        diff = (pred - ref).abs().max().item()
        rel = diff / max(ref.abs().max().item(), 1e-30)
    if problems:
        rel = float("inf")
    if not quiet:
        for p in problems:
            print(f"loading problem: {p}")
        print(f"max abs diff {diff:.3e}  max|out| {ref.abs().max().item():.3e}  "
              f"relative {rel:.3e}  (tolerance {CHECK_REL_TOL:g})")
    return rel


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT, help="root folder for the case folders")
    ap.add_argument("--check-haze-folder", metavar="DIR",
                    help="check that a saved model folder loads in diffusers and reproduces --io")
    ap.add_argument("--io", metavar="FILE", help="io.safetensors-like file for --check-haze-folder")
    args = ap.parse_args()
    setup_torch()

    if args.check_haze_folder:
        if not args.io:
            ap.error("--check-haze-folder needs --io FILE")
        try:
            rel = check_folder(args.check_haze_folder, args.io)
        except Exception as e:  # e.g. a config that does not load, or inputs that do not fit
            print(f"check failed: {type(e).__name__}: {e}")
            sys.exit(1)
        sys.exit(0 if rel <= CHECK_REL_TOL else 1)  # NaN also fails

    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    for case in CASES:
        rows.append(make_case(case, args.out_dir))
    attn_folder = os.path.join(args.out_dir, "attn")
    folder, n, count, note, legacy_ok = make_legacy_case(args.out_dir, attn_folder)
    rows.append((folder, n, count, note))

    total = 0
    for folder, nparams, count, stats in rows:
        sizes = folder_bytes(folder)
        case_total = sum(sizes.values())
        total += case_total
        print(f"{os.path.basename(folder)}: {nparams} parameters in {count} tensors, "
              f"{case_total} bytes")
        for f, s in sizes.items():
            print(f"    {f:40s} {s:8d}")
        print(f"    {stats}")
        if case_total > MAX_CASE_BYTES:
            sys.exit(f"{folder}: {case_total} bytes exceeds {MAX_CASE_BYTES}")
    print(f"total {total} bytes in {args.out_dir}")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"total {total} bytes exceeds {MAX_TOTAL_BYTES}")
    if not legacy_ok:
        print("WARNING: diffusers did not load the legacy attention names (see above)")


if __name__ == "__main__":
    main()
