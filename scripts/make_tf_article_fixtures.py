#!/usr/bin/env python3
"""Generate the reference fixture of the TensorFlow notebook's U-Net (TFArticleUNet) for the Swift tests.

Source: github.com/Yukino1010/Diffusion_Model, diffusion.ipynb (notebook blob 901c74d1, commit
233570e6, 2022-12-20). The network is specified in Documentation/tf-article-network.md.

What it does (deterministic; CI has no TensorFlow, so the outputs are committed):
 1. builds the notebook's Keras model with the notebook's code (cells 5-7; tfa.layers.GroupNormalization,
    which no longer installs, replaced by keras GroupNormalization — same variables gamma/beta, same
    computation) at the notebook's 64x64x3 size to check the parameter count (6,179,331), then at the
    fixture size: 16x16x3, channels init 8, down (16, 24, 24), middle 32, up (24, 24, 16), final 8
    (the notebook's 32, (64, 128, 128), 256, 32 scaled down, keeping which residual blocks have 1x1
    shortcut convs; N_BLOCK = 2 and LinearAttention(heads=4, dim_head=32) as in the notebook);
 2. re-initialises every weight from a seeded numpy RNG (kernels N(0,1)/sqrt(fan_in), biases 0.1 N(0,1),
    norm gammas 1 + 0.1 N(0,1), betas 0.1 N(0,1); the zero-initialised final conv becomes nonzero);
 3. saves it the notebook's way (tf.train.Checkpoint(u_net=u_net) + CheckpointManager) to a temp dir and
    runs scripts/convert_notebook_checkpoint.py on it, which writes
    Tests/HazeNNTests/Fixtures/tf_article/model/{config.json, diffusion_pytorch_model.safetensors,
    scheduler_config.json};
 4. writes Tests/HazeNNTests/Fixtures/tf_article/io.safetensors: the forward pass on x/t, a few
    intermediate tensors, and the notebook's full DDIM loop (cell 9: 199 network calls at
    t = 995, 990, ..., 5) on B = 2 noise images (metadata describes every tensor);
 5. checks: a float64 numpy implementation of the spec, reading only the converted Haze-named weights,
    reproduces the Keras output; a Keras 3 port of the network with the same weights, saved the same way
    (u_net/_operations/N/... variables), converts to bit-identical Haze tensors and gives the same output.

Run from the repository root with the TensorFlow venv (Python 3 with tensorflow-cpu, tf-keras, numpy,
safetensors):

    /root/tf-venv/bin/python scripts/make_tf_article_fixtures.py [--out-dir DIR]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

if __name__ == "__main__" and "--keras3-check" not in sys.argv:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"       # tf.keras = tf-keras (Keras 2), as in the notebook
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"         # plain Eigen kernels: reproducible across CPUs
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.experimental.enable_op_determinism()

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)
import convert_notebook_checkpoint as conv  # noqa: E402

DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeNNTests", "Fixtures", "tf_article")
SEED = 20221220
FIXTURE = dict(img_size=(16, 16, 3), init_filter=8, filters=(16, 24, 24), mid_filter=32, final_filter=8)
T_FORWARD = [3.0, 987.0]
BATCH = 2
MAX_TOTAL_BYTES = 2 * 1000 * 1000

# ---------------------------------------------------------------------------
# The notebook's network (cells 5-7), tf-keras. Only changes: keras GroupNormalization for
# tfa.layers.GroupNormalization, and U_NET's widths as arguments whose defaults are the notebook's.
# ---------------------------------------------------------------------------

if "--keras3-check" not in sys.argv:
    from tf_article_keras import *  # noqa: E402,F401,F403  (the notebook's network, cells 5-7)

# ---------------------------------------------------------------------------
# The notebook's schedule and DDIM sampler (cells 4 and 9), verbatim but for the batch size.
# ---------------------------------------------------------------------------

from tf_article_keras import timesteps, beta, alpha, alpha_bar, ddim, inference_timesteps, inference_range, inf_step  # noqa: E402,F401


def notebook_ddim_loop(net, x, batch):
    """generate_save_img's loop (x = tf.random.normal((16,64,64,3)) replaced by the given NHWC x)."""
    called = []
    first = None
    for index, i in enumerate(reversed(range(inference_timesteps))):
        t = np.repeat(inference_range[i], batch)

        pred_noise = net([x, t])
        x = ddim(x, pred_noise, t, inf_step)
        called.append(int(t[0]))
        if first is None:
            first = (np.array(pred_noise), np.array(x))

        if any(t-inf_step) == 0:
            break
    return x, called, first

