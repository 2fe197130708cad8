#!/usr/bin/env python3
"""Convert a checkpoint of the U-Net of github.com/Yukino1010/Diffusion_Model (diffusion.ipynb) into a
Haze model folder.

The notebook saves `tf.train.Checkpoint(u_net=u_net)` through a `tf.train.CheckpointManager`
(results/models_weight/ckpt-N.index + ckpt-N.data-00000-of-00001). This script reads such a
checkpoint by variable name only (tf.train.load_checkpoint / list_variables; the model is not
rebuilt), in either layout:

  Keras 2 (tf-keras, TF <= 2.15 or TF_USE_LEGACY_KERAS=1):  u_net/layer_with_weights-N/...
  Keras 3 (a Keras 3 port of the notebook):                 u_net/_operations/N/...

The layers are taken in checkpoint order (N ascending) and parsed against the notebook's
architecture (time MLP, 1x1 init conv, down blocks of residual blocks + linear attention, middle
residual blocks, up blocks, final residual block, final 1x1 conv); the channel widths, the number of
residual blocks per level and the number of levels are inferred from the shapes, and every shape is
checked. The image size is not stored in a checkpoint: give it with --image-size (default 64, the
notebook's).

OUT_DIR receives, atomically (written into OUT_DIR.tmp-XXXX, then renamed):
  config.json                          {"_class_name": "TFArticleUNet", ...}
  diffusion_pytorch_model.safetensors  float32, Haze names, PyTorch layouts
  scheduler_config.json                DDIMScheduler reproducing the notebook's schedule
The layouts, names and fields are specified in Documentation/tf-article-network.md.

Bad input (a prefix that does not exist, a missing or unreadable .index or data file, a checkpoint without
the u_net root or of another network) stops with exit status 1 and one "error: FILE: ..." line naming the
file and what is wrong; OUT_DIR is then left as it was. Tested by scripts/test_convert_notebook_checkpoint.py.

Usage:
  python3 scripts/convert_notebook_checkpoint.py results/models_weight/ckpt-5 OUT_DIR [--image-size 64]
"""
import argparse
import glob
import json
import os
import re
import shutil
import struct
import sys
import tempfile

REQUIREMENTS = ("Needs Python 3 with tensorflow-cpu, tf-keras, numpy and safetensors (pip install "
                "tensorflow-cpu tf-keras numpy safetensors) and nothing else.")

CLASS_NAME = "TFArticleUNet"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
CONFIG_FILE = "config.json"
SCHEDULER_FILE = "scheduler_config.json"

# Notebook constants that a checkpoint cannot tell.
NOTEBOOK_DEFAULTS = {
    "attention_heads": 4,        # LinearAttention(dim, heads=4, dim_head=32)
    "norm_num_groups": 8,        # tfa.layers.GroupNormalization(8, epsilon=1e-05)
    "norm_eps": 1e-5,
    "attention_norm_eps": 1e-3,  # keras LayerNormalization() default epsilon
    "max_positions": 10000,      # SinusoidalPosEmb(dim=32, max_positions=10000)
}


class ConversionError(Exception):
    pass


def missing_requirement(modules, requirements=REQUIREMENTS):
    """None when every module imports, else the "error: ..." line to print (the import's message
    and the requirements)."""
    import importlib
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as e:
        return f"error: {e}. {requirements}"
    return None


# ---------------------------------------------------------------------------
# Checkpoint files
# ---------------------------------------------------------------------------

