"""The organisers' complexity step for a DCASE 2025 inference package module, re-implemented from its published
contract (see README.md). Standalone: torch, torchinfo; never the asc toolkit.

usage: python complexity_step.py --submission_name <Label> --submission_index <n>
"""

import argparse
import copy
import importlib
import json
from importlib import resources
from pathlib import Path

import torch
import torchinfo

MACS_LIMIT = 30_000_000
BYTES_LIMIT = 128_000
DEVICE_IDS = ["a", "b", "c"] + [f"s{i}" for i in range(1, 11)]
BYTES_OF = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.int8: 1, torch.uint8: 1, torch.int32: 4,
            torch.qint8: 1, torch.quint8: 1}


def parameter_bytes(net):
    total = 0
    for p in net.parameters():
        if p.dtype not in BYTES_OF:
            raise ValueError(f"unsupported parameter dtype {p.dtype}")
        total += p.numel() * BYTES_OF[p.dtype]
    return total


def mult_adds(net, shape):
    return torchinfo.summary(copy.deepcopy(net).float(), input_size=tuple(shape), verbose=0).total_mult_adds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--submission_name", required=True)
    parser.add_argument("--submission_index", type=int, required=True)
    args = parser.parse_args()
    api = importlib.import_module(f"{args.submission_name}.{args.submission_name}_{args.submission_index}")
    model = api.load_model()
    with resources.as_file(resources.files(f"{args.submission_name}.resources") / "dummy.wav") as dummy:
        inputs = api.load_inputs([str(dummy)] * len(DEVICE_IDS), DEVICE_IDS, model)
    per_device = {}
    for x, device in zip(inputs, DEVICE_IDS):
        net = api.get_model_for_device(model, device)
        macs, nbytes = mult_adds(net, x.shape), parameter_bytes(net)
        per_device[device] = {"MACs": macs, "Params": nbytes}
        ok = macs <= MACS_LIMIT and nbytes <= BYTES_LIMIT
        print(f"{device:>3} | MACs: {macs:>10,} | Params Bytes: {nbytes:>8,} bytes | {'within' if ok else 'OVER'}")
    out = Path("predictions") / f"{args.submission_name}_{args.submission_index}"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"per_device": per_device, "max_MACs": max(d["MACs"] for d in per_device.values()),
               "max_Params": max(d["Params"] for d in per_device.values())}
    (out / "complexity.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
