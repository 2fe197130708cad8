#!/usr/bin/env python3
"""Keras' Adam, as the TensorFlow notebook trains with it, for Haze's `AdamOptimizer(.adamKeras)`.

Keras adds ε to √v before the bias correction (θ ← θ − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε)), where
PyTorch adds it after (θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)); the two differ where gradients
are as small as ε. This script applies `tf.keras.optimizers.Adam` (tf-keras, Keras 2, as the
notebook: TF_USE_LEGACY_KERAS=1; epsilon 1e-7, the notebook's default) for 6 steps to one variable
of 96 values whose gradients span 1e-9 … 1 (so that ε matters for some and not for others), and
writes Tests/HazeNNTests/Fixtures/keras_adam.safetensors:

  initial   [96]      the variable before the first step
  gradients [6, 96]   the gradient of each step
  final     [96]      the variable after the 6 steps
  __metadata__: learning_rate, beta_1, beta_2, epsilon, steps, tf_version

Needs Python 3 with tensorflow-cpu, tf-keras, numpy and safetensors (the venv /root/tf-venv):

    TF_USE_LEGACY_KERAS=1 /root/tf-venv/bin/python scripts/make_keras_adam_fixture.py
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "HazeNNTests", "Fixtures", "keras_adam.safetensors")
LR, B1, B2, EPS, STEPS = 1e-3, 0.9, 0.999, 1e-7, 6


def main():
    rng = np.random.default_rng(21)
    initial = rng.normal(0, 0.5, 96).astype(np.float32)
    scales = np.logspace(-9, 0, 96).astype(np.float32)                 # per value: 1e-9 … 1
    gradients = (rng.normal(0, 1, (STEPS, 96)) * scales).astype(np.float32)
    variable = tf.Variable(initial)
    optimizer = tf.keras.optimizers.Adam(learning_rate=LR, beta_1=B1, beta_2=B2, epsilon=EPS)
    for g in gradients:
        optimizer.apply_gradients([(tf.constant(g), variable)])
    final = variable.numpy()
    assert np.any(final != initial)
    save_file({"initial": initial, "gradients": gradients, "final": final}, os.path.normpath(OUT),
              metadata={"learning_rate": repr(LR), "beta_1": repr(B1), "beta_2": repr(B2), "epsilon": repr(EPS),
                        "steps": str(STEPS), "tf_version": tf.__version__})
    print("wrote", os.path.normpath(OUT), "| tf", tf.__version__, "| optimizer", type(optimizer).__module__)


if __name__ == "__main__":
    main()
