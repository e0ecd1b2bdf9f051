"""Front ends: reference log-mels reproduced, shapes, and train-time augmentation switched by module mode."""

from __future__ import annotations

import math

import pytest
import torch

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
def test_eval_is_deterministic_train_is_not(name):
    frontend = build_frontend(name)
    x = _noise()
    with torch.no_grad():
        frontend.eval()
        a, b = frontend(x), frontend(x)
        frontend.train()
        torch.manual_seed(0)
        c = frontend(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_train_without_augmentation_equals_eval():
    x = _noise()
    for name, config in [("baseline24", {"freq_mask": 0}),
                         ("cpjku23", {"freq_mask": 0, "fmax_aug_range": 1}),
                         ("passt", {"freq_mask": 0, "time_mask": 0, "fmax_aug_range": 1})]:
        frontend = build_frontend(name, config)
        with torch.no_grad():
            torch.testing.assert_close(frontend.train()(x), frontend.eval()(x), atol=1e-5, rtol=1e-5)


def test_baseline24_freq_mask_iid_before_log():
    frontend = build_frontend("baseline24").train()
    torch.manual_seed(1)
    with torch.no_grad():
        out = frontend(_noise(batch=16))[:, 0]
    masked_rows = (out == math.log(1e-5)).all(dim=-1)  # [B, F]: masked on the power mel, so log(0 + 1e-5)
    per_example = masked_rows.sum(dim=1)
    assert per_example.max() <= 47 and per_example.sum() > 0
    assert len({tuple(r.nonzero().flatten().tolist()) for r in masked_rows}) > 1, "masks must differ per example"


def test_cpjku23_fmax_jitter_range():
    frontend = build_frontend("cpjku23")
    assert frontend.eval().sample_band() == (0.0, 15500.0)
    frontend.train()
    torch.manual_seed(0)
    f_max = [frontend.sample_band()[1] for _ in range(3000)]
    assert 15001 <= min(f_max) <= 15010 and 15990 <= max(f_max) <= 16000
    assert {frontend.sample_band()[0] for _ in range(20)} == {0.0}


def test_passt_time_mask():
    frontend = build_frontend("passt", {"freq_mask": 0, "fmax_aug_range": 1}).train()
    torch.manual_seed(2)
    with torch.no_grad():
        out = frontend(_noise(batch=16))[:, 0]
    masked_cols = (out == 0.9).all(dim=1)  # masked in the log domain (0), then (0 + 4.5) / 5
    assert masked_cols.sum(dim=1).max() <= 19 and masked_cols.sum() > 0
    assert not (out == 0.9).all(dim=2).any(), "no frequency masking when freq_mask = 0"


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown front end"):
        build_frontend("mfcc")
    with pytest.raises(ConfigError, match="n_melz"):
        build_frontend("cpjku23", {"n_melz": 128})
    with pytest.raises(ConfigError, match="fmax_aug_range"):
        build_frontend("cpjku23", {"fmax_aug_range": 0})
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
