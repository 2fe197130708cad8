#!/usr/bin/env python3
"""Tests of scripts/convert_notebook_checkpoint.py and its reverse, scripts/export_notebook_checkpoint.py, run
as a user runs them (a subprocess per conversion).

Builds small versions of the TensorFlow notebook's U-Net (scripts/tf_article_keras.py at 16x16x3, channels
init 8, down (16, 24, 24), middle 32, final 8, as make_tf_article_fixtures.py does), saves them the
notebook's way (tf.train.Checkpoint(u_net=u_net) + tf.train.CheckpointManager) into a temporary directory,
in the Keras 2 layout (tf-keras) and, through a child process without TF_USE_LEGACY_KERAS, the Keras 3
layout, and checks:
  - good checkpoints convert: exit 0, config.json + diffusion_pytorch_model.safetensors +
    scheduler_config.json, as many weights as the Keras model has parameters, every Haze tensor one
    Keras variable (same values); other channel widths and levels are inferred;
  - bad input fails with exit 1 and an "error: ..." line naming the file, no traceback, and nothing
    written: a prefix that does not exist, a missing .index or .data-00000-of-00001 file, a truncated
    data file, a checkpoint without a u_net root, a plain Dense model saved as u_net, the notebook's
    BatchNormalization variant and a variant without LinearAttention. Each failure runs twice: with
    OUT_DIR absent (it must still be absent, and no OUT_DIR.tmp-* left) and with OUT_DIR an existing
    empty directory and --force (it must be left as it was);
  - an existing OUT_DIR without --force is refused and left as it was;
  - --help names the requirements (tensorflow-cpu, tf-keras, numpy, safetensors);
  - the export: a converted folder exported back restores into a fresh notebook model (the notebook's
    tf.train.Checkpoint(u_net=u_net).restore) with every variable equal to the original's, bit for bit;
    the checked-in Haze fixture folder (Tests/HazeNNTests/Fixtures/tf_article/model) exported and restored
    gives TensorFlow's recorded outputs; bad folders (no config.json, a training checkpoint's parent,
    another network, a config the notebook's code cannot build, missing or misshapen tensors, an existing
    OUT_DIR) fail with exit 1 and one "error: ..." line naming the file, nothing written.

Needs Python 3 with tensorflow-cpu, tf-keras, numpy and safetensors (TensorFlow on one thread). From the
repository root:

    TF_USE_LEGACY_KERAS=1 /root/tf-venv/bin/python scripts/test_convert_notebook_checkpoint.py [-v]

(make test-scripts does this.)
"""
import collections
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

KERAS3_CHILD = "--keras3-child"
if KERAS3_CHILD not in sys.argv:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"   # tf.keras = tf-keras (Keras 2), as in the notebook
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")          # inherited by the converter's processes too

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(SCRIPTS, "convert_notebook_checkpoint.py")
EXPORTER = os.path.join(SCRIPTS, "export_notebook_checkpoint.py")
FIXTURE = os.path.join(os.path.dirname(SCRIPTS), "Tests", "HazeNNTests", "Fixtures", "tf_article")
SIZE = 16
SMALL = dict(img_size=(SIZE, SIZE, 3), init_filter=8, filters=(16, 24, 24), mid_filter=32, final_filter=8)
MODEL_FILES = ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"]
REQUIREMENTS = ["tensorflow-cpu", "tf-keras", "numpy", "safetensors"]


def import_tf():
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def randomize(model, seed):
    """Distinct values in every variable (the defaults have zero biases, unit gammas, a zero final conv),
    so that each converted tensor can be traced to one Keras variable."""
    import numpy as np
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign((0.1 * rng.standard_normal(tuple(w.shape))).astype(np.float32))


def save_notebook_way(tf, directory, **objects):
    """The notebook's cells 8 and 11: tf.train.Checkpoint(u_net=u_net), CheckpointManager(...).save()."""
    return tf.train.CheckpointManager(tf.train.Checkpoint(**objects), directory, max_to_keep=5).save()


def value_signatures(arrays):
    """Multiset of the sorted values of each array: equal for a tensor and its transpose."""
    import numpy as np
    return collections.Counter(np.sort(np.asarray(a, dtype=np.float32).ravel()).tobytes() for a in arrays)


# ---------------------------------------------------------------------------
# Keras 3: a port of the notebook's network (keras.ops.split where the notebook calls tf.split on a
# symbolic tensor, which Keras 3 refuses), built and saved in a child process without TF_USE_LEGACY_KERAS.
# ---------------------------------------------------------------------------

