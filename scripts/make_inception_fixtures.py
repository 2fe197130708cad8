"""Fixtures for Haze's FID InceptionV3 and its pooling/resize ops, from pytorch-fid.

The real FID weights cannot be downloaded here, so the network is checked with pseudo-random
weights that both sides compute from the tensor name alone (no file of 24M numbers to commit):

    h      = FNV-1a 64 of the UTF-8 name
    u[i]   = (splitmix64(h XOR i) >> 40) / 2^24            in [0, 1), i = row-major index
    conv.weight     = (2u − 1)·sqrt(6 / fan_in)             (He uniform)
    bn.weight       = 0.5 + u        bn.bias = 0.2·(2u − 1)
    bn.running_mean = 0.1·(2u − 1)   bn.running_var = 0.5 + u
(computed in float64, rounded to float32). `InceptionV3Tests.swift` implements the same formula.

Writes Tests/HazeTrainingTests/Fixtures/inception.safetensors:
    input [2, 3, 37, 50] in [0, 1]; block0..block3: the spatial means of pytorch-fid's four
    output blocks ([2, 64], [2, 192], [2, 768], [2, 2048]);
    resize_in [1, 2, 5, 7] → resize_up [1, 2, 11, 13], resize_down [1, 2, 3, 4] (bilinear,
    align_corners=False); pool_in [1, 2, 6, 7] → maxpool_s2 (k3 s2), maxpool_s1 (k3 s1 p1),
    avgpool (k3 s1 p1, count_include_pad=False).
Run with the reference venv plus `pip install pytorch-fid`.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
import pytorch_fid.inception as fid

M = (1 << 64) - 1


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M
    return h


def uniform(name, count):
    with np.errstate(over="ignore"):
        x = np.arange(count, dtype=np.uint64) ^ np.uint64(fnv1a64(name))
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def pseudo_random(name, shape):
    u = uniform(name, int(np.prod(shape)))
    if name.endswith("conv.weight"):
        v = (2 * u - 1) * np.sqrt(6.0 / float(np.prod(shape[1:])))
    elif name.endswith("bn.weight") or name.endswith("bn.running_var"):
        v = 0.5 + u
    elif name.endswith("bn.bias"):
        v = 0.2 * (2 * u - 1)
    elif name.endswith("bn.running_mean"):
        v = 0.1 * (2 * u - 1)
    else:
        return None
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def main():
    torch.manual_seed(0)
    # The state dict fid_inception_v3() would download, with pseudo-random values.
    shell = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in [("Mixed_5b", fid.FIDInceptionA(192, pool_features=32)), ("Mixed_5c", fid.FIDInceptionA(256, pool_features=64)),
                        ("Mixed_5d", fid.FIDInceptionA(288, pool_features=64)), ("Mixed_6b", fid.FIDInceptionC(768, channels_7x7=128)),
                        ("Mixed_6c", fid.FIDInceptionC(768, channels_7x7=160)), ("Mixed_6d", fid.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6e", fid.FIDInceptionC(768, channels_7x7=192)), ("Mixed_7b", fid.FIDInceptionE_1(1280)),
                        ("Mixed_7c", fid.FIDInceptionE_2(2048))]:
        setattr(shell, name, block)
    state = {}
    for k, v in shell.state_dict().items():
        generated = pseudo_random(k, tuple(v.shape))
        state[k] = generated if generated is not None else v
    fid.load_state_dict_from_url = lambda *args, **kwargs: state
    net = fid.InceptionV3(output_blocks=[0, 1, 2, 3]).eval()

    x = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        blocks = net(x)
    out = {"input": x}
    for i, b in enumerate(blocks):
        out[f"block{i}"] = b.mean(dim=(2, 3))
        print(f"block{i}", tuple(b.shape), "mean", float(b.mean()), "std", float(b.std()))

    r = torch.rand(1, 2, 5, 7)
    out["resize_in"] = r
    out["resize_up"] = F.interpolate(r, size=(11, 13), mode="bilinear", align_corners=False)
    out["resize_down"] = F.interpolate(r, size=(3, 4), mode="bilinear", align_corners=False)
    p = torch.randn(1, 2, 6, 7)
    out["pool_in"] = p
    out["maxpool_s2"] = F.max_pool2d(p, kernel_size=3, stride=2)
    out["maxpool_s1"] = F.max_pool2d(p, kernel_size=3, stride=1, padding=1)
    out["avgpool"] = F.avg_pool2d(p, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "HazeTrainingTests", "Fixtures", "inception.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
