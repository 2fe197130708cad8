#!/usr/bin/env python3
"""Export a Haze model folder of the TensorFlow notebook's U-Net (config.json with "_class_name":
"TFArticleUNet", e.g. from `haze train --preset tf-article` or from convert_notebook_checkpoint.py) as a
checkpoint that the notebook (github.com/Yukino1010/Diffusion_Model, diffusion.ipynb) restores: the
reverse of scripts/convert_notebook_checkpoint.py.

It builds the notebook's Keras model (scripts/tf_article_keras.py, the notebook's cells 5-7) at the
folder's widths, sets every variable from diffusion_pytorch_model.safetensors (PyTorch layouts back to
Keras ones), checks that convert_notebook_checkpoint.py maps the result back to the same tensors bit for
bit, and saves it the notebook's way: tf.train.Checkpoint(u_net=u_net) through a
tf.train.CheckpointManager, Keras 2 variable names (u_net/layer_with_weights-N/...). OUT_DIR receives
ckpt-1.index, ckpt-1.data-00000-of-00001 and the `checkpoint` state file, atomically (written into
OUT_DIR.tmp-XXXX, then renamed). In the notebook (TF_USE_LEGACY_KERAS=1 with current TensorFlow):

    ckpt = tf.train.Checkpoint(u_net=u_net)
    ckpt.restore(tf.train.latest_checkpoint("OUT_DIR")).assert_existing_objects_matched()

or copy the three files into its results/models_weight/, where cell 8's CheckpointManager finds them.

Only the notebook's network can be opened by the notebook's code: GroupNorm (not the article text's
BatchNorm variant), LinearAttention after every level with 4 heads of 32, a 32-wide time embedding,
3 output channels. Other widths, levels, blocks per level, input channels and image sizes are fine
(build U_NET with the same arguments; OUT_DIR's summary prints them). A folder whose
scheduler_config.json is not the notebook's schedule gets a warning: the notebook samples with its own.

Bad input (a folder without config.json or weights, another network, missing, extra or misshapen
tensors) stops with exit status 1 and one "error: FILE: ..." line naming the file; OUT_DIR is then left
as it was.

Usage:
  python3 scripts/export_notebook_checkpoint.py MODEL_DIR OUT_DIR [--force]
"""
import argparse
import json
import os
import sys
import tempfile

import convert_notebook_checkpoint as cnc

REQUIREMENTS = cnc.REQUIREMENTS.replace("and safetensors", "and safetensors, and scripts/tf_article_keras.py")

# Constants of the notebook's code that U_NET does not take as arguments: (config field, value, where).
NOTEBOOK_CONSTANTS = [
    ("attention_heads", 4, "LinearAttention(dim, heads=4, dim_head=32)"),
    ("attention_head_dim", 32, "LinearAttention(dim, heads=4, dim_head=32)"),
    ("time_embed_dim", 32, "SinusoidalPosEmb(dim=32)"),
    ("max_positions", 10000, "SinusoidalPosEmb(max_positions=10000)"),
    ("norm_num_groups", 8, "GroupNormalization(8, epsilon=1e-05)"),
    ("norm_eps", 1e-5, "GroupNormalization(8, epsilon=1e-05)"),
    ("attention_norm_eps", 1e-3, "LayerNormalization() (epsilon 1e-3)"),
    ("out_channels", 3, "the final Conv2D(3, 1)"),
    ("norm_type", "group", "GroupNormalization in resBlock (the BatchNorm variant is not the notebook's code)"),
    ("attention", True, "LinearAttention in every down and up block"),
]