# ---------------------------------------------------------------------------
# Independent float64 numpy implementation of Documentation/tf-article-network.md (NCHW, Haze names).
# ---------------------------------------------------------------------------


def np_conv(x, w, b=None):
    B, C, H, W = x.shape
    kh, kw = w.shape[2:]
    p = kh // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((B, w.shape[0], H, W))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("bihw,oi->bohw", xp[:, :, i:i + H, j:j + W], w[:, :, i, j])
    return y if b is None else y + b[None, :, None, None]


def np_group_norm(x, g, b, groups, eps):
    B, C, H, W = x.shape
    r = x.reshape(B, groups, C // groups * H * W)
    mu = r.mean(-1, keepdims=True)
    var = ((r - mu) ** 2).mean(-1, keepdims=True)
    r = (r - mu) / np.sqrt(var + eps)
    return r.reshape(B, C, H, W) * g[None, :, None, None] + b[None, :, None, None]


def np_silu(x):
    return x / (1 + np.exp(-x))


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class NumpyNet:
    def __init__(self, weights, config):
        self.p = {k: v.astype(np.float64) for k, v in weights.items()}
        self.c = config
        self.trace = {}

    def temb(self, t):
        c, p = self.c, self.p
        half = c["time_embed_dim"] // 2
        # as TF: the frequencies and t * frequency in float32, sin/cos of that float32 argument
        freqs = np.exp(np.arange(half, dtype=np.float32) * np.float32(-(math.log(c["max_positions"]) / (half - 1))))
        arg = (np.asarray(t, dtype=np.float32)[:, None] * freqs[None, :].astype(np.float32)).astype(np.float64)
        e = np.concatenate([np.sin(arg), np.cos(arg)], axis=1)
        e = np_silu(e @ p["time_mlp.0.weight"].T + p["time_mlp.0.bias"])
        return np_silu(e @ p["time_mlp.1.weight"].T + p["time_mlp.1.bias"])

    def res(self, x, e, n):
        p, c = self.p, self.c
        F = p[n + ".conv1.weight"].shape[0]
        h = np_conv(x, p[n + ".conv1.weight"], p[n + ".conv1.bias"])
        h = np_group_norm(h, p[n + ".norm1.weight"], p[n + ".norm1.bias"], c["norm_num_groups"], c["norm_eps"])
        tp = e @ p[n + ".time_proj.weight"].T + p[n + ".time_proj.bias"]
        gamma, beta_ = tp[:, :F], tp[:, F:]
        h = h * (gamma[:, :, None, None] + 1) + beta_[:, :, None, None]
        h = np_silu(h)
        h = np_conv(h, p[n + ".conv2.weight"], p[n + ".conv2.bias"])
        h = np_group_norm(h, p[n + ".norm2.weight"], p[n + ".norm2.bias"], c["norm_num_groups"], c["norm_eps"])
        h = np_silu(h)
        r = np_conv(x, p[n + ".shortcut.weight"], p[n + ".shortcut.bias"]) if n + ".shortcut.weight" in p else x
        return h + r

    def attn(self, x, n):
        p, c = self.p, self.c
        B, C, H, W = x.shape
        N = H * W
        heads, dh = c["attention_heads"], c["attention_head_dim"]
        P = heads * dh
        qkv = np_conv(x, p[n + ".to_qkv.weight"])

        def raw(part):  # NCHW [B, P, H, W] -> the NHWC memory [B, N, P] reinterpreted as [B, heads, dh, N]
            return np.ascontiguousarray(part.reshape(B, P, N).transpose(0, 2, 1)).reshape(B, heads, dh, N)

        q, k, v = raw(qkv[:, :P]), raw(qkv[:, P:2 * P]), raw(qkv[:, 2 * P:])
        q = np_softmax(q, axis=2) * dh ** -0.5
        k = np_softmax(k, axis=3)
        ctx = np.einsum("bhdn,bhen->bhde", k, v)
        out = np.einsum("bhde,bhdn->bhen", ctx, q)
        y = out.reshape(B, N, P).transpose(0, 2, 1).reshape(B, P, H, W)
        y = np_conv(y, p[n + ".to_out.0.weight"], p[n + ".to_out.0.bias"])
        mu = y.mean(1, keepdims=True)
        var = ((y - mu) ** 2).mean(1, keepdims=True)
        y = (y - mu) / np.sqrt(var + c["attention_norm_eps"])
        y = y * p[n + ".to_out.1.weight"][None, :, None, None] + p[n + ".to_out.1.bias"][None, :, None, None]
        return y + x

    def __call__(self, x, t):
        c, p = self.c, self.p
        levels, L = len(c["channels"]), c["layers_per_block"]
        e = self.temb(t)
        self.trace["temb"] = e
        h = np_conv(x, p["init_conv.weight"], p["init_conv.bias"])
        skips = []
        for d in range(levels):
            for j in range(L):
                h = self.res(h, e, f"down.{d}.res.{j}")
                skips.append(h)
            if d == 0:
                self.trace["attn_in"] = h
            h = self.attn(h, f"down.{d}.attn")
            if d == 0:
                self.trace["attn_out"] = h
            B, C, H, W = h.shape
            h = h.reshape(B, C, H // 2, 2, W // 2, 2).mean(axis=(3, 5))
        for j in range(L):
            h = self.res(h, e, f"mid.{j}")
        for u in range(levels):
            h = h.repeat(2, axis=2).repeat(2, axis=3)
            for j in range(L):
                h = np.concatenate([h, skips.pop()], axis=1)
                h = self.res(h, e, f"up.{u}.res.{j}")
            h = self.attn(h, f"up.{u}.attn")
        h = self.res(h, e, "final_res")
        return np_conv(h, p["final_conv.weight"], p["final_conv.bias"])


def numpy_ddim(net, x):
    """The notebook's loop in float64 numpy (NCHW)."""
    for i in reversed(range(inference_timesteps)):
        t = inference_range[i]
        eps = net(x, np.full(x.shape[0], float(t)))
        a, ap = alpha_bar[t], alpha_bar[t - inf_step]
        x = np.sqrt(ap) * (x - np.sqrt(1 - a) * eps) / np.sqrt(a) + np.sqrt(1 - ap) * eps
        if t - inf_step == 0:
            break
    return x

# ---------------------------------------------------------------------------
# Keras 3 port (run in a subprocess without TF_USE_LEGACY_KERAS): the same network with the same weights,
# saved the notebook's way, must convert to the same Haze tensors (checks the u_net/_operations/N layout).
# ---------------------------------------------------------------------------


def keras3_check(model_dir, io_path):
    import keras
    from keras import layers as KL
    from safetensors.numpy import load_file
    assert keras.__version__.startswith("3"), keras.__version__
    W = load_file(os.path.join(model_dir, conv.WEIGHTS_FILE))
    cfg = json.load(open(os.path.join(model_dir, conv.CONFIG_FILE)))
    io = load_file(io_path)

    def conv_k(n):  # Haze [O, I, kh, kw] -> Keras [kh, kw, I, O]
        return W[n].transpose(2, 3, 1, 0)

    class LinearAttention3(KL.Layer):
        def __init__(self, dim, heads=4, dim_head=32, **kw):
            super().__init__(**kw)
            self.scale, self.heads, self.dim_head, self.hidden_dim = dim_head ** -0.5, heads, dim_head, heads * dim_head
            self.to_qkv = KL.Conv2D(self.hidden_dim * 3, 1, 1, use_bias=False)
            self.to_out = keras.Sequential([KL.Conv2D(dim, 1, 1), KL.LayerNormalization()])

        def call(self, x, training=True):
            residual = x
            b, h, w, c = x.shape
            q, k, v = tf.split(self.to_qkv(x), num_or_size_splits=3, axis=-1)
            q = tf.nn.softmax(tf.reshape(q, [-1, self.heads, self.dim_head, h * w]), axis=-2) * self.scale
            k = tf.nn.softmax(tf.reshape(k, [-1, self.heads, self.dim_head, h * w]), axis=-1)
            v = tf.reshape(v, [-1, self.heads, self.dim_head, h * w])
            context = tf.einsum('b h d n, b h e n -> b h d e', k, v)
            out = tf.reshape(tf.einsum('b h d e, b h d n -> b h e n', context, q), [-1, h, w, self.hidden_dim])
            return self.to_out(out, training=training) + residual

    class SinusoidalPosEmb3(KL.Layer):
        def __init__(self, dim=32, max_positions=10000, **kw):
            super().__init__(**kw)
            self.dim, self.max_positions = dim, max_positions
            self.dense1 = KL.Dense(dim, activation='swish')
            self.dense2 = KL.Dense(dim, activation='swish')

        def call(self, x, training=True):
            x = tf.cast(x, tf.float32)
            half_dim = self.dim // 2
            emb = tf.exp(tf.range(half_dim, dtype=tf.float32) * -(math.log(self.max_positions) / (half_dim - 1)))
            emb = tf.concat([tf.sin(x * emb[None, :]), tf.cos(x * emb[None, :])], axis=-1)
            return self.dense2(self.dense1(tf.reshape(emb, [-1, 1, 1, self.dim])))

    named = {}

    def res3(inp, f, t, n):
        residual = inp if inp.shape[-1] == f else named.setdefault(n + ".shortcut", KL.Conv2D(f, 1, 1, padding='same'))(inp)
        x = named.setdefault(n + ".conv1", KL.Conv2D(f, 3, 1, padding='same'))(inp)
        x = named.setdefault(n + ".norm1", KL.GroupNormalization(8, epsilon=1e-5))(x)
        gamma, beta_ = keras.ops.split(named.setdefault(n + ".time_proj", KL.Dense(2 * f))(t), 2, axis=-1)
        x = KL.Activation('swish')(x * (gamma + 1) + beta_)
        x = named.setdefault(n + ".conv2", KL.Conv2D(f, 3, 1, padding='same'))(x)
        x = KL.Activation('swish')(named.setdefault(n + ".norm2", KL.GroupNormalization(8, epsilon=1e-5))(x))
        return KL.Add()([x, residual])

    S = cfg["image_size"]
    noisy, time = KL.Input((S, S, cfg["in_channels"])), KL.Input((1,))
    e = named.setdefault("time_mlp", SinusoidalPosEmb3())(time)
    x = named.setdefault("init_conv", KL.Conv2D(cfg["init_channels"], 1, 1, padding='same'))(noisy)
    skips = []
    for d, f in enumerate(cfg["channels"]):
        for j in range(cfg["layers_per_block"]):
            x = res3(x, f, e, f"down.{d}.res.{j}")
            skips.append(x)
        x = KL.AveragePooling2D(2)(named.setdefault(f"down.{d}.attn", LinearAttention3(f))(x))
    for j in range(cfg["layers_per_block"]):
        x = res3(x, cfg["mid_channels"], e, f"mid.{j}")
    for u, f in enumerate(reversed(cfg["channels"])):
        x = KL.UpSampling2D(2)(x)
        for j in range(cfg["layers_per_block"]):
            x = res3(KL.Concatenate()([x, skips.pop()]), f, e, f"up.{u}.res.{j}")
        x = named.setdefault(f"up.{u}.attn", LinearAttention3(f))(x)
    x = res3(x, cfg["final_channels"], e, "final_res")
    out = named.setdefault("final_conv", KL.Conv2D(cfg["out_channels"], 1, 1, padding='same',
                                                   kernel_initializer="zeros"))(x)
    model = keras.Model([noisy, time], out)
    for n, layer in named.items():
        if isinstance(layer, SinusoidalPosEmb3):
            layer.dense1.set_weights([W["time_mlp.0.weight"].T, W["time_mlp.0.bias"]])
            layer.dense2.set_weights([W["time_mlp.1.weight"].T, W["time_mlp.1.bias"]])
        elif isinstance(layer, LinearAttention3):
            layer.to_qkv.set_weights([conv_k(n + ".to_qkv.weight")])
            layer.to_out.layers[0].set_weights([conv_k(n + ".to_out.0.weight"), W[n + ".to_out.0.bias"]])
            layer.to_out.layers[1].set_weights([W[n + ".to_out.1.weight"], W[n + ".to_out.1.bias"]])
        elif isinstance(layer, KL.Dense):
            layer.set_weights([W[n + ".weight"].T, W[n + ".bias"]])
        elif isinstance(layer, KL.Conv2D):
            layer.set_weights([conv_k(n + ".weight"), W[n + ".bias"]])
        else:
            layer.set_weights([W[n + ".weight"], W[n + ".bias"]])
    y = np.array(model([io["x"].transpose(0, 2, 3, 1), io["t"]])).transpose(0, 3, 1, 2)
    d = float(np.abs(y - io["out"]).max())
    assert d <= 1e-5 * float(np.abs(io["out"]).max()), f"Keras 3 port output differs by {d}"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = tf.train.Checkpoint(u_net=model)
        prefix = tf.train.CheckpointManager(ckpt, os.path.join(tmp, "models_weight"), max_to_keep=5).save()
        keys = [k for k, _ in tf.train.list_variables(prefix)]
        assert any(k.startswith("u_net/_operations/") for k in keys), keys[:5]
        config, tensors, _, layout = conv.convert(prefix, None, S, verbose=False)
    assert layout == "keras3", layout
    assert config == {k: v for k, v in cfg.items()}, (config, cfg)
    assert set(tensors) == set(W), sorted(set(tensors) ^ set(W))
    for k in W:
        assert np.array_equal(tensors[k], W[k]), k
    print(f"keras3 check: {len(keys)} checkpoint keys (u_net/_operations/N/...), {len(W)} tensors bit-identical, "
          f"output max|diff| {d:.3g}")

# ---------------------------------------------------------------------------


def init_weights(model, rng):
    for w in model.weights:
        shape = tuple(w.shape)
        last = w.name.split("/")[-1].split(":")[0]
        if last == "kernel":
            value = rng.standard_normal(shape) / math.sqrt(float(np.prod(shape[:-1])))
        elif last == "bias":
            value = 0.1 * rng.standard_normal(shape)
        elif last == "gamma":
            value = 1 + 0.1 * rng.standard_normal(shape)
        elif last == "beta":
            value = 0.1 * rng.standard_normal(shape)
        else:
            raise AssertionError(w.name)
        w.assign(value.astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    ap.add_argument("--keras3-check", nargs=2, metavar=("MODEL_DIR", "IO"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.keras3_check:
        keras3_check(*args.keras3_check)
        return
    import tf_keras
    from safetensors.numpy import load_file

    # 1. The notebook's 64x64x3 network: parameter count.
    u64 = U_NET((64, 64, 3))
    params_64 = u64.count_params()
    assert params_64 == 6179331, params_64
    del u64
    tf.keras.backend.clear_session()

    # 2. The fixture network with seeded weights.
    u_net = U_NET(**FIXTURE)
    params_fixture = u_net.count_params()
    rng = np.random.default_rng(SEED)
    init_weights(u_net, rng)
    H, W_, C = FIXTURE["img_size"]
    x = rng.standard_normal((BATCH, C, H, W_)).astype(np.float32)
    t = np.array(T_FORWARD, dtype=np.float32)
    ddim_noise = rng.standard_normal((BATCH, C, H, W_)).astype(np.float32)

    out_dir = os.path.abspath(args.out_dir)
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(out_dir, exist_ok=True)

    # 3. Checkpoint the notebook's way (cell 8, then cell 11's ckpt_manager.save()), convert it.
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = tf.train.Checkpoint(u_net=u_net)
        ckpt_manager = tf.train.CheckpointManager(ckpt, os.path.join(tmp, "models_weight"), max_to_keep=5)
        prefix = ckpt_manager.save()
        ckpt_keys = [k for k, _ in tf.train.list_variables(prefix)]
        assert all(k.startswith("u_net/layer_with_weights-") for k in ckpt_keys
                   if k not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"))
        subprocess.run([sys.executable, os.path.join(SCRIPTS, "convert_notebook_checkpoint.py"), prefix, model_dir,
                        "--image-size", str(H), "--force"], check=True)
    weights = load_file(os.path.join(model_dir, conv.WEIGHTS_FILE))
    config = json.load(open(os.path.join(model_dir, conv.CONFIG_FILE)))
    assert sum(v.size for v in weights.values()) == params_fixture

    # 4. Forward pass (NHWC in Keras), intermediates, the notebook's DDIM loop.
    x_nhwc = x.transpose(0, 2, 3, 1)
    out = np.array(u_net([x_nhwc, t])).transpose(0, 3, 1, 2)
    out_int = np.array(u_net([x_nhwc, t.astype(np.int64)])).transpose(0, 3, 1, 2)
    assert np.array_equal(out, out_int), "int64 and float32 timesteps differ"
    temb_layer = next(l for l in u_net.layers if isinstance(l, SinusoidalPosEmb))
    attn0 = next(l for l in u_net.layers if isinstance(l, LinearAttention))
    probe = tf_keras.Model(u_net.inputs, [temb_layer.output, attn0.input, attn0.output])
    temb, attn_in, attn_out = [np.array(a) for a in probe([x_nhwc, t])]
    temb = temb.reshape(BATCH, -1)
    attn_in, attn_out = attn_in.transpose(0, 3, 1, 2), attn_out.transpose(0, 3, 1, 2)

    x_final, called, (eps_first, x_after_1) = notebook_ddim_loop(u_net, tf.constant(ddim_noise.transpose(0, 2, 3, 1)),
                                                                 BATCH)
    assert isinstance(x_final, tf.Tensor) and x_final.dtype == tf.float32, (type(x_final), x_final.dtype)
    assert called == list(range(995, 0, -5)) and len(called) == 199, called
    ddim_sample = np.array(x_final).transpose(0, 3, 1, 2)
    # sensitivity of the loop: the same loop from noise * (1 + 2^-20)
    x_pert, _, _ = notebook_ddim_loop(u_net, tf.constant((ddim_noise * (1 + 2.0 ** -20)).transpose(0, 2, 3, 1)), BATCH)
    pert_diff = float(np.abs(np.array(x_pert).transpose(0, 3, 1, 2) - ddim_sample).max())

    # 5a. Float64 numpy implementation of the spec from the converted weights.
    ref = NumpyNet(weights, config)
    ref_out = ref(x.astype(np.float64), t)
    diffs = {
        "out": float(np.abs(ref_out - out).max()),
        "temb": float(np.abs(ref.trace["temb"] - temb).max()),
        "attn_in": float(np.abs(ref.trace["attn_in"] - attn_in).max()),
        "attn_out": float(np.abs(ref.trace["attn_out"] - attn_out).max()),
    }
    for k, d in diffs.items():
        scale = float(np.abs({"out": out, "temb": temb, "attn_in": attn_in, "attn_out": attn_out}[k]).max())
        assert d <= 1e-5 * max(scale, 1.0), f"numpy spec implementation differs from Keras on {k}: {d} (scale {scale})"
    ref_sample = numpy_ddim(ref, ddim_noise.astype(np.float64))
    ddim_f64_diff = float(np.abs(ref_sample - ddim_sample).max())
    assert ddim_f64_diff <= 1e-3 * float(np.abs(ddim_sample).max()), ddim_f64_diff

    tensors = {
        "x": x, "t": t, "out": out,
        "temb": temb.astype(np.float32), "attn_in": attn_in, "attn_out": attn_out,
        "ddim_noise": ddim_noise, "ddim_sample": ddim_sample.astype(np.float32),
        "ddim_timesteps": np.array(called, dtype=np.float32),
        "ddim_eps_first": eps_first.transpose(0, 3, 1, 2).astype(np.float32),
        "ddim_x_after_1": x_after_1.transpose(0, 3, 1, 2).astype(np.float32),
    }
    metadata = {
        "source": "github.com/Yukino1010/Diffusion_Model diffusion.ipynb (blob 901c74d1, commit 233570e6)",
        "spec": "Documentation/tf-article-network.md",
        "generator": "scripts/make_tf_article_fixtures.py (tf-keras %s, TensorFlow %s, numpy %s, TF_ENABLE_ONEDNN_OPTS=0, "
                     "1 thread, op determinism)" % (tf_keras.__version__, tf.__version__, np.__version__),
        "layout": "every image tensor NCHW float32 (Keras ran NHWC; inputs transposed in, outputs transposed out)",
        "model": "model/ (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json) written by "
                 "scripts/convert_notebook_checkpoint.py from a tf.train.Checkpoint(u_net=u_net) + CheckpointManager "
                 "checkpoint (ckpt-1) of the Keras model",
        "config": json.dumps(config, sort_keys=True),
        "params_64": str(params_64),
        "params_fixture": str(params_fixture),
        "weights_init": f"numpy default_rng({SEED}) in u_net.weights order: kernels N(0,1)/sqrt(fan_in), biases "
                        "0.1*N(0,1), GroupNorm/LayerNorm gamma 1+0.1*N(0,1), beta 0.1*N(0,1) (final conv nonzero)",
        "x": "[B,C,H,W] = [2,3,16,16] input noisy images, N(0,1) from the same rng after the weights",
        "t": "[B] float32 timesteps holding integers, fed as the notebook does (u_net([x, t]); Keras expands [B] to "
             "[B,1]); int64 t gives a bit-identical out",
        "out": "[B,3,H,W] u_net([x, t]) = predicted noise",
        "temb": "[B,32] output of SinusoidalPosEmb (after dense2 + swish) for t",
        "attn_in": "[B,16,16,16] input of down.0.attn (output of down.0.res.1) for x, t",
        "attn_out": "[B,16,16,16] output of down.0.attn (before AveragePooling2D) for x, t",
        "ddim_noise": "[B,3,H,W] initial x of the DDIM loop (notebook: tf.random.normal((16,64,64,3)); here B=2 from the rng)",
        "ddim_sample": "[B,3,H,W] x returned by the notebook's generate_save_img loop: all 199 steps, as in the notebook "
                       "(the loop's last update, at t=5, uses alpha_bar[0]=1, so it returns that step's x0 prediction; "
                       "no clipping)",
        "ddim_timesteps": "[199] the t the loop called the network at: 995, 990, ..., 5 (never 0)",
        "ddim_steps": "199",
        "ddim_eps_first": "[B,3,H,W] network output of the first DDIM call (t=995, on ddim_noise)",
        "ddim_x_after_1": "[B,3,H,W] x after the first DDIM update (t=995 -> 990)",
        "ddim_formula": "x <- sqrt(abar[t-5]) * (x - sqrt(1-abar[t]) * eps) / sqrt(abar[t]) + sqrt(1-abar[t-5]) * eps, "
                        "abar[0]=1, abar[t]=prod_{s<t}(1-beta_s), beta=linspace(1e-4,0.02,1000); computed by TF in float32 "
                        "with the float64 coefficients rounded to float32",
        "check_numpy_f64_max_abs_diff": json.dumps(diffs, sort_keys=True),
        "check_ddim_numpy_f64_max_abs_diff": repr(ddim_f64_diff),
        "check_ddim_noise_perturbed_2^-20_max_abs_diff": repr(pert_diff),
        "max_abs_out": repr(float(np.abs(out).max())),
        "max_abs_ddim_sample": repr(float(np.abs(ddim_sample).max())),
    }
    io_path = os.path.join(out_dir, "io.safetensors")
    conv.write_safetensors(io_path + ".tmp", tensors, metadata)
    os.replace(io_path + ".tmp", io_path)
    back = load_file(io_path)
    assert set(back) == set(tensors) and all(np.array_equal(back[k], tensors[k]) for k in tensors)

    # 5b. The Keras 3 layout converts to the same tensors.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    subprocess.run([sys.executable, os.path.abspath(__file__), "--keras3-check", model_dir, io_path], check=True, env=env)

    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out_dir) for f in fs)
    assert total < MAX_TOTAL_BYTES, total
    print(f"params_64 {params_64}, params_fixture {params_fixture}; max|out| {np.abs(out).max():.6g}, "
          f"max|ddim_sample| {np.abs(ddim_sample).max():.6g}; numpy f64 diffs {diffs}, ddim f64 diff {ddim_f64_diff:.3g}, "
          f"perturbed-noise diff {pert_diff:.3g}; {total} bytes in {out_dir}")


if __name__ == "__main__":
    main()
