"""Reference for the benchmarks only: the toolkit's previous per-clip input path, kept here so that
``device_throughput.py`` measures the batched path against it in one run.

Before the batch pipeline, ``ClipDataset.__getitem__`` read one clip from the cache and applied waveform hooks to it
(DIR: ``torchaudio.functional.fftconvolve`` with a random impulse response; a random ``torch.roll``), the DataLoader
collated the items, and the baseline front end was torchaudio's ``MelSpectrogram`` (dense filterbank) with its
frequency masking inside. Nothing in ``asc`` imports this module.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
import torchaudio.functional as AF
from torch import nn
from torch.utils.data import DataLoader, Dataset

from asc.augment import load_impulse_responses
from asc.data.dataset import ClipDataset


class PerClipDIR:
    """DIR per clip: for a clip of one of ``devices``, with probability ``p``, one random response."""

    def __init__(self, folder, sample_rate: int, p: float, devices: Sequence[str], device_names: Sequence[str]):
        self.irs, _ = load_impulse_responses(folder, sample_rate)
        self.p, self.devices, self.device_names = p, set(devices), list(device_names)

    def __call__(self, waveform: torch.Tensor, item: dict) -> torch.Tensor:
        if item["device"] < 0 or self.device_names[item["device"]] not in self.devices:
            return waveform
        if torch.rand(()).item() >= self.p:
            return waveform
        ir = self.irs[int(torch.randint(len(self.irs), ()))]
        return AF.fftconvolve(waveform, ir)[..., : waveform.shape[-1]]


class PerClipRoll:
    def __init__(self, max_shift: int):
        self.max_shift = max_shift

    def __call__(self, waveform: torch.Tensor, item: dict) -> torch.Tensor:
        return torch.roll(waveform, int(torch.randint(-self.max_shift, self.max_shift + 1, ())), dims=-1)


class PerClipDataset(Dataset):
    """Items of a :class:`ClipDataset`, one cache read and the hooks per clip."""

    def __init__(self, clips: ClipDataset, hooks: Sequence):
        self.clips, self.hooks = clips, list(hooks)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        item = self.clips[index]
        del item["filename"]
        for hook in self.hooks:
            item["audio"] = hook(item["audio"], item)
        return item


def per_clip_loader(clips: ClipDataset, hooks: Sequence, batch_size: int, shuffle: bool = True) -> DataLoader:
    return DataLoader(PerClipDataset(clips, hooks), batch_size=batch_size, shuffle=shuffle, num_workers=0)


class TorchaudioBaseline24(nn.Module):
    """The previous baseline24 front end: torchaudio MelSpectrogram (dense filterbank) + frequency masking in
    training mode, log(x + 1e-5)."""

    def __init__(self, freq_mask: int = 48):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=32000, n_fft=4096, win_length=3072,
                                                        hop_length=500, n_mels=256)
        self.mask = torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.mel(waveform.float().unsqueeze(1))
        if self.training:
            x = self.mask(x)
        return (x + 1e-5).log()