def resolve_prefix(path):
    """Returns the checkpoint prefix for PATH (a prefix, a .index/.data file, or a directory with a
    `checkpoint` file as CheckpointManager writes), after checking that its files exist."""
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if not os.path.isfile(state):
            raise ConversionError(f"{path}: is a directory without a 'checkpoint' file; give a checkpoint "
                                  f"prefix such as {os.path.join(path, 'ckpt-5')}")
        latest = None
        with open(state, encoding="utf-8") as f:
            for line in f:
                m = re.match(r'\s*model_checkpoint_path:\s*"(.*)"\s*$', line)
                if m:
                    latest = m.group(1)
                    break
        if not latest:
            raise ConversionError(f"{state}: names no model_checkpoint_path")
        path = latest if os.path.isabs(latest) else os.path.join(path, latest)
    m = re.match(r"^(.*)\.(index|data-\d{5}-of-\d{5})$", path)
    if m:
        path = m.group(1)
    index = path + ".index"
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    if not os.path.isdir(directory):
        raise ConversionError(f"{path}: checkpoint prefix not found (no directory {directory})")
    shards = sorted(n for n in os.listdir(directory) if re.fullmatch(re.escape(base) + r"\.data-\d{5}-of-\d{5}", n))
    if not os.path.isfile(index):
        if not shards:
            raise ConversionError(f"{path}: checkpoint prefix not found (neither {index} nor "
                                  f"{path}.data-00000-of-00001 exists)")
        raise ConversionError(f"{index}: missing (the checkpoint's .index file; its data files are there)")
    if not shards:
        raise ConversionError(f"{path}.data-00000-of-00001: missing (the checkpoint's data file; only "
                              f"{index} is there)")
    total = int(shards[0][-5:])
    for i in range(total):
        shard = f"{path}.data-{i:05d}-of-{total:05d}"
        if not os.path.isfile(shard):
            raise ConversionError(f"{shard}: missing (data shard {i + 1} of {total})")
    return path


def read_checkpoint(prefix):
    """{key: numpy array} for every variable in the checkpoint. A file that cannot be read is named: the
    .index file (the variable names and shapes) or the data file (the values)."""
    import tensorflow as tf

    def why(e):  # tf.errors.* (DataLossError for a corrupt file, ...), IndexError for a truncated data file
        text = str(e).strip()
        return f"{type(e).__name__}: {text.splitlines()[0] if text else repr(e)}"

    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except Exception as e:
        raise ConversionError(f"{prefix}.index: cannot be read as a TensorFlow checkpoint index ({why(e)})")
    values = {}
    for key in shapes:
        try:
            values[key] = reader.get_tensor(key)
        except Exception as e:
            data = glob.glob(glob.escape(prefix) + ".data-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]")
            data = " / ".join(sorted(data)) or f"{prefix}.data-*"
            raise ConversionError(f"{data}: cannot be read (truncated, corrupt, or not the data file of "
                                  f"{prefix}.index): {why(e)}, reading {key}")
    return values


# ---------------------------------------------------------------------------
# Layers of the checkpoint
# ---------------------------------------------------------------------------

LAYOUTS = [
    ("keras2", re.compile(r"^layer_with_weights-(\d+)/(.+)$")),
    ("keras3", re.compile(r"^_operations/(\d+)/(.+)$")),
    ("keras3", re.compile(r"^_layers/(\d+)/(.+)$")),
]
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


class Layer:
    def __init__(self, index, root):
        self.index = index
        self.root = root            # key prefix, e.g. "u_net/layer_with_weights-7"
        self.vars = {}              # normalised relative path -> (checkpoint key, array)
        self.kind = None

    def describe(self):
        parts = ", ".join(f"{p} {list(a.shape)}" for p, (_, a) in sorted(self.vars.items()))
        return f"{self.root} ({parts})"

    def get(self, rel):
        return self.vars[rel][1]

    def key(self, rel):
        return self.vars[rel][0]


def normalise(rel):
    # Keras 3 stores Dense/Conv kernels as `_kernel`; a Keras 3 Sequential inside a layer nests its
    # layers as `_functional/_operations/N/` (or `_layers/N/`); Keras 2 as `layer_with_weights-N/`.
    parts = rel.split("/")
    parts[-1] = {"_kernel": "kernel"}.get(parts[-1], parts[-1])
    return "/".join(parts)