def keras3_child(directory):
    tf = import_tf()
    import keras
    import numpy as np
    from keras import layers as KL
    assert keras.__version__.startswith("3"), keras.__version__

    class LinearAttention(KL.Layer):
        def __init__(self, dim, heads=4, dim_head=32, **kw):
            super().__init__(**kw)
            self.scale, self.heads, self.dim_head, self.hidden_dim = dim_head ** -0.5, heads, dim_head, heads * dim_head
            self.to_qkv = KL.Conv2D(self.hidden_dim * 3, 1, 1, use_bias=False)
            self.to_out = keras.Sequential([KL.Conv2D(dim, 1, 1), KL.LayerNormalization()])

        def call(self, x, training=True):
            b, h, w, c = x.shape
            q, k, v = tf.split(self.to_qkv(x), num_or_size_splits=3, axis=-1)
            q = tf.nn.softmax(tf.reshape(q, [-1, self.heads, self.dim_head, h * w]), axis=-2) * self.scale
            k = tf.nn.softmax(tf.reshape(k, [-1, self.heads, self.dim_head, h * w]), axis=-1)
            v = tf.reshape(v, [-1, self.heads, self.dim_head, h * w])
            context = tf.einsum('b h d n, b h e n -> b h d e', k, v)
            out = tf.reshape(tf.einsum('b h d e, b h d n -> b h e n', context, q), [-1, h, w, self.hidden_dim])
            return self.to_out(out, training=training) + x

    class SinusoidalPosEmb(KL.Layer):
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

    def res_block(inp, f, t):
        residual = inp if inp.shape[-1] == f else KL.Conv2D(f, 1, 1, padding='same')(inp)
        x = KL.GroupNormalization(8, epsilon=1e-5)(KL.Conv2D(f, 3, 1, padding='same')(inp))
        gamma, beta = keras.ops.split(KL.Dense(2 * f)(t), 2, axis=-1)
        x = KL.Activation('swish')(x * (gamma + 1) + beta)
        x = KL.GroupNormalization(8, epsilon=1e-5)(KL.Conv2D(f, 3, 1, padding='same')(x))
        return KL.Add()([KL.Activation('swish')(x), residual])

    noisy, time = KL.Input(SMALL["img_size"]), KL.Input((1,))
    e = SinusoidalPosEmb()(time)
    x = KL.Conv2D(SMALL["init_filter"], 1, 1, padding='same')(noisy)
    skips = []
    for f in SMALL["filters"]:
        for _ in range(2):
            x = res_block(x, f, e)
            skips.append(x)
        x = KL.AveragePooling2D(2)(LinearAttention(f)(x))
    for _ in range(2):
        x = res_block(x, SMALL["mid_filter"], e)
    for f in reversed(SMALL["filters"]):
        x = KL.UpSampling2D(2)(x)
        for _ in range(2):
            x = res_block(KL.Concatenate()([x, skips.pop()]), f, e)
        x = LinearAttention(f)(x)
    x = res_block(x, SMALL["final_filter"], e)
    model = keras.Model([noisy, time], KL.Conv2D(3, 1, 1, padding='same', kernel_initializer="zeros")(x))
    randomize(model, 3)
    prefix = save_notebook_way(tf, directory, u_net=model)
    np.savez(os.path.join(directory, "weights.npz"), *[np.asarray(w) for w in model.weights])
    print(json.dumps({"prefix": prefix, "params": int(model.count_params())}))


# ---------------------------------------------------------------------------


class ConvertNotebookCheckpointTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tf = import_tf()
        sys.path.insert(0, SCRIPTS)
        import tf_article_keras as tak
        from tensorflow.keras.layers import BatchNormalization, Dense
        cls.tmp = tempfile.mkdtemp(prefix="haze-convert-test-")
        ck = os.path.join(cls.tmp, "checkpoints")

        def notebook_unet(seed, **widths):
            tf.keras.backend.clear_session()
            model = tak.U_NET(**dict(SMALL, **widths))
            randomize(model, seed)
            return model
        cls.notebook_unet = staticmethod(notebook_unet)

        # The notebook's network, Keras 2 layout.
        cls.model = notebook_unet(1)
        cls.params = int(cls.model.count_params())
        cls.weights = [w.numpy() for w in cls.model.weights]
        cls.good = save_notebook_way(tf, os.path.join(ck, "good"), u_net=cls.model)
        # The same network saved under another name than u_net.
        cls.other_root = save_notebook_way(tf, os.path.join(ck, "other_root"), model=cls.model)
        # Other widths and two levels: inferred from the shapes.
        widths = notebook_unet(2, filters=(8, 16), mid_filter=16, final_filter=16)
        cls.widths_params = int(widths.count_params())
        cls.widths = save_notebook_way(tf, os.path.join(ck, "widths"), u_net=widths)
        # Another network saved as u_net: a plain Dense model.
        tf.keras.backend.clear_session()
        dense = tf.keras.Sequential([Dense(4, input_shape=(3,))])
        cls.dense = save_notebook_way(tf, os.path.join(ck, "dense"), u_net=dense)
        # The notebook's commented-out BatchNormalization variant, and the network without LinearAttention.
        saved = tak.GroupNormalization, tak.LinearAttention
        try:
            tak.GroupNormalization = lambda groups, epsilon: BatchNormalization()
            cls.batchnorm = save_notebook_way(tf, os.path.join(ck, "batchnorm"), u_net=notebook_unet(4))
            tak.GroupNormalization = saved[0]
            tak.LinearAttention = lambda dim: (lambda x: x)
            cls.no_attention = save_notebook_way(tf, os.path.join(ck, "no_attention"), u_net=notebook_unet(5))
        finally:
            tak.GroupNormalization, tak.LinearAttention = saved
        # Damaged copies of the good checkpoint.
        good_dir = os.path.dirname(cls.good)
        name = os.path.basename(cls.good)
        for damage in ("no_index", "no_data", "truncated"):
            shutil.copytree(good_dir, os.path.join(ck, damage))
            setattr(cls, damage, os.path.join(ck, damage, name))
        os.remove(cls.no_index + ".index")
        os.remove(cls.no_data + ".data-00000-of-00001")
        data = cls.truncated + ".data-00000-of-00001"
        os.truncate(data, os.path.getsize(data) // 2)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers -----------------------------------------------------------

    def run_converter(self, *args, script=CONVERTER):
        r = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
        self.assertNotIn("Traceback", r.stderr, f"{os.path.basename(script)} {args} raised:\n{r.stderr}")
        return r

    def fresh_parent(self):
        return tempfile.mkdtemp(prefix="out-", dir=self.tmp)

    def convert_ok(self, prefix, *extra):
        out = os.path.join(self.fresh_parent(), "model")
        r = self.run_converter(prefix, out, "--image-size", str(SIZE), *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("wrote ", r.stdout)
        self.assertEqual(sorted(os.listdir(out)), MODEL_FILES)
        self.assertEqual(os.listdir(os.path.dirname(out)), ["model"], "temporary folders left next to OUT_DIR")
        from safetensors.numpy import load_file
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        with open(os.path.join(out, "scheduler_config.json")) as f:
            scheduler = json.load(f)
        self.assertEqual(config["_class_name"], "TFArticleUNet")
        self.assertEqual(config["image_size"], SIZE)
        self.assertEqual(scheduler["_class_name"], "DDIMScheduler")
        return config, load_file(os.path.join(out, "diffusion_pytorch_model.safetensors"))

    def check_weights(self, tensors, params, keras_weights):
        self.assertEqual(sum(int(a.size) for a in tensors.values()), params)
        self.assertEqual(len(tensors), len(keras_weights))
        self.assertEqual(value_signatures(tensors.values()), value_signatures(keras_weights),
                         "the converted tensors are not the Keras variables")

    @staticmethod
    def snapshot(parent):
        """Every path under PARENT, with the size of each file."""
        entries = []
        for d, dirs, files in os.walk(parent):
            entries += [(os.path.relpath(os.path.join(d, n), parent), "dir") for n in dirs]
            entries += [(os.path.relpath(os.path.join(d, n), parent), os.path.getsize(os.path.join(d, n)))
                        for n in files]
        return sorted(entries)

    def assert_fails(self, source, *needles, extra=("--image-size", str(SIZE)), script=CONVERTER):
        """Runs the converter (or SCRIPT) on SOURCE into an absent OUT_DIR, then into an existing empty
        OUT_DIR with --force: exit 1, one "error: " line holding every needle, no traceback, nothing
        written."""
        for existing in (False, True):
            with self.subTest(out_dir="existing, --force" if existing else "absent"):
                parent = self.fresh_parent()
                out = os.path.join(parent, "model")
                if existing:
                    os.mkdir(out)
                before = self.snapshot(parent)
                r = self.run_converter(source, out, *extra, *(["--force"] if existing else []), script=script)
                self.assertEqual(r.returncode, 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
                errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
                self.assertEqual(len(errors), 1, r.stderr)
                for needle in needles:
                    self.assertIn(needle, errors[0])
                self.assertNotIn("wrote ", r.stdout)
                self.assertEqual(self.snapshot(parent), before, "OUT_DIR or its parent changed")
                self.assertEqual(os.path.isdir(out), existing)
        return errors[0]

    # -- good checkpoints ------------------------------------------------------

    def test_keras2_checkpoint_converts(self):
        config, tensors = self.convert_ok(self.good)
        self.assertEqual(config["channels"], list(SMALL["filters"]))
        self.assertEqual([config[k] for k in ("init_channels", "mid_channels", "final_channels", "layers_per_block")],
                         [SMALL["init_filter"], SMALL["mid_filter"], SMALL["final_filter"], 2])
        self.check_weights(tensors, self.params, self.weights)

    def test_other_widths_are_inferred(self):
        config, tensors = self.convert_ok(self.widths)
        self.assertEqual((config["channels"], config["mid_channels"], config["final_channels"]), ([8, 16], 16, 16))
        self.assertEqual(sum(int(a.size) for a in tensors.values()), self.widths_params)

    def test_keras3_checkpoint_converts(self):
        import numpy as np
        directory = os.path.join(self.tmp, "checkpoints", "keras3")
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        r = subprocess.run([sys.executable, os.path.abspath(__file__), KERAS3_CHILD, directory],
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        child = json.loads(r.stdout.strip().splitlines()[-1])
        import tensorflow as tf
        keys = [k for k, _ in tf.train.list_variables(child["prefix"])]
        self.assertTrue(any(k.startswith("u_net/_operations/") for k in keys), keys[:5])
        with np.load(os.path.join(directory, "weights.npz")) as z:
            keras_weights = [z[k] for k in z.files]
        config, tensors = self.convert_ok(child["prefix"])
        self.assertEqual(config["channels"], list(SMALL["filters"]))
        self.check_weights(tensors, child["params"], keras_weights)

    # -- bad input -------------------------------------------------------------

    def test_prefix_in_missing_directory(self):
        prefix = os.path.join(self.tmp, "no_such_dir", "ckpt-1")
        self.assert_fails(prefix, prefix, "not found")

    def test_prefix_not_in_directory(self):
        prefix = os.path.join(os.path.dirname(self.good), "ckpt-9")
        self.assert_fails(prefix, prefix, "not found")

    def test_missing_index_file(self):
        self.assert_fails(self.no_index, self.no_index + ".index", "missing")

    def test_missing_data_file(self):
        self.assert_fails(self.no_data, self.no_data + ".data-00000-of-00001", "missing")

    def test_truncated_data_file(self):
        self.assert_fails(self.truncated, self.truncated + ".data-00000-of-00001", "truncated")

    def test_checkpoint_without_u_net(self):
        self.assert_fails(self.other_root, self.other_root + ".index", "'u_net/'", "model", "--root")

    def test_plain_dense_model(self):
        self.assert_fails(self.dense, self.dense + ".index", "not a checkpoint of the notebook's U-Net")

    def test_batchnorm_variant(self):
        self.assert_fails(self.batchnorm, self.batchnorm + ".index", "BatchNormalization", "GroupNormalization")

    def test_no_attention_variant(self):
        self.assert_fails(self.no_attention, self.no_attention + ".index", "no LinearAttention",
                          "not a checkpoint of the notebook's U-Net")

    def test_existing_out_dir_without_force(self):
        parent = self.fresh_parent()
        out = os.path.join(parent, "model")
        os.mkdir(out)
        with open(os.path.join(out, "keep.txt"), "w") as f:
            f.write("mine\n")
        before = self.snapshot(parent)
        r = self.run_converter(self.good, out, "--image-size", str(SIZE))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"error: {out}: already exists (pass --force", r.stderr)
        self.assertEqual(self.snapshot(parent), before)

    # -- help ------------------------------------------------------------------

    def test_help_names_requirements(self):
        for script in (CONVERTER, EXPORTER):
            r = self.run_converter("--help", script=script)
            self.assertEqual(r.returncode, 0, r.stderr)
            text = re.sub(r"-\n\s*", "-", r.stdout)   # argparse may wrap "tf-keras" after its hyphen
            for package in REQUIREMENTS:
                self.assertIn(package, text, script)

    # -- the export back to the notebook ----------------------------------------

    def export_ok(self, model_dir):
        out = os.path.join(self.fresh_parent(), "notebook")
        r = self.run_converter(model_dir, out, script=EXPORTER)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(out)), ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"])
        self.assertEqual(os.listdir(os.path.dirname(out)), ["notebook"], "temporary folders left next to OUT_DIR")
        return out

    def restore_notebook_way(self, directory):
        """A fresh notebook model (other random weights) restored from DIRECTORY as the notebook does."""
        import tensorflow as tf
        model = self.notebook_unet(99)
        tf.train.Checkpoint(u_net=model).restore(tf.train.latest_checkpoint(directory)).assert_existing_objects_matched()
        return model

    def test_export_round_trip(self):
        import numpy as np
        out = os.path.join(self.fresh_parent(), "model")
        self.assertEqual(self.run_converter(self.good, out, "--image-size", str(SIZE)).returncode, 0)
        model = self.restore_notebook_way(self.export_ok(out))
        self.assertEqual(len(model.weights), len(self.weights))
        for restored, original in zip(model.weights, self.weights):
            self.assertTrue(np.array_equal(restored.numpy(), original), restored.name)

    def test_export_fixture_gives_tensorflows_outputs(self):
        import numpy as np
        from safetensors.numpy import load_file
        io = load_file(os.path.join(FIXTURE, "io.safetensors"))
        model = self.restore_notebook_way(self.export_ok(os.path.join(FIXTURE, "model")))
        y = np.array(model([io["x"].transpose(0, 2, 3, 1), io["t"]])).transpose(0, 3, 1, 2)
        self.assertLessEqual(float(np.abs(y - io["out"]).max()), 1e-5 * float(np.abs(io["out"]).max()))

    def test_export_warns_of_another_schedule(self):
        folder = self.damaged_folder()
        with open(os.path.join(folder, "scheduler_config.json")) as f:
            scheduler = json.load(f)
        del scheduler["trained_betas"]   # the plain linear schedule, not the notebook's shifted one
        with open(os.path.join(folder, "scheduler_config.json"), "w") as f:
            json.dump(scheduler, f)
        out = os.path.join(self.fresh_parent(), "notebook")
        r = self.run_converter(folder, out, script=EXPORTER)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("scheduler_config.json: not the notebook's schedule", r.stdout)
        self.assertNotIn("warning", self.run_converter(os.path.join(FIXTURE, "model"), out + "2", script=EXPORTER).stdout)

    def damaged_folder(self, edit_config=None, edit_tensors=None):
        """A copy of the fixture's model folder with its config.json or weights edited."""
        from safetensors.numpy import load_file, save_file
        folder = os.path.join(self.fresh_parent(), "haze-model")
        shutil.copytree(os.path.join(FIXTURE, "model"), folder)
        if edit_config:
            path = os.path.join(folder, "config.json")
            with open(path) as f:
                config = json.load(f)
            edit_config(config)
            with open(path, "w") as f:
                json.dump(config, f)
        if edit_tensors:
            path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
            tensors = load_file(path)
            edit_tensors(tensors)
            save_file(tensors, path)
        return folder

    def test_export_bad_folders(self):
        import numpy as np
        empty = self.fresh_parent()
        training = self.fresh_parent()
        os.makedirs(os.path.join(training, "model"))
        cases = [
            (empty, [os.path.join(empty, "config.json"), "missing"]),
            (training, [os.path.join(training, "config.json"), "model/ and ema/"]),
            (self.damaged_folder(lambda c: c.update(_class_name="UNet2DModel")), ["'UNet2DModel'", "TFArticleUNet"]),
            (self.damaged_folder(lambda c: c.update(attention_heads=8)), ["attention_heads is 8", "heads=4"]),
            (self.damaged_folder(lambda c: c.update(norm_type="batch")), ["norm_type is 'batch'", "BatchNorm"]),
            (self.damaged_folder(edit_tensors=lambda t: t.pop("mid.0.conv1.bias")),
             ["diffusion_pytorch_model.safetensors", "missing ['mid.0.conv1.bias']"]),
            (self.damaged_folder(edit_tensors=lambda t: t.update({"mid.0.conv1.bias": np.zeros(5, np.float32)})),
             ["diffusion_pytorch_model.safetensors", "mid.0.conv1.bias has shape [5]"]),
        ]
        for folder, needles in cases:
            with self.subTest(folder=folder, needles=needles):
                self.assert_fails(folder, *needles, extra=(), script=EXPORTER)

    def test_export_keeps_existing_out_dir(self):
        parent = self.fresh_parent()
        out = os.path.join(parent, "notebook")
        os.mkdir(out)
        before = self.snapshot(parent)
        r = self.run_converter(os.path.join(FIXTURE, "model"), out, script=EXPORTER)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"error: {out}: already exists (pass --force", r.stderr)
        self.assertEqual(self.snapshot(parent), before)


if __name__ == "__main__":
    if KERAS3_CHILD in sys.argv:
        keras3_child(sys.argv[sys.argv.index(KERAS3_CHILD) + 1])
    else:
        unittest.main()
