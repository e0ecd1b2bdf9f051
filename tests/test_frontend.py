"""Front ends: reference log-mels reproduced, shapes, the fast spectrogram and mel projection against torch.stft and a
dense filterbank, no randomness of their own."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from asc.errors import ConfigError
from asc.frontend import build_frontend, frontend_config, input_shape


def _noise(batch: int = 4, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(32000 * seconds), generator=g)


@pytest.mark.parametrize("name, folder, frames", [("baseline24", "baseline24", 65), ("cpjku23", "cpmobile23", 64)])
def test_reference_logmel_reproduced(shared_dir, name, folder, frames):
    ref = torch.load(shared_dir / "reference" / folder / "reference.pt", weights_only=True)
    frontend = build_frontend(name).eval()
    with torch.no_grad():
        ours = frontend(ref["waveform_32k"])
    assert ours.shape == (4, 1, 256, frames)
    torch.testing.assert_close(ours[:, 0], ref["logmel"], atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name, config, shape", [
    ("baseline24", None, (1, 1, 256, 65)),
    ("cpjku23", None, (1, 1, 256, 64)),
    ("cpjku23", {"hop_length": 750}, (1, 1, 256, 43)),  # CP-ResNet
    ("passt", None, (1, 1, 128, 100)),
    ("cpjku23", {"n_mels": 128}, (1, 1, 128, 64)),
])
def test_input_shape(name, config, shape):
    frontend = build_frontend(name, config).train()
    assert input_shape(frontend) == shape
    assert frontend.training, "input_shape must restore the module's mode"
    assert frontend.sample_rate == 32000
    assert input_shape(frontend, seconds=2.0)[3] > shape[3]


@pytest.mark.parametrize("name", ["baseline24", "cpjku23", "passt"])
def test_deterministic_in_both_modes(name):
    """A front end holds no randomness: masks and band jitter are the augmentation pipeline's (asc.augment)."""
    frontend = build_frontend(name)
    x = _noise()
    with torch.no_grad():
        a = frontend.eval()(x)
        torch.manual_seed(0)
        b = frontend.train()(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name, config", [("baseline24", {}), ("cpjku23", {}), ("cpjku23", {"hop_length": 750}),
                                          ("passt", {})])
def test_power_frames_and_banded_mels_equal_stft_and_dense_filterbank(name, config):
    """The spectrogram is torch.stft's power and the banded projection the dense filterbank product."""
    frontend = build_frontend(name, config).eval()
    c = frontend.config
    x = _noise(batch=3)
    signal = x if name == "baseline24" else torch.nn.functional.conv1d(
        x.unsqueeze(1), frontend.preemphasis_kernel).squeeze(1)
    window = torch.hann_window(c.win_length, periodic=name == "baseline24")
    spec = torch.stft(signal, c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=window,
                      center=True, return_complex=True)
    power = spec.abs().square()  # [B, bins, frames]
    if name == "baseline24":
        banks = torchaudio.functional.melscale_fbanks(c.n_fft // 2 + 1, c.f_min, c.sample_rate / 2, c.n_mels,
                                                      c.sample_rate).t()
        expected = (banks @ power + 1e-5).log()
    else:
        expected = ((frontend.mel_banks(c.f_min, c.f_max) @ power + 1e-5).log() + 4.5) / 5
    with torch.no_grad():
        torch.testing.assert_close(frontend(x)[:, 0], expected, atol=2e-4, rtol=1e-4)


def test_cpjku23_band_argument_uses_that_band():
    frontend = build_frontend("cpjku23").eval()
    x = _noise(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(frontend(x, band=(0.0, 15500.0)), frontend(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(frontend(x, band=(0.0, 16000.0)), frontend(x), atol=1e-3)


def test_settings_that_moved_to_augment_are_dropped_from_stored_configs():
    """Bundles of older versions carry masking / jitter in their front-end config; they still load."""
    assert frontend_config("cpjku23", {"freq_mask": 48, "fmax_aug_range": 1000, "n_mels": 128}).n_mels == 128
    assert not hasattr(frontend_config("passt"), "time_mask")


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown front end"):
        build_frontend("mfcc")
    with pytest.raises(ConfigError, match="n_melz"):
        build_frontend("cpjku23", {"n_melz": 128})
    assert frontend_config("passt").n_fft == 1024
    assert frontend_config("cpjku23").n_fft == 4096


@pytest.mark.parametrize("name", ["baseline24", "cpjku23"])
def test_frontend_ignores_autocast(name):
    """Power mels overflow half precision: the front end always computes in float32."""
    frontend = build_frontend(name).eval()
    x = _noise(batch=2)
    with torch.no_grad():
        expected = frontend(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = frontend(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name, band", [("baseline24", None), ("cpjku23", None), ("cpjku23", (100.0, 12000.0)),
                                        ("passt", None)])
def test_cpu_chunks_give_the_numbers_of_one_call(monkeypatch, name, band):
    """On the CPU the spectrogram runs a few clips at a time: the same log-mels (and gradients) as in one call."""
    import asc.frontend as frontend_module

    frontend = build_frontend(name).eval()
    x = _noise(batch=5).requires_grad_()
    kwargs = {"band": band} if band else {}
    chunked = frontend(x, **kwargs)
    assert 5 > frontend_module.CPU_CHUNK_BYTES // (32000 // frontend.config.hop_length * frontend.config.n_fft * 4)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), x)
    monkeypatch.setattr(frontend_module, "CPU_CHUNK_BYTES", 1 << 40)
    whole = frontend(x, **kwargs)
    (grad_whole,) = torch.autograd.grad(whole.sum(), x)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_chunked, grad_whole, atol=1e-4, rtol=1e-4)
