"""The TensorFlow notebook's code (github.com/Yukino1010/Diffusion_Model, diffusion.ipynb): its schedule
(cell 4) and DDIM step (cell 9), verbatim, and its U-Net (cells 5-7) as tf-keras code: the notebook's own, with keras' GroupNormalization standing in for
tfa.layers.GroupNormalization (same variables) and U_NET's widths as arguments whose defaults are the
notebook's. Shared by make_tf_article_fixtures.py and bench_tf_article.py.

Importing it configures nothing: set TF_USE_LEGACY_KERAS=1 (and any TensorFlow threading) before.
Spec: Documentation/tf-article-network.md.
"""
import math

import numpy as np
import tensorflow as tf

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


# The schedule (cell 4: alpha-bar shifted by one) and the DDIM step and step counts (cell 9).
timesteps = 1000
beta = np.linspace(0.0001, 0.02, timesteps)
alpha = 1 - beta
alpha_bar = np.cumprod(alpha, 0)
alpha_bar = np.concatenate((np.array([1.]), alpha_bar[:-1]), axis=0)


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
