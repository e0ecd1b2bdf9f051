"""DIR augmentation (device impulse responses) on the batch: each chosen clip convolved with its own random
response by one batched FFT convolution on the batch's device."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asc.errors import DatasetError


def load_impulse_responses(folder: str | Path, sample_rate: int) -> tuple[list[torch.Tensor], list[Path]]:
    """Every readable WAV under ``folder`` (recursively, sorted) as a mono float32 tensor at ``sample_rate``.

    Unreadable files are skipped with a warning; a missing folder or one without a readable WAV is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: impulse-response folder not found; pass the folder of device impulse "
                           f"responses (e.g. MicIRP .wav files)")
    irs, paths, unreadable = [], [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()):
        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
        except RuntimeError:  # soundfile.LibsndfileError
            unreadable.append(path.name)
            continue
        if data.shape[0] == 0:
            unreadable.append(path.name)
            continue
        ir = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
        if rate != sample_rate:
            ir = AF.resample(ir, rate, sample_rate)
        irs.append(ir.contiguous())
        paths.append(path)
    if unreadable:
        warnings.warn(f"{folder}: skipped {len(unreadable)} unreadable WAV file(s): {', '.join(unreadable[:10])}",
                      stacklevel=2)
    if not irs:
        raise DatasetError(f"{folder}: no readable .wav impulse responses in this folder")
    return irs, paths


def fast_length(n: int) -> int:
    """The smallest 2^a·3^b·5^c >= ``n`` (a size FFT libraries transform quickly)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


class DeviceImpulseResponse:
    """DIR: clips recorded with one of ``devices`` are, with probability ``p`` each, convolved with one impulse
    response drawn uniformly from ``folder`` (full convolution truncated to the clip length), all chosen clips of a
    batch in one FFT convolution. The responses are read and resampled once; their spectra are computed once per
    device and clip length.
    """

    def __init__(self, folder: str | Path, sample_rate: int = 32000, p: float = 0.6,
                 devices: Sequence[str] = ("a",), device_names: Sequence[str] = ("a",)):
        self.folder, self.sample_rate, self.p = Path(folder), sample_rate, p
        self.devices = sorted(set(devices))
        self.irs, self.paths = load_impulse_responses(self.folder, sample_rate)
        self.bank = torch.zeros(len(self.irs), max(len(ir) for ir in self.irs))
        for i, ir in enumerate(self.irs):
            self.bank[i, :len(ir)] = ir
        # eligible[d + 1]: whether clips of device index d (-1 = unknown) are augmented
        self.eligible = torch.tensor([False] + [name in self.devices for name in device_names])
        self._spectra: dict[tuple[int, str], torch.Tensor] = {}

    def sample(self, devices: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
        """This batch's draw from the clips' device indices [B] (CPU): (rows to convolve, response per row)."""
        u = torch.rand(len(devices), generator=generator)
        which = torch.randint(len(self.irs), (len(devices),), generator=generator)
        chosen = self.eligible[devices.cpu().long() + 1] & (u < self.p)
        rows = chosen.nonzero().flatten()
        return rows, which[rows]

    def apply(self, audio: torch.Tensor, draw: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``audio`` [B, T] with rows ``draw[0]`` convolved with responses ``draw[1]`` (a new tensor)."""
        rows, which = draw
        if len(rows) == 0:
            return audio
        t = audio.shape[-1]
        n = fast_length(t + self.bank.shape[1] - 1)
        spectra = self._spectrum(n, audio.device)
        rows, which = rows.to(audio.device), which.to(audio.device)
        wet = torch.fft.irfft(torch.fft.rfft(audio[rows].float(), n) * spectra[which], n)[:, :t]
        return audio.index_copy(0, rows, wet.to(audio.dtype))

    def _spectrum(self, n: int, device: torch.device) -> torch.Tensor:
        key = (n, str(device))
        if key not in self._spectra:
            self._spectra[key] = torch.fft.rfft(self.bank.to(device), n)
        return self._spectra[key]

    def __repr__(self) -> str:
        return (f"DeviceImpulseResponse(folder={str(self.folder)!r}, n_irs={len(self.irs)}, p={self.p}, "
                f"devices={self.devices})")