def read_model_folder(model_dir):
    """(config dict, {name: float32 array}) of a TFArticleUNet model folder; ConversionError naming the
    file for anything else."""
    import numpy as np
    config_path = os.path.join(model_dir, cnc.CONFIG_FILE)
    weights_path = os.path.join(model_dir, cnc.WEIGHTS_FILE)
    if not os.path.isdir(model_dir):
        raise cnc.ConversionError(f"{model_dir}: no such model folder")
    if not os.path.isfile(config_path):
        hint = (" (a training checkpoint holds its model in model/ and ema/ subfolders; give one of those)"
                if os.path.isdir(os.path.join(model_dir, "model")) else "")
        raise cnc.ConversionError(f"{config_path}: missing; MODEL_DIR must be a Haze model folder{hint}")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise cnc.ConversionError(f"{config_path}: cannot be read as JSON ({e})")
    if not isinstance(config, dict) or config.get("_class_name") != cnc.CLASS_NAME:
        found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise cnc.ConversionError(f"{config_path}: _class_name is {found!r}, not {cnc.CLASS_NAME!r}; only the "
                                  f"notebook's U-Net (haze train --preset tf-article) can be opened by the notebook")
    defaults = cnc.model_config({"in_channels": 3, "out_channels": 3, "init_channels": 32, "channels": [64, 128, 128],
                                 "mid_channels": 256, "final_channels": 32, "layers_per_block": 2,
                                 "time_embed_dim": 32, "attention_heads": 4, "attention_head_dim": 32}, 64)
    config = {**defaults, "norm_type": "group", "attention": True, **config}   # Haze's defaults for absent fields
    for field in ("image_size", "in_channels", "init_channels", "mid_channels", "final_channels", "layers_per_block"):
        if not isinstance(config[field], int) or isinstance(config[field], bool) or config[field] < 1:
            raise cnc.ConversionError(f"{config_path}: {field} must be a positive integer, not {config[field]!r}")
    widths = config["channels"]
    if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
        raise cnc.ConversionError(f"{config_path}: channels must be a non-empty list of positive integers, not {widths!r}")
    if config["image_size"] % (2 ** len(widths)):
        raise cnc.ConversionError(f"{config_path}: image_size {config['image_size']} is not a multiple of "
                                  f"2^{len(widths)} (one halving per level)")
    for field, value, where in NOTEBOOK_CONSTANTS:
        if config[field] != value:
            raise cnc.ConversionError(f"{config_path}: {field} is {config[field]!r}; the notebook's code has "
                                      f"{value!r} ({where}), so it cannot open this model")
    if not os.path.isfile(weights_path):
        raise cnc.ConversionError(f"{weights_path}: missing (the model's weights)")
    try:
        from safetensors.numpy import load_file
        tensors = load_file(weights_path)
    except Exception as e:
        raise cnc.ConversionError(f"{weights_path}: cannot be read as safetensors ({type(e).__name__}: {e})")
    for name, a in tensors.items():
        if a.dtype != np.float32:
            raise cnc.ConversionError(f"{weights_path}: {name} is {a.dtype}, expected float32")
    return config, tensors


def build_notebook_model(config):
    """The notebook's U_NET at the config's widths, every variable filled with its own index + 1."""
    import numpy as np
    import tf_article_keras as tak
    tak.N_BLOCK = config["layers_per_block"]
    model = tak.U_NET((config["image_size"], config["image_size"], config["in_channels"]),
                      init_filter=config["init_channels"], filters=tuple(config["channels"]),
                      mid_filter=config["mid_channels"], final_filter=config["final_channels"])
    for i, w in enumerate(model.weights):
        w.assign(np.full(tuple(w.shape), i + 1, dtype=np.float32))
    return model


def variable_mapping(model, directory):
    """[(variable index, Haze name, Keras shape, transform name)] for the notebook's model: saves it with
    its variables filled by build_notebook_model, parses that checkpoint as convert_notebook_checkpoint.py
    does, and reads each variable's index back from its values."""
    import tensorflow as tf
    prefix = tf.train.Checkpoint(u_net=model).write(os.path.join(directory, "template"))
    _, layers = cnc.group_layers(cnc.read_checkpoint(prefix), prefix, "u_net")
    for layer in layers:
        cnc.classify(layer, prefix)
    parser = cnc.Parser(layers, prefix, cnc.NOTEBOOK_DEFAULTS["attention_heads"])
    parser.parse(cnc.NOTEBOOK_DEFAULTS["norm_num_groups"])
    values = {layer.key(rel): layer.get(rel) for layer in layers for rel in layer.vars}
    mapping = []
    for key, name, kshape, _, tname in parser.mapping:
        index = int(values[key].flat[0]) - 1
        assert (values[key] == index + 1).all() and list(model.weights[index].shape) == kshape, key
        mapping.append((index, name, kshape, tname))
    assert sorted(i for i, *_ in mapping) == list(range(len(model.weights)))
    return mapping


def to_keras(a, tname):
    """The inverse of convert_notebook_checkpoint.py's layout transforms."""
    if tname == "transpose(3, 2, 0, 1)":   # conv: PyTorch [out, in, kh, kw] -> Keras [kh, kw, in, out]
        return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a
    if tname == "transpose(1, 0)":         # dense: PyTorch [out, in] -> Keras [in, out]
        return a.T if a.ndim == 2 else a
    return a


