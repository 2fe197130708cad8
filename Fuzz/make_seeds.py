#!/usr/bin/env python3
"""Writes the seed corpora of `make fuzz` into Fuzz/corpus/<harness>/ (standard library only).

Seeds are small valid files: copies of the repository's test fixtures where they exist, and
files written here (in the formats Haze writes) where none do. The corpus is committed; this
script documents where each seed came from and rebuilds the folder: python3 Fuzz/make_seeds.py
"""
import gzip
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")


def put(harness, name, data):
    folder = os.path.join(CORPUS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def copy(harness, path, name=None):
    with open(os.path.join(ROOT, path), "rb") as f:
        put(harness, name or os.path.basename(path), f.read())


def safetensors(tensors, metadata=None):
    """tensors: {name: (dtype, shape, raw bytes)} -> bytes, header padded to 8 as Haze writes."""
    header, offset, payload = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        payload += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)

    # safetensors: fixtures of every kind (F32 from PyTorch and Haze, metadata), plus other dtypes.
    for path in ["Tests/HazeTensorTests/Fixtures/linear.safetensors",
                 "Tests/HazeTensorTests/Fixtures/softmax_axis1.safetensors",
                 "Tests/HazeDiffusionTests/Fixtures/schedulers/ddpm_posterior.safetensors",
                 "Tests/HazeNNTests/Fixtures/keras_adam.safetensors",
                 "Tests/HazeNNTests/Fixtures/unet/class_cond/io.safetensors",
                 "Tests/HazeTrainingTests/Fixtures/lockstep/clip/trajectory.safetensors"]:
        copy("safetensors", path)
    put("safetensors", "dtypes.safetensors", safetensors({
        "a16": ("F16", [2, 2], struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001)),
        "b16": ("BF16", [3], struct.pack("<3H", 0x3F80, 0xBF80, 0x7FC0)),
        "d64": ("F64", [2], struct.pack("<2d", 1.5, -1e300)),
        "empty": ("F32", [0, 4], b""),
        "scalar": ("F32", [], f32([7.0])),
    }, metadata={"format": "pt"}))

    # unet-config: every UNet2DModel config of the fixtures and the notebook model's.
    for path in ["Tests/HazeNNTests/Fixtures/unet/attn/config.json",
                 "Tests/HazeNNTests/Fixtures/unet/cifar_like/config.json",
                 "Tests/HazeNNTests/Fixtures/unet/class_cond/config.json",
                 "Tests/HazeNNTests/Fixtures/unet/scale_shift_pad0/config.json",
                 "Tests/HazeTrainingTests/Fixtures/pipeline/unet/config.json",
                 "Tests/HazeNNTests/Fixtures/tf_article/model/config.json"]:
        copy("unet-config", path, path.split("/")[-2] + ".json")
    put("unet-config", "haze_options.json", json.dumps({
        "_class_name": "UNet2DModel", "sample_size": [8, 16], "in_channels": 1, "out_channels": 1,
        "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
        "attention_head_dim": 4, "attn_norm_num_groups": 2, "norm_type": "batch", "attention_type": "linear",
        "class_embed_type": "timestep", "time_embedding_dim": 32, "mid_block_type": None,
        "resnet_time_scale_shift": "scale_shift", "num_class_embeds": 10}, indent=1).encode())
    put("unet-config", "tf_article_batch.json", json.dumps({
        "_class_name": "TFArticleUNet", "image_size": 8, "in_channels": 1, "out_channels": 1, "init_channels": 4,
        "channels": [4, 8], "mid_channels": 8, "final_channels": 4, "layers_per_block": 1, "time_embed_dim": 8,
        "max_positions": 1000.0, "attention_heads": 2, "attention_head_dim": 4, "norm_num_groups": 2,
        "norm_eps": 0.001, "attention_norm_eps": 0.001, "norm_type": "batch", "attention": False}, indent=1).encode())

    # scheduler-config: the fixtures' (one with 1000 trained betas) and one of each other class.
    copy("scheduler-config", "Tests/HazeDiffusionTests/Fixtures/sampling/ddim50_attn_model/scheduler_config.json", "ddim.json")
    copy("scheduler-config", "Tests/HazeTrainingTests/Fixtures/pipeline/scheduler/scheduler_config.json", "pipeline.json")
    with open(os.path.join(ROOT, "Tests/HazeNNTests/Fixtures/tf_article/model/scheduler_config.json")) as f:
        notebook = json.load(f)
    notebook["num_train_timesteps"] = 20
    notebook["trained_betas"] = notebook["trained_betas"][:20]
    put("scheduler-config", "notebook_trained_betas.json", json.dumps(notebook, indent=1).encode())
    common = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "trained_betas": None}
    for name, fields in {
        "ddpm": {"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2", "variance_type": "fixed_large",
                 "prediction_type": "v_prediction", "thresholding": True, "sample_max_value": 3.0,
                 "dynamic_thresholding_ratio": 0.9, "timestep_spacing": "trailing", "rescale_betas_zero_snr": True},
        "ddpm_sigmoid": {"_class_name": "DDPMScheduler", "beta_schedule": "sigmoid", "clip_sample": False,
                         "steps_offset": 1, "timestep_spacing": "leading"},
        "dpmpp": {"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear", "solver_order": 2,
                  "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "use_karras_sigmas": True,
                  "lower_order_final": True, "final_sigmas_type": "zero", "euler_at_final": False,
                  "timestep_spacing": "leading", "steps_offset": 1},
        "euler": {"_class_name": "EulerDiscreteScheduler", "interpolation_type": "linear", "timestep_spacing": "linspace",
                  "prediction_type": "sample", "use_karras_sigmas": False},
        "euler_a": {"_class_name": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing", "s_churn": 0.0},
        "continuous": {"_class_name": "HazeContinuousDDIMScheduler", "min_signal_rate": 0.02, "max_signal_rate": 0.95},
    }.items():
        put("scheduler-config", name + ".json", json.dumps({**common, **fields}, indent=2).encode())
    # Python's json writes NaN/Infinity for such floats (diffusers' save_config too), here in
    # fields Haze ignores, so that the file loads.
    put("scheduler-config", "python_nan.json",
        b'{"_class_name": "DDIMScheduler", "num_train_timesteps": 50, "variance_max": Infinity,\n'
        b' "sigma_min": NaN, "sigma_max": [-Infinity, 1], "set_alpha_to_one": false}')

    # trainer-state: trainer_state.json as Checkpoint.writeContents writes it (JSONEncoder,
    # sorted keys; the scheduler config stored as the text of its JSON).
    ddpm = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.42.1", "beta_end": 0.02,
            "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True, "clip_sample_range": 1,
            "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": 1000, "prediction_type": "epsilon",
            "rescale_betas_zero_snr": False, "sample_max_value": 1, "steps_offset": 0, "thresholding": False,
            "timestep_spacing": "leading", "trained_betas": None, "variance_type": "fixed_small"}
    options = {"batchSize": 8, "betaSchedule": "linear", "beta1": 0.9, "beta2": 0.999, "checkpointEvery": 2,
               "classConditional": False, "continuousTime": False, "data": "/tmp/haze-data", "emaDecay": 0.999,
               "emaPower": 0.75, "epsilon": 1e-08, "gradientAccumulation": 1, "gradientClip": 1, "horizontalFlip": False,
               "keepCheckpoints": 3, "labelDropout": 0.1, "labelsFromFolders": False, "learningRate": 0.001,
               "learningRateShape": "constant", "logEvery": 1, "objective": "epsilon", "optimizer": "adamw",
               "sampleEvery": 0, "seed": 1, "skipCorruptImages": False, "steps": 4, "trainTimesteps": 1000,
               "warmupSteps": 0, "weightDecay": 0.01}
    state = {"data": {"epoch": 0, "index": 16}, "dataFingerprint": "sha256:0123abcd", "emaUpdates": 2,
             "options": options, "randomStream": "philox4x32-10(seed, step)", "step": 2}
    put("trainer-state", "trainer_state.json", json.dumps(state, indent=2, sort_keys=True).encode())
    tuned = json.loads(json.dumps(state))
    tuned["options"].update({"betaSchedule": "squaredcos_cap_v2", "trainTimesteps": 100, "imageSize": 8,
                             "minSNRGamma": 5, "optimizer": "adam-keras", "learningRateShape": "cosine",
                             "initializedFrom": {"path": "/tmp/model", "weightsSHA256": "ab" * 32},
                             "inheritedScheduler": json.dumps(ddpm, sort_keys=True, separators=(",", ":"))})
    put("trainer-state", "fine_tuned.json", json.dumps(tuned, indent=2, sort_keys=True).encode())
    notebook_run = json.loads(json.dumps(state))
    notebook_run["options"].update({"betaSchedule": "notebook", "trainTimesteps": 50, "continuousTime": False})
    del notebook_run["dataFingerprint"]
    put("trainer-state", "notebook.json", json.dumps(notebook_run, indent=2, sort_keys=True).encode())

    # optimizer: optimizer.safetensors as AdamOptimizer.state writes it.
    meta = {"optimizer": "adamw", "step": "3", "lr": "0.001", "beta1": "0.9", "beta2": "0.999", "eps": "1e-08",
            "weight_decay": "0.01"}
    put("optimizer", "optimizer.safetensors", safetensors({
        "exp_avg.conv_in.weight": ("F32", [2, 1, 1, 1], f32([0.1, -0.2])),
        "exp_avg_sq.conv_in.weight": ("F32", [2, 1, 1, 1], f32([0.01, 0.04])),
        "exp_avg.conv_in.bias": ("F32", [2], f32([0.5, 0.25])),
        "exp_avg_sq.conv_in.bias": ("F32", [2], f32([0.25, 0.0625])),
    }, metadata=meta))
    put("optimizer", "keras.safetensors", safetensors({
        "exp_avg.w": ("F32", [3], f32([1, 2, 3])), "exp_avg_sq.w": ("F32", [3], f32([1, 4, 9]))},
        metadata={**meta, "optimizer": "adam-keras", "step": "1000", "eps": "1e-07", "weight_decay": "0.0"}))

    # idx: Fashion-MNIST-shaped files, plain and gzip (images rank 3, labels rank 1).
    images, labels = idx([3, 4, 4], range(48)), idx([3], [1, 2, 9])
    put("idx", "train-images-idx3-ubyte", images)
    put("idx", "train-labels-idx1-ubyte", labels)
    put("idx", "train-images-idx3-ubyte.gz", gzip.compress(images, mtime=0))
    put("idx", "t10k-labels-idx1-ubyte.gz", gzip.compress(labels, mtime=0))
    put("idx", "rank4", idx([1, 2, 2, 2], range(8)))

    # png, jpeg: the image codec fixtures.
    for name in sorted(os.listdir(os.path.join(ROOT, "Tests/HazeIOTests/Fixtures"))):
        path = "Tests/HazeIOTests/Fixtures/" + name
        if name.endswith(".png"):
            copy("png", path)
        elif name.endswith(".jpg"):
            copy("jpeg", path)

    # sample-input: x_T / predict inputs [B, C, H, W] as haze writes them, and a half-precision one.
    put("sample-input", "x.safetensors", safetensors({"x": ("F32", [1, 3, 8, 8], f32([0.5] * 192))}))
    put("sample-input", "x_f16.safetensors", safetensors({"sample": ("F16", [2, 3, 8, 8], struct.pack("<384H", *([0x3800] * 384)))},
                                                         metadata={"format": "pt"}))


if __name__ == "__main__":
    main()