def group_layers(variables, prefix, root):
    layers = {}
    layout = None
    other_roots = set()
    skipped = []
    for key in variables:
        if key == "_CHECKPOINTABLE_OBJECT_GRAPH" or "/.OPTIMIZER_SLOT/" in key:
            continue
        if not key.startswith(root + "/"):
            other_roots.add(key.split("/", 1)[0])
            continue
        if not key.endswith(VALUE_SUFFIX):
            skipped.append(key)
            continue
        rel = key[len(root) + 1:-len(VALUE_SUFFIX)]
        for name, pattern in LAYOUTS:
            m = pattern.match(rel)
            if m:
                break
        else:
            raise ConversionError(f"{prefix}.index: variable {key} is not in a Keras functional model's layer "
                                  f"(expected {root}/layer_with_weights-N/... or {root}/_operations/N/...); "
                                  f"not a checkpoint of the notebook's u_net")
        if layout is None:
            layout = name
        elif layout != name:
            raise ConversionError(f"{prefix}.index: mixes Keras 2 and Keras 3 variable layouts ({key})")
        index = int(m.group(1))
        layer = layers.setdefault(index, Layer(index, key[:len(root) + 1 + m.start(2) - 1]))
        layer.vars[normalise(m.group(2))] = (key, variables[key])
    if not layers:
        found = ", ".join(sorted(other_roots - {"save_counter"})) or "none"
        raise ConversionError(f"{prefix}.index: has no variables under '{root}/' (objects found: {found}); the "
                              f"notebook saves tf.train.Checkpoint(u_net=u_net)"
                              + (" — pass --root NAME if the model was saved under another name" if found != "none" else ""))
    return layout, [layers[i] for i in sorted(layers)]


def classify(layer, prefix):
    names = set(layer.vars)
    shape = {n: a.shape for n, (_, a) in layer.vars.items()}

    def fail(what):
        raise ConversionError(f"{prefix}.index: {layer.describe()}: {what}; not the notebook's architecture")

    if any(n.startswith("dense1/") or n.startswith("dense2/") for n in names):
        if names != {"dense1/kernel", "dense1/bias", "dense2/kernel", "dense2/bias"}:
            fail("a SinusoidalPosEmb must hold exactly dense1/{kernel,bias} and dense2/{kernel,bias}")
        layer.kind = "temb"
    elif any(n.startswith("to_qkv/") for n in names):
        if "to_qkv/bias" in names:
            fail("LinearAttention.to_qkv has a bias (the notebook's has use_bias=False)")
        sub = {n for n in names if n.startswith("to_out/")}
        if names - sub != {"to_qkv/kernel"}:
            fail("a LinearAttention must hold to_qkv/kernel and to_out/...")
        conv = [n for n in sub if n.endswith("/kernel")]
        gam = [n for n in sub if n.endswith("/gamma")]
        if len(conv) != 1 or len(gam) != 1 or len(sub) != 4:
            fail("LinearAttention.to_out must be Sequential([Conv2D(dim, 1), LayerNormalization()])")
        cdir, gdir = conv[0][:-len("kernel")], gam[0][:-len("gamma")]
        if {cdir + "kernel", cdir + "bias", gdir + "gamma", gdir + "beta"} != sub:
            fail("LinearAttention.to_out must be Sequential([Conv2D(dim, 1), LayerNormalization()])")
        layer.attn_paths = {"to_out.0.weight": cdir + "kernel", "to_out.0.bias": cdir + "bias",
                            "to_out.1.weight": gdir + "gamma", "to_out.1.bias": gdir + "beta"}
        layer.kind = "attn"
    elif names == {"kernel", "bias"}:
        if len(shape["kernel"]) == 2:
            layer.kind = "dense"
        elif len(shape["kernel"]) == 4:
            layer.kind = "conv"
        else:
            fail("kernel of rank %d" % len(shape["kernel"]))
    elif names == {"gamma", "beta"}:
        layer.kind = "norm"
    elif {"moving_mean", "moving_variance"} <= names:
        raise ConversionError(f"{prefix}.index: {layer.describe()} is a BatchNormalization; the notebook's network "
                              f"uses GroupNormalization (its commented-out BatchNormalization variant is not "
                              f"supported by Haze's TFArticleUNet)")
    else:
        fail("unrecognised layer")