def scheduler_warning(model_dir):
    """A line of warning when the folder's schedule is not the notebook's (the notebook ignores it)."""
    path = os.path.join(model_dir, cnc.SCHEDULER_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            scheduler = json.load(f)
    except (OSError, ValueError):
        return f"warning: {path}: missing or unreadable; the notebook samples with its own schedule"
    betas = scheduler.get("trained_betas")
    notebook = cnc.notebook_betas()   # Haze writes them as float32: compare to 1e-6 relative
    if not isinstance(betas, list) or len(betas) != len(notebook) or any(
            not isinstance(a, (int, float)) or abs(a - b) > 1e-6 * b for a, b in zip(betas, notebook)):
        return (f"warning: {path}: not the notebook's schedule (its shifted linear beta 1e-4...0.02); the "
                f"notebook samples with its own, so its images will not be this model's best")
    return None


def export(model_dir, out_dir, force=False, verbose=True):
    import numpy as np
    import tensorflow as tf
    config, tensors = read_model_folder(model_dir)
    weights_path = os.path.join(model_dir, cnc.WEIGHTS_FILE)
    model = build_notebook_model(config)
    with tempfile.TemporaryDirectory(prefix="haze-export-") as scratch:
        mapping = variable_mapping(model, scratch)
    expected = {name: kshape for _, name, kshape, _ in mapping}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise cnc.ConversionError(f"{weights_path}: does not hold the network of its config.json: "
                                  + "; ".join(part for part in (f"missing {missing[:4]}" if missing else "",
                                                                f"unexpected {extra[:4]}" if extra else "") if part)
                                  + (" ..." if len(missing) > 4 or len(extra) > 4 else ""))
    for index, name, kshape, tname in mapping:
        value = to_keras(tensors[name], tname)
        if list(value.shape) != kshape:
            raise cnc.ConversionError(f"{weights_path}: {name} has shape {list(tensors[name].shape)}, which is not "
                                      f"the Keras variable's {kshape} in {tname} layout")
        model.weights[index].assign(value)

    def populate(directory):
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(u_net=model), directory, max_to_keep=5)
        prefix = manager.save()
        # The check: the forward converter reads this checkpoint back into the same tensors, bit for bit.
        _, back, _, layout = cnc.convert(prefix, image_size=config["image_size"], verbose=False)
        assert layout == "keras2" and set(back) == set(tensors), "export: the checkpoint does not convert back"
        for name, a in back.items():
            assert np.array_equal(a, tensors[name]), f"export: {name} does not convert back bit for bit"

    path = cnc.write_folder(out_dir, populate, force)
    if verbose:
        params = sum(int(a.size) for a in tensors.values())
        print(f"{weights_path}: {len(tensors)} tensors, {params:,} parameters")
        print(f"wrote {path}/{{checkpoint, ckpt-1.index, ckpt-1.data-00000-of-00001}}: tf.train.Checkpoint(u_net=...), "
              f"Keras 2 layout")
        print(f"the notebook's model: U_NET(({config['image_size']}, {config['image_size']}, {config['in_channels']}), "
              f"init_filter={config['init_channels']}, filters={tuple(config['channels'])}, "
              f"mid_filter={config['mid_channels']}, final_filter={config['final_channels']}) with "
              f"N_BLOCK = {config['layers_per_block']}")
        warning = scheduler_warning(model_dir)
        if warning:
            print(warning)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Export a Haze model folder of the TensorFlow notebook's U-Net (TFArticleUNet; haze train "
                    "--preset tf-article, or a folder written by convert_notebook_checkpoint.py) as a checkpoint "
                    "the notebook (github.com/Yukino1010/Diffusion_Model, diffusion.ipynb) restores: "
                    "tf.train.Checkpoint(u_net=u_net) saved by a CheckpointManager, Keras 2 variable names. "
                    "OUT_DIR is written atomically. Only the notebook's code can read it back: GroupNorm and "
                    "LinearAttention (4 heads of 32), 32-wide time embedding, 3 output channels; other widths, "
                    "levels and image sizes are fine. " + REQUIREMENTS,
        epilog="Spec: Documentation/tf-article-network.md. " + REQUIREMENTS)
    ap.add_argument("model_dir", metavar="MODEL_DIR", help="Haze model folder: config.json and "
                    "diffusion_pytorch_model.safetensors (a training checkpoint's model/ or ema/ folder)")
    ap.add_argument("out_dir", metavar="OUT_DIR", help="directory to write the notebook checkpoint into")
    ap.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    args = ap.parse_args(argv)
    try:  # what needs no TensorFlow first: a wrong path is reported without the seconds it takes to load
        if os.path.exists(args.out_dir) and not args.force:
            raise cnc.ConversionError(f"{os.path.abspath(args.out_dir)}: already exists (pass --force to replace it)")
        read_model_folder(args.model_dir)
    except ImportError as e:
        print(f"error: {e}. {REQUIREMENTS}", file=sys.stderr)
        return 2
    except cnc.ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")   # the notebook's Keras 2 (tf-keras)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    missing = cnc.missing_requirement(["tensorflow", "tf_keras"], REQUIREMENTS)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    try:
        export(args.model_dir, args.out_dir, args.force)
    except cnc.ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
