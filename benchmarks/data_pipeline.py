"""Clips per second delivered to the model: per-item decode + resample (the baselines, every epoch) vs the cache.

(a) a Dataset whose ``__getitem__`` does ``soundfile.read`` + ``torchaudio.functional.resample`` to 32 kHz;
(b) :class:`asc.data.dataset.ClipDataset` over the memory-mapped cache.
Both run through the same DataLoader (batch size, shuffling, workers) on the same files. The one-time cache build is
timed separately. Target: (b) >= 20x (a).

    python benchmarks/data_pipeline.py                                  # synthetic 44.1 kHz set, generated here
    python benchmarks/data_pipeline.py --data ../shared/data/us8k-mini  # a dataset in the TAU layout
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch.utils.data import DataLoader, Dataset

from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset
from asc.data.validate import open_dataset
from asc.data.synth import SynthConfig, make_synthetic_dataset
from asc.fileio import write_json


class DecodeResampleDataset(Dataset):
    """What the baselines do per item and epoch: decode the WAV, resample to 32 kHz."""

    def __init__(self, root: Path, filenames: list[str], sample_rate: int = 32000):
        self.root, self.filenames, self.sample_rate = root, filenames, sample_rate

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, i: int) -> dict:
        x, sr = sf.read(str(self.root / self.filenames[i]), dtype="float32", always_2d=True)
        audio = torchaudio.functional.resample(torch.from_numpy(x.mean(1)), sr, self.sample_rate)
        return {"audio": audio, "index": i}


def clips_per_second(dataset: Dataset, n_items: int, batch_size: int, workers: int, seed: int = 0) -> dict:
    """Iterate a shuffled DataLoader until ``n_items`` clips were delivered (several epochs if needed)."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, generator=g,
                        persistent_workers=workers > 0)
    delivered, checksum = 0, 0.0
    start = time.perf_counter()
    while delivered < n_items:
        for batch in loader:
            delivered += len(batch["audio"])
            checksum += float(batch["audio"][:, ::997].sum())
            if delivered >= n_items:
                break
    seconds = time.perf_counter() - start
    return {"clips": delivered, "seconds": round(seconds, 3), "clips_per_s": round(delivered / seconds, 1),
            "checksum": checksum}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="dataset root in the TAU layout (default: generate synthetic)")
    parser.add_argument("--preset", default="small", help="synthetic preset when --data is not given (small)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for both pipelines (0)")
    parser.add_argument("--decode-items", type=int, default=600, help="clips timed for (a) (600)")
    parser.add_argument("--cache-items", type=int, default=20000, help="clips timed for (b), several epochs (20000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_pipeline.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="asc-bench-") as tmp:
        tmp = Path(tmp)
        root = args.data
        if root is None:
            root = make_synthetic_dataset(tmp / "synth", SynthConfig.preset(args.preset)).dev
        layout = open_dataset(root)
        names = layout.meta["filename"].tolist()
        info = sf.info(str(layout.root / names[0]))
        print(f"{layout.root}: {len(names)} clips at {info.samplerate} Hz -> 32000 Hz, batch {args.batch_size}, "
              f"{args.workers} DataLoader workers, {args.threads} torch thread(s)")

        start = time.perf_counter()
        cache = load_cache(layout.root, names, cache_dir=tmp / "cache", progress=False, workers=1)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        load_cache(layout.root, names, cache_dir=tmp / "cache", progress=False)
        reopen_s = time.perf_counter() - start

        decode = clips_per_second(DecodeResampleDataset(layout.root, names), args.decode_items, args.batch_size,
                                  args.workers)
        cached = clips_per_second(ClipDataset(layout.meta, cache, layout.labels, layout.devices),
                                  args.cache_items, args.batch_size, args.workers)

    ratio = cached["clips_per_s"] / decode["clips_per_s"]
    result = {
        "dataset": str(layout.root), "clips": len(names), "source_sample_rate": info.samplerate,
        "batch_size": args.batch_size, "workers": args.workers, "torch_threads": args.threads,
        "decode_resample": decode, "cache": cached, "speedup": round(ratio, 1), "target_speedup": 20,
        "cache_build_s": round(build_s, 2), "cache_build_clips_per_s": round(len(names) / build_s, 1),
        "cache_reopen_s": round(reopen_s, 4),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "torchaudio": torchaudio.__version__, "numpy": np.__version__},
    }
    print(f"(a) decode + resample per item: {decode['clips_per_s']:>10.1f} clips/s ({decode['clips']} clips)")
    print(f"(b) memory-mapped cache:        {cached['clips_per_s']:>10.1f} clips/s ({cached['clips']} clips)")
    print(f"speed-up (b)/(a): {ratio:.1f}x (target >= 20x); one-time cache build {build_s:.1f} s "
          f"({len(names) / build_s:.0f} clips/s), reopening {reopen_s * 1000:.1f} ms")
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
