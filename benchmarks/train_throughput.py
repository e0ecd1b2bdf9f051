"""Training clips per second of the baseline24 student: our pipeline against the baselines' pipeline.

Both do a full training step on the same model architecture and batch size — data -> front end (train mode) ->
Freq-MixStyle -> forward/backward -> AdamW:

(a) baselines: a Dataset whose ``__getitem__`` decodes the WAV (soundfile), resamples it to 32 kHz
    (``torchaudio.functional.resample``) and rolls it, every item of every epoch; the network in NCHW;
(b) asc: :func:`asc.data.dataset.clip_loader` slicing the memory-mapped cache (decoded and resampled once; its
    build is timed separately) in the order of the seeded :class:`asc.train.distributed.EpochSampler`, the roll on the
    batch (:func:`asc.augment.roll`), and the network in ``channels_last`` (what :func:`asc.train.trainer.fit` does).

Steps of (a) and (b) alternate within one run, so load from other processes affects both alike. Target: (b) >= 3x (a).

    python benchmarks/train_throughput.py                                  # synthetic 44.1 kHz set, made here
    python benchmarks/train_throughput.py --data ../shared/data/us8k-mini  # a dataset in the TAU layout
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from torch.utils.data import DataLoader, Dataset

from asc.augment import FreqMixStyle, roll, sample_shifts
from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset, clip_loader
from asc.data.validate import open_dataset
from asc.data.synth import SynthConfig, make_synthetic_dataset
from asc.fileio import write_json
from asc.models.registry import build_frontend_for, build_model
from asc.train.distributed import EpochSampler

SAMPLE_RATE = 32000


class DecodeResampleRollDataset(Dataset):
    """What the baselines do per item and epoch: decode, resample to 32 kHz, roll."""

    def __init__(self, root: Path, table, max_shift: int):
        self.root, self.table, self.max_shift = root, table.reset_index(drop=True), max_shift

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict:
        x, sr = sf.read(str(self.root / self.table["filename"].iloc[i]), dtype="float32", always_2d=True)
        audio = torchaudio.functional.resample(torch.from_numpy(x.mean(1)), sr, SAMPLE_RATE)
        shift = int(torch.randint(-self.max_shift, self.max_shift + 1, ()))
        return {"audio": torch.roll(audio, shift), "label": int(self.table["label"].iloc[i])}


class Pipeline:
    """One training setup: its loader (cycled), front end, batch augmentation, model and optimiser."""

    def __init__(self, name: str, loader: DataLoader, channels_last: bool, seed: int, roll_samples: int = 0):
        torch.manual_seed(seed)
        self.name, self.channels_last, self.roll_samples = name, channels_last, roll_samples
        self.batches = itertools.chain.from_iterable(itertools.repeat(loader))
        self.frontend = build_frontend_for("baseline24").train()
        self.mixstyle = FreqMixStyle(0.4, 0.3).train()
        self.model = build_model("baseline24", n_classes=10).train()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-3, weight_decay=1e-4)
        self.seconds, self.clips, self.data_seconds = 0.0, 0, 0.0

    def step(self, timed: bool) -> float:
        start = time.perf_counter()
        batch = next(self.batches)
        audio = batch["audio"]
        if self.roll_samples:
            audio = roll(audio, sample_shifts(len(audio), self.roll_samples))
        loaded = time.perf_counter()
        with torch.no_grad():
            x = self.mixstyle(self.frontend(audio))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(self.model(x), batch["label"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        end = time.perf_counter()
        if timed:
            self.seconds += end - start
            self.data_seconds += loaded - start
            self.clips += len(batch["label"])
        return float(loss.detach())

    def result(self) -> dict:
        return {"clips": self.clips, "seconds": round(self.seconds, 3),
                "clips_per_s": round(self.clips / self.seconds, 2),
                "data_share": round(self.data_seconds / self.seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="dataset root in the TAU layout (default: synthetic, 600 training clips, made here)")
    parser.add_argument("--split", default="100", help="training split to read (default 100)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per pipeline (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per pipeline first (default 1)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for both pipelines (default 0)")
    parser.add_argument("--cache-dir", type=Path, help="audio cache folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="asc-bench-") as tmp:
        synth = SynthConfig.preset("small", train_segments=20)
        root = args.data or make_synthetic_dataset(Path(tmp) / "synth", synth).dev
        cache_dir = args.cache_dir or Path(tmp) / "cache"
        layout = open_dataset(root)
        table = layout.split(args.split)
        sr = sf.info(str(root / table["filename"].iloc[0])).samplerate

        t0 = time.perf_counter()
        cache = load_cache(root, table["filename"].tolist(), SAMPLE_RATE, cache_dir, progress=False)
        build_s = time.perf_counter() - t0

        roll = SAMPLE_RATE // 10
        base_loader = DataLoader(DecodeResampleRollDataset(root, table, roll), batch_size=args.batch_size,
                                 shuffle=True, num_workers=args.workers, drop_last=True)
        ours_ds = ClipDataset(table, cache, layout.labels, layout.devices)
        sampler = EpochSampler(len(ours_ds), seed=0)
        ours_loader = clip_loader(ours_ds, args.batch_size, sampler, num_workers=args.workers)
        if len(table) < args.batch_size:
            parser.error(f"split {args.split} has {len(table)} clips, fewer than --batch-size {args.batch_size}")
        pipes = [Pipeline("baselines (decode+resample, NCHW)", base_loader, False, 0),
                 Pipeline("asc (cache + clip_loader, roll on the batch, channels_last)", ours_loader, True, 0, roll)]
        for i in range(args.warmup + args.steps):
            for pipe in pipes:
                pipe.step(timed=i >= args.warmup)
                print(f"step {i + 1}/{args.warmup + args.steps} {pipe.name}: "
                      f"{pipe.result()['clips_per_s'] if pipe.clips else '(warm-up)'} clips/s", file=sys.stderr)

        base, ours = pipes[0].result(), pipes[1].result()
        result = {
            "data": str(root), "split": args.split, "clips_in_split": len(table), "source_sample_rate": sr,
            "batch_size": args.batch_size, "steps": args.steps, "workers": args.workers,
            "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "cache_build_s": round(build_s, 2), "baselines": base, "asc": ours,
            "speedup": round(ours["clips_per_s"] / base["clips_per_s"], 2), "target": 3.0,
        }
    print(f"baselines pipeline: {base['clips_per_s']:8.1f} clips/s (data loading {100 * base['data_share']:.0f} %)")
    print(f"asc pipeline:       {ours['clips_per_s']:8.1f} clips/s (data loading {100 * ours['data_share']:.0f} %)")
    print(f"speed-up: {result['speedup']:.2f}x (target >= 3x); cache build {build_s:.1f} s for {len(table)} clips")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
