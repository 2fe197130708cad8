"""Convert pytorch-fid's InceptionV3 weights to safetensors for `haze evaluate --features inception`.

    pip install torch safetensors
    # download pt_inception-2015-12-05-6726825d.pth from
    # https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
    python scripts/convert_fid_inception.py pt_inception-2015-12-05-6726825d.pth assets/pt_inception-2015-12-05.safetensors

Keeps every float tensor under its state-dict name (Conv2d_1a_3x3.conv.weight, …) as float32 and
drops the integer `num_batches_tracked` counters.
"""
import sys

import torch
from safetensors.torch import save_file

if len(sys.argv) != 3:
    sys.exit("usage: convert_fid_inception.py pt_inception-2015-12-05-6726825d.pth OUT.safetensors")
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
tensors = {k: v.float().contiguous() for k, v in state.items() if v.is_floating_point()}
save_file(tensors, sys.argv[2], metadata={"source": "pytorch-fid pt_inception-2015-12-05-6726825d.pth"})
print(f"wrote {sys.argv[2]}: {len(tensors)} tensors")
