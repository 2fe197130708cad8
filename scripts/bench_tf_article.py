#!/usr/bin/env python3
"""Benchmark the TensorFlow notebook's own code: the train step, the forward pass and the DDIM loop.

Source: github.com/Yukino1010/Diffusion_Model, diffusion.ipynb (blob 901c74d1, commit 233570e6); the
network is specified in Documentation/tf-article-network.md. The model-building code (cells 5-7) is
scripts/tf_article_keras.py (the notebook's code, tfa GroupNormalization replaced by keras
GroupNormalization), shared with make_tf_article_fixtures.py; unlike that script, this one does not pin
TF to 1 thread, turn on op determinism or turn oneDNN off, none of which belong in a benchmark. TF runs with its defaults
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

# The notebook's schedule, DDIM step and network (cells 4, 5-7, 9): scripts/tf_article_keras.py.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tf_article_keras import *  # noqa: E402,F401,F403



# ---------------------------------------------------------------------------
# Cells 4, 8, 9, 10: schedule, add_noise, optimizer/loss, ddim + generation loop, train_step (verbatim but
# for the model/optimizer passed in and the plotting left out).
# ---------------------------------------------------------------------------

sqrt_alpha_bar = np.sqrt(alpha_bar)
one_minus_sqrt_alpha_bar = np.sqrt(1-alpha_bar)


def add_noise(x_0, t):
    noise = np.random.normal(size=x_0.shape)
    sqrt_alpha_bar_t = np.reshape(np.take(sqrt_alpha_bar, t), [-1, 1, 1, 1])
    one_minus_sqrt_alpha_bar_t = np.reshape(np.take(one_minus_sqrt_alpha_bar, t), [-1, 1, 1, 1])
    noisy_img = sqrt_alpha_bar_t * x_0 + one_minus_sqrt_alpha_bar_t * noise
    return noisy_img, noise


def make_train_step(u_net, optimizer, loss_fn, noising=None):
    """Cell 10's train_step, verbatim but for `noising` (add_noise unless given)."""
    noising = noising or add_noise

    def train_step(inp_img):
        t_size = inp_img.shape[0]
        t = tf.random.uniform(shape=[t_size,], minval=0, maxval=timesteps, dtype=tf.int32)
        noisy_img, noise = noising(inp_img, t)

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
    """The same step as a tf.function (add_noise in TF ops: np.take/np.random cannot run in a graph)."""
    return tf.function(make_train_step(u_net, optimizer, loss_fn, noising=add_noise_tf))


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
