"""Where and in which precision models run: one :class:`Accel` per command, from ``--device`` and ``--autocast``.

``--device auto|cpu|cuda|cuda:N`` (``auto``: this process's GPU when CUDA is available, else the CPU) and
``--autocast auto|off|bf16|fp16`` (``auto``: bf16 on a GPU that supports it, else fp16; off on the CPU, where a dtype
may still be requested explicitly, e.g. to test the mixed-precision path). Batches move with pinned memory and
non-blocking copies on CUDA; :meth:`Accel.batch_size` is the default batch per device. See docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator

import torch

from asc.errors import ConfigError

AUTOCAST_MODES = ("auto", "off", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_HELP = "auto (the GPU when CUDA is available, else the CPU), cpu, cuda or cuda:N"
AUTOCAST_HELP = "mixed precision: auto (bf16 on a GPU that supports it, else fp16; off on the CPU), off, bf16, fp16"
# Default clips per batch. On the CPU a small batch keeps the two pipelined stages (front end, network) evenly fed (8
# to 16 clips are equally fast, benchmarks/device_throughput.py; the front end works a few clips at a time whatever
# the batch); a GPU wants large ones.
BATCH_SIZES = {"cpu": {"predict": 8, "train": 256}, "cuda": {"predict": 512, "train": 256}}


def parse_device(text: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` as
    given, checked against the machine (a clear :class:`ConfigError` when CUDA or that GPU is not there)."""
    text = str(text).strip().lower()
    if text == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    match = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", text)
    if not match or (match.group(1) == "cpu" and match.group(2)):
        raise ConfigError(f"device {text!r}: expected {DEVICE_HELP}")
    if match.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {text!r}: CUDA is not available on this machine (torch {torch.__version__}); "
                          f"use --device cpu or auto")
    index = int(match.group(2)) if match.group(2) is not None else local_rank
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {text!r}: this machine has {torch.cuda.device_count()} GPU(s) "
                          f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def autocast_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The autocast dtype of ``mode`` on ``device`` (None: full float32)."""
    mode = str(mode).strip().lower()
    if mode not in AUTOCAST_MODES:
        raise ConfigError(f"autocast {mode!r}: expected one of {', '.join(AUTOCAST_MODES)}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DTYPES[mode]


@dataclass(frozen=True)
class Accel:
    """A device and the autocast dtype models run in there (None: float32)."""

    device: torch.device
    dtype: torch.dtype | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def pin_memory(self) -> bool:
        """Whether loaders should pin host memory (so that copies to the device can be non-blocking)."""
        return self.cuda

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this device and dtype (a no-op for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the device (a non-blocking copy from pinned memory on CUDA)."""
        return tensor.to(self.device, non_blocking=self.cuda and tensor.is_pinned())

    def batch_size(self, kind: str = "predict") -> int:
        """The default clips per batch on this device for ``kind`` ("predict" or "train")."""
        return BATCH_SIZES["cuda" if self.cuda else "cpu"][kind]

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.cuda else "CPU"
        return f"{self.device} ({name}), {self.precision}"


def resolve(device: str | torch.device = "auto", autocast: str = "auto", local_rank: int = 0) -> Accel:
    """The :class:`Accel` of a ``--device`` and an ``--autocast`` setting."""
    dev = device if isinstance(device, torch.device) else parse_device(device, local_rank)
    return Accel(dev, autocast_dtype(dev, autocast))


CPU = Accel(torch.device("cpu"))


def stage_threads() -> int:
    """Intra-op threads for each of two pipelined CPU stages (front end and network run in two threads): half of
    torch's threads."""
    return max(1, torch.get_num_threads() // 2)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block (threads started inside it use ``n`` too)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