# ---------------------------------------------------------------------------
# Parsing the architecture
# ---------------------------------------------------------------------------

def conv_weight(k):    # Keras [kh, kw, in, out] -> PyTorch [out, in, kh, kw]
    return k.transpose(3, 2, 0, 1)


def dense_weight(k):   # Keras [in, out] -> PyTorch [out, in]
    return k.transpose(1, 0)


class Parser:
    def __init__(self, layers, prefix, heads):
        self.layers = layers
        self.prefix = prefix
        self.heads = heads
        self.out = {}        # Haze name -> array
        self.mapping = []    # (checkpoint key, haze name, keras shape, haze shape, transpose)

    def fail(self, layer, what):
        where = layer.describe() if layer is not None else "its layers"
        raise ConversionError(f"{self.prefix}.index: {where}: {what}; not a checkpoint of the notebook's U-Net")

    def put(self, layer, rel, name, transform=None, tname="none"):
        a = layer.get(rel)
        b = transform(a) if transform else a
        self.out[name] = b
        self.mapping.append((layer.key(rel), name, list(a.shape), list(b.shape), tname))

    def expect_shape(self, layer, rel, shape, what):
        got = list(layer.get(rel).shape)
        if got != list(shape):
            self.fail(layer, f"{what}: {rel} has shape {got}, expected {list(shape)}")

    def conv(self, layer, name, k, cin, cout, what):
        if layer is None or layer.kind != "conv":
            self.fail(layer, f"expected {what} (Conv2D {k}x{k}, {cin} -> {cout})")
        self.expect_shape(layer, "kernel", [k, k, cin, cout], what)
        self.expect_shape(layer, "bias", [cout], what)
        self.put(layer, "kernel", name + ".weight", conv_weight, "transpose(3, 2, 0, 1)")
        self.put(layer, "bias", name + ".bias")

    def res_block(self, pos, name, cin, temb_dim):
        """Parses layers[pos...] as resBlock(x with cin channels, filter, t); returns (next pos, filter)."""
        L = self.layers
        dense = L[pos]
        if dense.kind != "dense":
            self.fail(dense, f"expected the time Dense of residual block {name}")
        two_f = dense.get("kernel").shape[1]
        if two_f % 2:
            self.fail(dense, f"time Dense of {name} has an odd width {two_f}")
        f = two_f // 2
        self.expect_shape(dense, "kernel", [temb_dim, 2 * f], f"time Dense of {name}")
        self.expect_shape(dense, "bias", [2 * f], f"time Dense of {name}")
        self.put(dense, "kernel", name + ".time_proj.weight", dense_weight, "transpose(1, 0)")
        self.put(dense, "bias", name + ".time_proj.bias")
        parts = L[pos + 1:pos + 5]
        if len(parts) < 4:
            self.fail(None, f"residual block {name} is cut short")
        self.conv(parts[0], name + ".conv1", 3, cin, f, f"conv1 of {name}")
        for i, (layer, conv_in) in enumerate([(parts[1], None), (parts[2], f), (parts[3], None)]):
            if conv_in is None:
                if layer.kind != "norm":
                    self.fail(layer, f"expected GroupNormalization norm{(i + 2) // 2} of {name} ({f} channels)")
                self.expect_shape(layer, "gamma", [f], f"norm of {name}")
                self.expect_shape(layer, "beta", [f], f"norm of {name}")
                n = "norm1" if i == 0 else "norm2"
                self.put(layer, "gamma", f"{name}.{n}.weight")
                self.put(layer, "beta", f"{name}.{n}.bias")
            else:
                self.conv(layer, name + ".conv2", 3, f, f, f"conv2 of {name}")
        if f % self.groups:
            self.fail(dense, f"{name} has {f} channels, not divisible by the {self.groups} GroupNorm groups")
        pos += 5
        if cin != f:
            if pos >= len(L) - 1:
                self.fail(None, f"missing the 1x1 shortcut conv of {name} ({cin} -> {f} channels)")
            self.conv(L[pos], name + ".shortcut", 1, cin, f, f"1x1 shortcut conv of {name} ({cin} -> {f})")
            pos += 1
        elif pos < len(L) - 1 and L[pos].kind == "conv":
            self.fail(L[pos], f"{name} keeps {f} channels, so it has no shortcut conv, but a conv follows it")
        return pos, f

    def attention(self, layer, name, dim):
        if layer.kind != "attn":
            self.fail(layer, f"expected the LinearAttention {name}")
        qkv = layer.get("to_qkv/kernel").shape
        if len(qkv) != 4 or qkv[0] != 1 or qkv[1] != 1 or qkv[2] != dim or qkv[3] % 3:
            self.fail(layer, f"{name}.to_qkv kernel has shape {list(qkv)}, expected [1, 1, {dim}, 3*hidden]")
        hidden = qkv[3] // 3
        if self.hidden is None:
            self.hidden = hidden
        elif hidden != self.hidden:
            self.fail(layer, f"{name} has hidden width {hidden}, the first attention {self.hidden}")
        p = layer.attn_paths
        self.expect_shape(layer, p["to_out.0.weight"], [1, 1, hidden, dim], f"{name}.to_out conv")
        self.expect_shape(layer, p["to_out.0.bias"], [dim], f"{name}.to_out conv")
        self.expect_shape(layer, p["to_out.1.weight"], [dim], f"{name}.to_out LayerNormalization")
        self.expect_shape(layer, p["to_out.1.bias"], [dim], f"{name}.to_out LayerNormalization")
        self.put(layer, "to_qkv/kernel", name + ".to_qkv.weight", conv_weight, "transpose(3, 2, 0, 1)")
        self.put(layer, p["to_out.0.weight"], name + ".to_out.0.weight", conv_weight, "transpose(3, 2, 0, 1)")
        self.put(layer, p["to_out.0.bias"], name + ".to_out.0.bias")
        self.put(layer, p["to_out.1.weight"], name + ".to_out.1.weight")
        self.put(layer, p["to_out.1.bias"], name + ".to_out.1.bias")

    def parse(self, groups):
        self.groups = groups
        self.hidden = None
        L = self.layers
        if len(L) < 4:
            self.fail(None, f"only {len(L)} layers with weights")
        # Token pass: which layers are residual blocks (R) and attentions (A).
        temb = L[0]
        if temb.kind != "temb":
            self.fail(temb, "expected the SinusoidalPosEmb (dense1, dense2) first")
        t_dim = temb.get("dense1/kernel").shape[1]
        self.expect_shape(temb, "dense1/kernel", [t_dim, t_dim], "SinusoidalPosEmb.dense1")
        self.expect_shape(temb, "dense1/bias", [t_dim], "SinusoidalPosEmb.dense1")
        self.expect_shape(temb, "dense2/kernel", [t_dim, t_dim], "SinusoidalPosEmb.dense2")
        self.expect_shape(temb, "dense2/bias", [t_dim], "SinusoidalPosEmb.dense2")
        if t_dim % 2 or t_dim < 4:
            self.fail(temb, f"time embedding width {t_dim} must be even and at least 4")
        init = L[1]
        if init.kind != "conv" or init.get("kernel").shape[:2] != (1, 1):
            self.fail(init, "expected the 1x1 init Conv2D second")
        in_ch, c0 = init.get("kernel").shape[2:]
        final = L[-1]
        if final.kind != "conv" or final.get("kernel").shape[:2] != (1, 1):
            self.fail(final, "expected the final 1x1 Conv2D last")
        tokens = []
        pos = 2
        while pos < len(L) - 1:
            layer = L[pos]
            if layer.kind == "attn":
                tokens.append(("A", pos))
                pos += 1
            elif layer.kind == "dense":
                tokens.append(("R", pos))
                pos += 5
                if pos < len(L) - 1 and L[pos].kind == "conv" and L[pos].get("kernel").shape[:2] == (1, 1):
                    pos += 1
            else:
                self.fail(layer, "expected a residual block (starting with its time Dense) or a LinearAttention")
        if pos != len(L) - 1:
            self.fail(None, "the last residual block is cut short")
        word = "".join(k for k, _ in tokens)
        m = re.match(r"^(R+)A", word)
        if not m:
            what = ("does not start with down blocks" if "A" in word
                    else "has no LinearAttention (each of the notebook's down and up blocks ends with one)")
            self.fail(None, f"layer sequence {word!r} (R = residual block, A = attention) {what}")
        n_block = len(m.group(1))
        levels = word.count("A") // 2
        expected = ("R" * n_block + "A") * levels + "R" * n_block + ("R" * n_block + "A") * levels + "R"
        if word != expected or levels < 1:
            self.fail(None, f"layer sequence {word!r} (R = residual block, A = attention) is not the notebook's "
                            f"(down: R*{n_block}+A per level, middle: R*{n_block}, up: R*{n_block}+A per level, "
                            f"final R; expected {expected!r})")
        # Full pass with shapes, in the network's order.
        self.put(temb, "dense1/kernel", "time_mlp.0.weight", dense_weight, "transpose(1, 0)")
        self.put(temb, "dense1/bias", "time_mlp.0.bias")
        self.put(temb, "dense2/kernel", "time_mlp.1.weight", dense_weight, "transpose(1, 0)")
        self.put(temb, "dense2/bias", "time_mlp.1.bias")
        self.conv(init, "init_conv", 1, in_ch, c0, "init conv")
        pos = 2
        ch = c0
        skips = []
        down = []
        for d in range(levels):
            widths = []
            for j in range(n_block):
                pos, f = self.res_block(pos, f"down.{d}.res.{j}", ch, t_dim)
                ch = f
                widths.append(f)
                skips.append(f)
            if len(set(widths)) != 1:
                self.fail(L[pos], f"down block {d} has residual blocks of widths {widths} (the notebook uses one "
                                  f"filter count per block)")
            self.attention(L[pos], f"down.{d}.attn", ch)
            pos += 1
            down.append(ch)
        mids = []
        for j in range(n_block):
            pos, f = self.res_block(pos, f"mid.{j}", ch, t_dim)
            ch = f
            mids.append(f)
        if len(set(mids)) != 1:
            self.fail(None, f"middle residual blocks have widths {mids} (the notebook uses one filter count)")
        for u in range(levels):
            want = down[levels - 1 - u]
            for j in range(n_block):
                skip = skips.pop()
                pos, f = self.res_block(pos, f"up.{u}.res.{j}", ch + skip, t_dim)
                if f != want:
                    self.fail(None, f"up.{u}.res.{j} has {f} channels; the notebook's up blocks mirror the down "
                                    f"blocks ({want} here)")
                ch = f
            self.attention(L[pos], f"up.{u}.attn", ch)
            pos += 1
        pos, final_ch = self.res_block(pos, "final_res", ch, t_dim)
        out_ch = final.get("kernel").shape[3]
        self.conv(L[pos], "final_conv", 1, final_ch, out_ch, "final conv")
        if self.hidden % self.heads:
            self.fail(None, f"attention hidden width {self.hidden} is not divisible by {self.heads} heads "
                            f"(--attention-heads)")
        return {
            "in_channels": int(in_ch), "out_channels": int(out_ch), "init_channels": int(c0),
            "channels": [int(c) for c in down], "mid_channels": int(mids[0]), "final_channels": int(final_ch),
            "layers_per_block": n_block, "time_embed_dim": int(t_dim), "attention_heads": self.heads,
            "attention_head_dim": self.hidden // self.heads,
        }


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    """float32 tensors + string metadata, byte-deterministic (sorted names and metadata keys)."""
    import numpy as np
    header = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        data = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())


