#!/usr/bin/env python3
"""Benchmark the TensorFlow notebook's own code: the train step, the forward pass and the DDIM loop.

Source: github.com/Yukino1010/Diffusion_Model, diffusion.ipynb (blob 901c74d1, commit 233570e6); the
network is specified in Documentation/tf-article-network.md. The model-building code (cells 5-7) is
copied from scripts/make_tf_article_fixtures.py (the notebook's code, tfa GroupNormalization replaced by
keras GroupNormalization), not imported: that script pins TF to 1 thread, turns on op determinism and
turns oneDNN off at import, none of which belong in a benchmark. Here TF runs with its defaults
(TF_ENABLE_ONEDNN_OPTS as the environment sets it) at the notebook's 64x64x3 size and default widths
(6,179,331 parameters, asserted).

Measured (random inputs in [-1, 1], NHWC float32; TF pinned to --threads intra-op threads, 1 inter-op):
 - train: the notebook's cell 10 train_step (t ~ U{0..999} int32, add_noise of cell 4 with the shifted
   alpha-bar schedule and float64 numpy noise, MSE on the noise, Adam(1e-4).apply_gradients) at batch
   --train-batch: once eagerly, exactly as the notebook runs it, and once as a tf.function (add_noise
   ported to TF ops with the same dtypes, since np.take/np.random cannot run inside a graph);
   3 warm-up steps, then the median of --iterations steps;
 - infer: u_net([x, t]) at batch --infer-batch, eager (model call) and tf.function; 3 warm-ups, median of
   --iterations;
 - --generate: the notebook's cell 9 generation loop (16 images, 199 eager u_net calls at t = 995..5 plus
   the numpy ddim update), timed once in full after one warm-up call; with --generate-calls K only the
   first K iterations of that loop are timed and generate_s = (their mean) x 199, an estimate
   ("generate_method" in the JSON says which).
"train_ms" and "infer_ms" are the better (smaller) of the eager and tf.function medians.

Prints one JSON line: {"engine": "tensorflow", "tf_version", "threads", "train_batch", "train_ms_eager",
"train_ms_function", "train_ms", "infer_batch", "infer_ms_eager", "infer_ms_function", "infer_ms",
"generate_s" (null without --generate), "generate_method", "params"}; times in milliseconds except
generate_s (seconds).

Needs Python 3 with tensorflow-cpu and tf-keras (and numpy); the venv /root/tf-venv has them. Run from the
repository root:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE TF_USE_LEGACY_KERAS=1 /root/tf-venv/bin/python \
        scripts/bench_tf_article.py [--threads 2] [--train-batch 32] [--infer-batch 16] [--iterations 10] \
        [--generate [--generate-calls K]]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

P = argparse.ArgumentParser(description=__doc__.split("\n")[0])
P.add_argument("--threads", type=int, default=2, help="TF intra-op threads (inter-op is 1); default 2")
P.add_argument("--train-batch", type=int, default=32, help="train-step batch; default 32 (the notebook's)")
P.add_argument("--infer-batch", type=int, default=16, help="forward-pass batch; default 16")
P.add_argument("--iterations", type=int, default=10, help="timed steps per measurement (median); default 10")
P.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per measurement; default 3")
P.add_argument("--generate", action="store_true", help="also time the notebook's 199-call DDIM generation")
P.add_argument("--generate-calls", type=int, default=None, metavar="K",
               help="with --generate: time only K loop iterations and report mean x 199 (an estimate)")
ARGS = P.parse_args()

os.environ["TF_USE_LEGACY_KERAS"] = "1"       # tf.keras = tf-keras (Keras 2), as in the notebook
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

NOTEBOOK_PARAMS = 6179331

# ---------------------------------------------------------------------------
# The notebook's network (cells 5-7), copied from scripts/make_tf_article_fixtures.py.
# ---------------------------------------------------------------------------

from tensorflow.keras.layers import Conv2D, Dense, UpSampling2D, Add, \
    AveragePooling2D, Concatenate, Input, Activation, LayerNormalization, GroupNormalization
from tensorflow.keras import Model, Sequential

N_BLOCK = 2

class LinearAttention(tf.keras.layers.Layer):
    def __init__(self, dim, heads=4, dim_head=32):
        super(LinearAttention, self).__init__()
        self.scale = dim_head ** -0.5
        self.heads = heads
        self.dim_head = dim_head
        self.hidden_dim = dim_head * heads

        self.to_qkv = Conv2D(filters=self.hidden_dim * 3, kernel_size=1, strides=1, use_bias=False)

        self.to_out = Sequential([
            Conv2D(filters=dim, kernel_size=1, strides=1),
            LayerNormalization()
        ])

    def call(self, x, training=True):
        residual = x
        b, h, w, c = x.shape

        qkv = self.to_qkv(x)
        q, k, v = tf.split(qkv, num_or_size_splits=3, axis=-1)

        q = tf.reshape(q, [-1, self.heads, self.dim_head, h*w])
        k = tf.reshape(k, [-1, self.heads, self.dim_head, h*w])
        v = tf.reshape(v, [-1, self.heads, self.dim_head, h*w])

        q = tf.nn.softmax(q, axis=-2)
        k = tf.nn.softmax(k, axis=-1)
        q = q * self.scale
        context = tf.einsum('b h d n, b h e n -> b h d e', k, v)

        out = tf.einsum('b h d e, b h d n -> b h e n', context, q)
        out = tf.reshape(out, [-1, h, w, self.hidden_dim])
        out = self.to_out(out, training=training)

        return out + residual

def resBlock(inp, filter, t):
    if inp.shape[-1] == filter:
        residual = inp
    else:
        residual = Conv2D(filter,  1, 1, padding='same')(inp)

    x = Conv2D(filter, 3, 1, padding='same')(inp)
    x = GroupNormalization(8, epsilon=1e-05)(x)   # notebook: tfa.layers.GroupNormalization(8, epsilon=1e-05)

    t = Dense(filter*2)(t)
    gamma, beta = tf.split(t, num_or_size_splits=2, axis=-1)
    x = x * (gamma + 1) + beta
    x = Activation('swish')(x)

    x = Conv2D(filter, 3, 1, padding='same')(x)
    x = GroupNormalization(8, epsilon=1e-05)(x)
    x = Activation('swish')(x)
    out = Add()([x, residual])
    return out

def downBlock(x, skips, filter, n_block, t):
    for _ in range(n_block):
        x = resBlock(x, filter, t)
        skips.append(x)

    x = LinearAttention(filter)(x)
    out = AveragePooling2D()(x)
    return out

def upBlock(x, skips, filter, n_block, t):
    x = UpSampling2D()(x)
    for _ in range(n_block):
        x = Concatenate()([x, skips.pop()])
        x = resBlock(x, filter, t)

    x = LinearAttention(filter)(x)
    return x

class SinusoidalPosEmb(tf.keras.layers.Layer):
    def __init__(self, dim=32, max_positions=10000):
        super(SinusoidalPosEmb, self).__init__()
        self.dim = dim
        self.max_positions = max_positions
        self.dense1 = Dense(self.dim, activation='swish')
        self.dense2 = Dense(self.dim, activation='swish')

    def call(self, x, training=True):
        x = tf.cast(x, tf.float32)
        half_dim = self.dim // 2
        emb = math.log(self.max_positions) / (half_dim - 1)
        emb = tf.exp(tf.range(half_dim, dtype=tf.float32) * -emb)
        emb = x * emb[None, :]

        emb = tf.concat([tf.sin(emb), tf.cos(emb)], axis=-1)
        emb = tf.reshape(emb, [-1, 1, 1, self.dim])
        emb = self.dense1(emb)
        emb = self.dense2(emb)
        return emb

def U_NET(img_size, init_filter=32, filters=(64, 128, 128), mid_filter=256, final_filter=32):
    noisy_img = Input(img_size)
    time = Input((1,))

    e = SinusoidalPosEmb()(time)
    x = Conv2D(init_filter, 1, 1, padding='same')(noisy_img)
    skips = []

    for f in filters:                      # notebook: downBlock(x, skips, 64/128/128, N_BLOCK, e)
        x = downBlock(x, skips, f, N_BLOCK, e)

    for _ in range(N_BLOCK):
        x = resBlock(x, mid_filter, e)

    for f in reversed(filters):            # notebook: upBlock(x, skips, 128/128/64, N_BLOCK, e)
        x = upBlock(x, skips, f, N_BLOCK, e)
    x = resBlock(x, final_filter, e)

    out = Conv2D(3, 1, 1, padding='same', kernel_initializer="zeros")(x)
    return Model([noisy_img, time], out)

# ---------------------------------------------------------------------------
# Cells 4, 8, 9, 10: schedule, add_noise, optimizer/loss, ddim + generation loop, train_step (verbatim but
# for the model/optimizer passed in and the plotting left out).
# ---------------------------------------------------------------------------

timesteps = 1000
beta = np.linspace(0.0001, 0.02, timesteps)
alpha = 1 - beta
alpha_bar = np.cumprod(alpha, 0)
alpha_bar = np.concatenate((np.array([1.]), alpha_bar[:-1]), axis=0)
sqrt_alpha_bar = np.sqrt(alpha_bar)
one_minus_sqrt_alpha_bar = np.sqrt(1-alpha_bar)


def add_noise(x_0, t):
    noise = np.random.normal(size=x_0.shape)
    sqrt_alpha_bar_t = np.reshape(np.take(sqrt_alpha_bar, t), [-1, 1, 1, 1])
    one_minus_sqrt_alpha_bar_t = np.reshape(np.take(one_minus_sqrt_alpha_bar, t), [-1, 1, 1, 1])
    noisy_img = sqrt_alpha_bar_t * x_0 + one_minus_sqrt_alpha_bar_t * noise
    return noisy_img, noise


def ddim(x_t, pred_noise, t, step_size):
    alpha_t_bar = np.reshape(np.take(alpha_bar, t), [-1, 1, 1, 1])
    alpha_t_minus_one = np.reshape(np.take(alpha_bar, t-step_size), [-1, 1, 1, 1])

    pred = (x_t - ((1 - alpha_t_bar) ** 0.5) * pred_noise) / (alpha_t_bar ** 0.5)
    pred = (alpha_t_minus_one ** 0.5) * pred

    pred = pred + ((1 - alpha_t_minus_one) ** 0.5) * pred_noise
    return pred


inference_timesteps = 200
inference_range = range(0, timesteps, timesteps // inference_timesteps)
inf_step = timesteps // inference_timesteps


def make_train_step(u_net, optimizer, loss_fn):
    def train_step(inp_img):                                   # cell 10, verbatim
        t_size = inp_img.shape[0]
        t = tf.random.uniform(shape=[t_size,], minval=0, maxval=timesteps, dtype=tf.int32)
        noisy_img, noise = add_noise(inp_img, t)

        with tf.GradientTape() as tape:
            pre_noise = u_net([noisy_img, t])
            loss = loss_fn(pre_noise, noise)

        gradients = tape.gradient(loss, u_net.trainable_variables)
        optimizer.apply_gradients(zip(gradients, u_net.trainable_variables))
        return loss
    return train_step


SQRT_AB = tf.constant(sqrt_alpha_bar, tf.float64)
SQRT_1MAB = tf.constant(one_minus_sqrt_alpha_bar, tf.float64)


def add_noise_tf(x_0, t):
    """add_noise in TF ops, same dtypes as the eager run: float64 noise and coefficients; the x0 term in
    float32 (the float64 coefficient rounded to the image's float32), the noise term in float64 then rounded."""
    noise = tf.random.normal(tf.shape(x_0), dtype=tf.float64)
    a = tf.reshape(tf.gather(SQRT_AB, t), [-1, 1, 1, 1])
    s = tf.reshape(tf.gather(SQRT_1MAB, t), [-1, 1, 1, 1])
    noisy_img = tf.cast(a, x_0.dtype) * x_0 + tf.cast(s * noise, x_0.dtype)
    return noisy_img, noise


def make_train_step_function(u_net, optimizer, loss_fn):
    @tf.function
    def train_step(inp_img):
        t_size = inp_img.shape[0]
        t = tf.random.uniform(shape=[t_size,], minval=0, maxval=timesteps, dtype=tf.int32)
        noisy_img, noise = add_noise_tf(inp_img, t)

        with tf.GradientTape() as tape:
            pre_noise = u_net([noisy_img, t])
            loss = loss_fn(pre_noise, noise)

        gradients = tape.gradient(loss, u_net.trainable_variables)
        optimizer.apply_gradients(zip(gradients, u_net.trainable_variables))
        return loss
    return train_step


def generation_loop(u_net, max_calls=None):
    """generate_save_img's loop (cell 9 l. 21-29). Returns (x, number of u_net calls, per-iteration seconds)."""
    x = tf.random.normal((16, 64, 64, 3))
    times = []
    for index, i in enumerate(reversed(range(inference_timesteps))):
        if max_calls is not None and index >= max_calls:
            break
        s = time.perf_counter()
        t = np.repeat(inference_range[i], 16)

        pred_noise = u_net([x, t])
        x = ddim(x, pred_noise, t, inf_step)
        times.append(time.perf_counter() - s)

        if any(t-inf_step) == 0:
            break
    return x, len(times), times

# ---------------------------------------------------------------------------


def median_ms(fn, warmup, iterations):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        s = time.perf_counter()
        fn()
        times.append(time.perf_counter() - s)
    return round(1000.0 * statistics.median(times), 3)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    tf.random.set_seed(0)
    np.random.seed(0)
    u_net = U_NET((64, 64, 3))                                 # cell 7
    params = int(u_net.count_params())
    assert params == NOTEBOOK_PARAMS, f"parameter count {params} != {NOTEBOOK_PARAMS}"
    optimizer = tf.keras.optimizers.Adam(learning_rate=1e-4)   # cell 8
    loss_fn = tf.keras.losses.MeanSquaredError()
    log(f"TF {tf.__version__}, {ARGS.threads} intra-op threads, {params} params")

    # Train step.
    img = tf.random.uniform((ARGS.train_batch, 64, 64, 3), -1.0, 1.0, dtype=tf.float32)
    eager_step = make_train_step(u_net, optimizer, loss_fn)
    func_step = make_train_step_function(u_net, optimizer, loss_fn)
    train_eager = median_ms(lambda: float(eager_step(img)), ARGS.warmup, ARGS.iterations)
    log(f"train eager {train_eager} ms")
    train_func = median_ms(lambda: float(func_step(img)), ARGS.warmup, ARGS.iterations)
    log(f"train tf.function {train_func} ms")

    # Forward pass.
    B = ARGS.infer_batch
    x = tf.random.uniform((B, 64, 64, 3), -1.0, 1.0, dtype=tf.float32)
    t = tf.random.uniform((B,), 0, timesteps, dtype=tf.int32)
    forward = tf.function(lambda x, t: u_net([x, t]))
    infer_eager = median_ms(lambda: u_net([x, t]).numpy(), ARGS.warmup, ARGS.iterations)
    log(f"infer eager {infer_eager} ms")
    infer_func = median_ms(lambda: forward(x, t).numpy(), ARGS.warmup, ARGS.iterations)
    log(f"infer tf.function {infer_func} ms")

    generate_s, generate_method = None, None
    if ARGS.generate:
        u_net([tf.random.normal((16, 64, 64, 3)), np.repeat(995, 16)])        # warm-up call at batch 16
        if ARGS.generate_calls:
            _, n, times = generation_loop(u_net, ARGS.generate_calls)
            generate_s = round(statistics.mean(times) * 199, 3)
            generate_method = f"estimate: mean of {n} loop iterations x 199"
        else:
            s = time.perf_counter()
            out, n, _ = generation_loop(u_net)
            np.asarray(out)
            generate_s = round(time.perf_counter() - s, 3)
            assert n == 199, n
            generate_method = "full: 199 calls, timed once"
        log(f"generate {generate_s} s ({generate_method})")

    print(json.dumps({
        "engine": "tensorflow", "tf_version": tf.__version__, "threads": ARGS.threads,
        "train_batch": ARGS.train_batch, "train_ms_eager": train_eager, "train_ms_function": train_func,
        "train_ms": min(train_eager, train_func),
        "infer_batch": B, "infer_ms_eager": infer_eager, "infer_ms_function": infer_func,
        "infer_ms": min(infer_eager, infer_func),
        "generate_s": generate_s, "generate_method": generate_method, "params": params,
    }), flush=True)


if __name__ == "__main__":
    main()
