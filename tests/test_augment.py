import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from asc.augment import (AugmentConfig, Compose, DeviceImpulseResponse, FreqMixStyle, TimeRoll, build_augment,
                         freq_mixstyle, mixup)
from asc.config import from_dict
from asc.errors import DatasetError


def logmel_batch(batch=6, freq=16, frames=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randn(batch, 1, freq, 1, generator=g) * 3
    scales = torch.rand(batch, 1, freq, 1, generator=g) * 2 + 0.5
    return torch.randn(batch, 1, freq, frames, generator=g) * scales + offsets


def reference_mixstyle(x, lam, perm, eps=1e-6):
    """The CPJKU DCASE23 code, written out."""
    f_mu = x.mean(dim=[1, 3], keepdim=True)
    f_sig = (x.var(dim=[1, 3], keepdim=True) + eps).sqrt()
    x_normed = (x - f_mu) / f_sig
    lmda = lam.view(-1, 1, 1, 1)
    mu_mix = f_mu * lmda + f_mu[perm] * (1 - lmda)
    sig_mix = f_sig * lmda + f_sig[perm] * (1 - lmda)
    return x_normed * sig_mix + mu_mix


def test_freq_mixstyle_matches_reference_with_generator():
    x = logmel_batch()
    out = FreqMixStyle(p=1.0, alpha=0.3, generator=torch.Generator().manual_seed(7)).train()(x)
    g = torch.Generator().manual_seed(7)
    assert torch.rand((), generator=g) < 1.0
    lam = torch._sample_dirichlet(torch.full((6, 2), 0.3), generator=g)[:, 0]
    perm = torch.randperm(6, generator=g)
    assert not torch.equal(perm, torch.arange(6))
    torch.testing.assert_close(out, reference_mixstyle(x, lam, perm), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-3)


def test_freq_mixstyle_draws_lambda_from_beta_of_torch_distributions():
    x = logmel_batch()
    torch.manual_seed(3)
    out = FreqMixStyle(p=0.5, alpha=0.3).train()(x)
    torch.manual_seed(3)
    applied = torch.rand(()) < 0.5
    if applied:
        lam = torch.distributions.Beta(0.3, 0.3).sample((6,))
        expected = reference_mixstyle(x, lam, torch.randperm(6))
    else:
        expected = x
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_freq_mixstyle_identity_when_off_or_in_eval_mode():
    x = logmel_batch()
    assert FreqMixStyle(p=0.0).train()(x) is x
    assert FreqMixStyle(p=1.0).eval()(x) is x


def test_freq_mixstyle_applies_to_whole_batch_with_probability_p():
    x = logmel_batch()
    module = FreqMixStyle(p=0.3, alpha=0.3, generator=torch.Generator().manual_seed(0)).train()
    applied = 0
    for _ in range(300):
        out = module(x)
        changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-4
        if out is not x:
            applied += 1
            assert changed.sum() >= 2  # a batch-wide operation: every non-fixed point of the permutation changes
        else:
            assert not changed.any()
    assert 0.22 < applied / 300 < 0.38


def test_freq_mixstyle_mixes_per_frequency_statistics():
    x = logmel_batch()
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    mu = x.mean(dim=[1, 3])
    sig = x.std(dim=[1, 3])
    swapped = freq_mixstyle(x, torch.zeros(6), perm, eps=0.0)
    torch.testing.assert_close(swapped.mean(dim=[1, 3]), mu[perm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(swapped.std(dim=[1, 3]), sig[perm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(freq_mixstyle(x, torch.ones(6), perm, eps=0.0), x, rtol=1e-4, atol=1e-4)
    lam = torch.full((6,), 0.25)
    half = freq_mixstyle(x, lam, perm, eps=0.0)
    torch.testing.assert_close(half.mean(dim=[1, 3]), 0.25 * mu + 0.75 * mu[perm], rtol=1e-4, atol=1e-4)


def test_freq_mixstyle_statistics_are_detached():
    x = logmel_batch().requires_grad_()
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    lam = torch.full((6,), 0.4)
    freq_mixstyle(x, lam, perm).sum().backward()
    xd = x.detach()
    sig = (xd.var(dim=[1, 3], keepdim=True) + 1e-6).sqrt()
    sig_mix = 0.4 * sig + 0.6 * sig[perm]
    torch.testing.assert_close(x.grad, (sig_mix / sig).expand_as(xd), rtol=1e-5, atol=1e-6)


def write_ir(path, ir, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(ir, dtype=np.float32), rate, subtype="FLOAT")


@pytest.fixture()
def ir_folder(tmp_path):
    folder = tmp_path / "irs"
    ir = np.zeros(2205, dtype=np.float32)
    ir[0], ir[300], ir[1000] = 1.0, -0.6, 0.3
    write_ir(folder / "mic.wav", ir, 44100)
    return folder


def test_dir_applies_only_to_chosen_devices_and_preserves_length(ir_folder):
    hook = DeviceImpulseResponse(ir_folder, sample_rate=32000, p=1.0, devices=("a",), device_names=["a", "b", "s1"])
    x = torch.randn(8000, generator=torch.Generator().manual_seed(1))
    out = hook(x, {"device": 0})
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, AF.fftconvolve(x, hook.irs[0])[:8000])
    assert not torch.allclose(out, x, atol=1e-3)
    torch.testing.assert_close(hook(x, {"device": "a"}), out)
    for other in (1, 2, "b", -1):
        assert hook(x, {"device": other}) is x


def test_dir_resamples_each_response_once_at_load(ir_folder, monkeypatch):
    write_ir(ir_folder / "sub" / "native.wav", [1.0, 0.5, 0.25], 32000)
    calls = []
    resample = AF.resample

    def counting_resample(waveform, orig, new, *args, **kwargs):
        calls.append((orig, new))
        return resample(waveform, orig, new, *args, **kwargs)

    monkeypatch.setattr(AF, "resample", counting_resample)
    hook = DeviceImpulseResponse(ir_folder, sample_rate=32000, p=1.0, device_names=["a"])
    assert calls == [(44100, 32000)]
    assert [p.name for p in hook.paths] == ["mic.wav", "native.wav"]
    data, _ = sf.read(ir_folder / "mic.wav", dtype="float32")
    torch.testing.assert_close(hook.irs[0], resample(torch.from_numpy(data), 44100, 32000))
    assert len(hook.irs[0]) == 1600
    torch.testing.assert_close(hook.irs[1], torch.tensor([1.0, 0.5, 0.25]))
    x = torch.randn(4000)
    for _ in range(20):
        hook(x, {"device": 0})
    assert len(calls) == 1


def test_dir_probability_is_respected(ir_folder):
    hook = DeviceImpulseResponse(ir_folder, p=0.3, device_names=["a"], generator=torch.Generator().manual_seed(0))
    x = torch.randn(4000)
    applied = sum(hook(x, {"device": 0}) is not x for _ in range(500))
    assert 0.24 < applied / 500 < 0.36


def test_dir_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="missing-irs"):
        DeviceImpulseResponse(tmp_path / "missing-irs")
    empty = tmp_path / "no-wavs"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    (empty / "broken.wav").write_bytes(b"RIFF garbage")
    with pytest.warns(UserWarning, match="broken.wav"), pytest.raises(DatasetError, match="no-wavs"):
        DeviceImpulseResponse(empty)


def test_dir_with_micirp_responses(shared_dir):
    hook = DeviceImpulseResponse(shared_dir / "dirs", p=1.0, device_names=["a", "b"],
                                 generator=torch.Generator().manual_seed(0))
    assert len(hook.irs) == 50
    assert all(0.3 * 32000 < len(ir) < 0.55 * 32000 for ir in hook.irs)
    x = torch.randn(32000)
    outs = [hook(x, {"device": 0}) for _ in range(5)]
    assert all(o.shape == x.shape and torch.isfinite(o).all() for o in outs)
    assert len({round(float(o.abs().sum()), 3) for o in outs}) > 1  # different responses drawn
    clone = pickle.loads(pickle.dumps(hook))  # DataLoader workers receive the hook by pickling
    assert len(clone.irs) == 50


def test_time_roll_shifts_within_range():
    roll = TimeRoll(100, generator=torch.Generator().manual_seed(0))
    x = torch.arange(1000, dtype=torch.float32)
    shifts = []
    for _ in range(300):
        out = roll(x, {})
        shift = int((-out[0].item()) % 1000)
        shift = shift - 1000 if shift > 500 else shift
        torch.testing.assert_close(out, torch.roll(x, shift))
        shifts.append(shift)
    assert min(shifts) >= -100 and max(shifts) <= 100
    assert min(shifts) < -80 and max(shifts) > 80
    assert torch.equal(TimeRoll(0)(x, {}), x)


def test_compose_applies_hooks_in_order():
    hook = Compose([lambda w, item: w + item["device"], lambda w, item: w * 2])
    torch.testing.assert_close(hook(torch.ones(3), {"device": 1}), torch.full((3,), 4.0))
    x = torch.ones(3)
    assert Compose([])(x, {}) is x


def test_mixup_mixes_inputs_and_targets_alike():
    y = nn.functional.one_hot(torch.arange(8) % 4, 4).float()
    x_mix, y_mix = mixup(y.clone(), y, alpha=0.4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x_mix, y_mix)
    torch.testing.assert_close(y_mix.sum(dim=1), torch.ones(8))
    assert (y_mix.max(dim=1).values >= 0.5 - 1e-6).all()
    assert (y_mix.max(dim=1).values < 1).any()


def test_build_augment_from_config(ir_folder):
    cfg = from_dict(AugmentConfig, {"dir_folder": str(ir_folder), "dir_p": 0.6, "dir_devices": ["a", "b"],
                                    "roll_samples": 4000, "mixstyle_p": 0.4})
    hook, batch_module = build_augment(cfg, ["a", "b", "c"])
    assert isinstance(hook, Compose) and len(hook.hooks) == 2
    dir_hook, roll = hook.hooks
    assert isinstance(dir_hook, DeviceImpulseResponse) and dir_hook.devices == {"a", "b"} and dir_hook.p == 0.6
    assert isinstance(roll, TimeRoll) and roll.max_shift == 4000
    assert isinstance(batch_module, FreqMixStyle) and (batch_module.p, batch_module.alpha) == (0.4, 0.3)
    hook, batch_module = build_augment(AugmentConfig(mixstyle_p=0.0, roll_samples=0), ["a"])
    x = torch.randn(4, 1, 8, 5)
    assert hook.hooks == [] and batch_module.train()(x) is x and batch_module.sample(4) is None
    default_hook, _ = build_augment(AugmentConfig(), ["a"])
    assert [type(h) for h in default_hook.hooks] == [TimeRoll]