def notebook_betas():
    """Per-step betas whose cumulative product is the notebook's shifted alpha-bar:
    [0] + linspace(1e-4, 0.02, 1000)[:999]  =>  prod_{s<=t}(1 - b'_s) = prod_{s<t}(1 - beta_s)."""
    import numpy as np
    beta = np.linspace(0.0001, 0.02, 1000)
    return [0.0] + [float(b) for b in beta[:-1]]


def scheduler_config():
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": notebook_betas(),
        "prediction_type": "epsilon",
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "thresholding": False,
        "set_alpha_to_one": True,
        "timestep_spacing": "leading",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }


def model_config(arch, image_size):
    return {
        "_class_name": CLASS_NAME,
        "image_size": image_size,
        "in_channels": arch["in_channels"],
        "out_channels": arch["out_channels"],
        "init_channels": arch["init_channels"],
        "channels": arch["channels"],
        "mid_channels": arch["mid_channels"],
        "final_channels": arch["final_channels"],
        "layers_per_block": arch["layers_per_block"],
        "time_embed_dim": arch["time_embed_dim"],
        "max_positions": NOTEBOOK_DEFAULTS["max_positions"],
        "attention_heads": arch["attention_heads"],
        "attention_head_dim": arch["attention_head_dim"],
        "norm_num_groups": NOTEBOOK_DEFAULTS["norm_num_groups"],
        "norm_eps": NOTEBOOK_DEFAULTS["norm_eps"],
        "attention_norm_eps": NOTEBOOK_DEFAULTS["attention_norm_eps"],
    }


def dump_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_folder(out_dir, populate, force):
    """Runs populate(directory) on a new OUT_DIR.tmp-XXXX, then renames that to OUT_DIR (replacing an
    existing OUT_DIR only with force); on any failure OUT_DIR is left as it was."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(out_dir) and not force:
        raise ConversionError(f"{out_dir}: already exists (pass --force to replace it)")
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=parent)
    old = None
    try:
        os.chmod(tmp, 0o755)
        populate(tmp)
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-", dir=parent)
            os.rmdir(old)
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old and os.path.exists(old) and not os.path.exists(out_dir):
            os.rename(old, out_dir)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def convert(ckpt, out_dir=None, image_size=64, heads=4, root="u_net", force=False, verbose=True):
    import numpy as np
    prefix = resolve_prefix(ckpt)
    variables = read_checkpoint(prefix)
    layout, layers = group_layers(variables, prefix, root)
    for layer in layers:
        classify(layer, prefix)
    parser = Parser(layers, prefix, heads)
    arch = parser.parse(NOTEBOOK_DEFAULTS["norm_num_groups"])
    levels = len(arch["channels"])
    if image_size < 1 or image_size % (2 ** levels):
        raise ConversionError(f"--image-size {image_size}: must be a positive multiple of {2 ** levels} "
                              f"({levels} AveragePooling2D halvings)")
    tensors = {}
    for name, a in parser.out.items():
        if a.dtype.kind != "f":
            raise ConversionError(f"{prefix}.index: {name} has dtype {a.dtype}, expected floating point")
        tensors[name] = np.ascontiguousarray(a.astype(np.float32))
    used = {k for k, *_ in parser.mapping}
    all_keys = {v[0] for layer in layers for v in layer.vars.values()}
    if used != all_keys:
        raise ConversionError(f"{prefix}.index: variables not used by the architecture: {sorted(all_keys - used)}")
    params = int(sum(a.size for a in tensors.values()))
    config = model_config(arch, image_size)
    if verbose:
        print(f"{prefix}: {layout} layout, {len(layers)} layers with weights, {len(tensors)} tensors, "
              f"{params:,} parameters")
        print("config: " + json.dumps({k: v for k, v in config.items() if k != "_class_name"}))
    if out_dir is None:
        return config, tensors, parser.mapping, layout
    metadata = {"format": "pt", "source": "github.com/Yukino1010/Diffusion_Model diffusion.ipynb",
                "checkpoint": os.path.basename(prefix), "keras_layout": layout}
    def populate(directory):
        dump_json(config, os.path.join(directory, CONFIG_FILE))
        write_safetensors(os.path.join(directory, WEIGHTS_FILE), tensors, metadata)
        dump_json(scheduler_config(), os.path.join(directory, SCHEDULER_FILE))
    path = write_folder(out_dir, populate, force)
    # Read back with the safetensors library.
    from safetensors.numpy import load_file
    back = load_file(os.path.join(path, WEIGHTS_FILE))
    assert set(back) == set(tensors) and all(np.array_equal(back[k], tensors[k]) for k in tensors)
    if verbose:
        print(f"wrote {path}/{{{CONFIG_FILE}, {WEIGHTS_FILE}, {SCHEDULER_FILE}}}")
    return config, tensors, parser.mapping, layout


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert a checkpoint of the U-Net of github.com/Yukino1010/Diffusion_Model (diffusion.ipynb, "
                    "saved as tf.train.Checkpoint(u_net=u_net) by a CheckpointManager; Keras 2 "
                    "'u_net/layer_with_weights-N/...' or Keras 3 'u_net/_operations/N/...' variables) into a Haze "
                    "model folder: config.json (TFArticleUNet), diffusion_pytorch_model.safetensors (PyTorch "
                    "layouts) and scheduler_config.json (DDIM, the notebook's shifted schedule; sample with 200 "
                    "steps). OUT_DIR is written atomically. " + REQUIREMENTS,
        epilog="Spec: Documentation/tf-article-network.md. " + REQUIREMENTS)
    ap.add_argument("ckpt", metavar="CKPT_PREFIX",
                    help="checkpoint prefix, e.g. results/models_weight/ckpt-5 (a .index/.data file or a "
                         "CheckpointManager directory, meaning its latest checkpoint, also work)")
    ap.add_argument("out_dir", metavar="OUT_DIR", nargs="?", help="model folder to write (omit with --dry-run)")
    ap.add_argument("--image-size", type=int, default=64,
                    help="training image size (not stored in checkpoints; default 64, the notebook's IMG_SIZE)")
    ap.add_argument("--attention-heads", type=int, default=4,
                    help="LinearAttention heads (not inferable from shapes; default 4, the notebook's)")
    ap.add_argument("--root", default="u_net", help="name of the model in the tf.train.Checkpoint (default u_net)")
    ap.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    ap.add_argument("--dry-run", action="store_true", help="check and print the variable mapping; write nothing")
    args = ap.parse_args(argv)
    if not args.dry_run and not args.out_dir:
        ap.error("OUT_DIR is required (or pass --dry-run)")
    if args.attention_heads < 1:
        ap.error("--attention-heads must be positive")
    try:  # the paths first: a wrong one is reported without the seconds TensorFlow takes to load
        if not args.dry_run and os.path.exists(args.out_dir) and not args.force:
            raise ConversionError(f"{os.path.abspath(args.out_dir)}: already exists (pass --force to replace it)")
        resolve_prefix(args.ckpt)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    missing = missing_requirement(["numpy", "safetensors", "tensorflow"])
    if missing:
        print(missing, file=sys.stderr)
        return 2
    try:
        _, _, mapping, _ = convert(args.ckpt, None if args.dry_run else args.out_dir, args.image_size,
                                   args.attention_heads, args.root, args.force)
        if args.dry_run:
            for key, name, kshape, hshape, tr in mapping:
                print(f"{key}\t{name}\t{kshape}\t{hshape}\t{tr}")
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
