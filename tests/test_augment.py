"""Augmentation on the batch: each piece against its per-clip definition (same outputs for the same draws) and its
distribution (statistics over many draws), the pipeline's config, order and reproducibility."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF
from torch import nn

from asc.augment import (AugmentConfig, DeviceImpulseResponse, FreqMixStyle, TrainAugment, apply_masks, describe,
                         fast_length, freq_mixstyle, mixup, resolve_augment, roll, sample_masks, sample_shifts)
from asc.errors import ConfigError, DatasetError
from asc.frontend import build_frontend


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
    """Three responses of different lengths (one at 44.1 kHz, resampled at load)."""
    folder = tmp_path / "irs"
    ir = np.zeros(2205, dtype=np.float32)
    ir[0], ir[300], ir[1000] = 1.0, -0.6, 0.3
    write_ir(folder / "mic.wav", ir, 44100)
    rng = np.random.default_rng(0)
    write_ir(folder / "b_short.wav", rng.normal(0, 0.3, 40) * np.exp(-np.arange(40) / 8), 32000)
    write_ir(folder / "c_long.wav", rng.normal(0, 0.1, 3000) * np.exp(-np.arange(3000) / 500), 32000)
    return folder


def test_batched_dir_equals_per_clip_convolution(ir_folder):
    """Each chosen clip equals its own full convolution with its drawn response, truncated; the others are
    untouched."""
    names = ["a", "b", "c", "s1"]
    dir_ = DeviceImpulseResponse(ir_folder, p=0.7, devices=("a", "b"), device_names=names)
    assert len(dir_.irs) == 3 and dir_.bank.shape == (3, 3000)
    g = torch.Generator().manual_seed(3)
    audio = torch.randn(24, 8000, generator=g)
    devices = torch.tensor([0, 1, 2, 3, -1, 0] * 4)
    rows, which = dir_.sample(devices, torch.Generator().manual_seed(1))
    assert len(rows) > 3 and set(devices[rows].tolist()) <= {0, 1} and len(set(which.tolist())) > 1
    out = dir_.apply(audio, (rows, which))
    assert out.shape == audio.shape and out.dtype == audio.dtype
    for r in range(len(audio)):
        if r in rows.tolist():
            ir = dir_.irs[int(which[rows.tolist().index(r)])]
            torch.testing.assert_close(out[r], AF.fftconvolve(audio[r], ir)[:8000], atol=2e-5, rtol=1e-4)
        else:
            assert torch.equal(out[r], audio[r])


def test_dir_draws_per_clip_with_probability_p_only_for_its_devices(ir_folder):
    dir_ = DeviceImpulseResponse(ir_folder, p=0.3, devices=("a",), device_names=["a", "b"])
    g = torch.Generator().manual_seed(0)
    devices = torch.tensor([0] * 3000 + [1] * 1000 + [-1] * 1000)
    chosen, responses = [], []
    for _ in range(4):
        rows, which = dir_.sample(devices, g)
        chosen.append(rows)
        responses.append(which)
    rows = torch.cat(chosen)
    assert (rows < 3000).all()  # never device b or unknown
    assert 0.28 < len(rows) / (4 * 3000) < 0.32
    counts = torch.bincount(torch.cat(responses), minlength=3).float() / len(rows)
    assert (counts - 1 / 3).abs().max() < 0.03  # each response equally likely


def test_dir_resamples_each_response_once_at_load(ir_folder, monkeypatch):
    calls = []
    resample = AF.resample

    def counting_resample(waveform, orig, new, *args, **kwargs):
        calls.append((orig, new))
        return resample(waveform, orig, new, *args, **kwargs)

    monkeypatch.setattr(AF, "resample", counting_resample)
    dir_ = DeviceImpulseResponse(ir_folder, sample_rate=32000, p=1.0, device_names=["a"])
    assert calls == [(44100, 32000)]
    assert [p.name for p in dir_.paths] == ["b_short.wav", "c_long.wav", "mic.wav"]
    data, _ = sf.read(ir_folder / "mic.wav", dtype="float32")
    torch.testing.assert_close(dir_.irs[2], resample(torch.from_numpy(data), 44100, 32000))
    assert len(dir_.irs[2]) == 1600
    for _ in range(5):
        dir_.apply(torch.randn(4, 4000), dir_.sample(torch.zeros(4, dtype=torch.long)))
    assert len(calls) == 1


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
    dir_ = DeviceImpulseResponse(shared_dir / "dirs", p=1.0, device_names=["a", "b"])
    assert len(dir_.irs) == 50
    assert all(0.3 * 32000 < len(ir) < 0.55 * 32000 for ir in dir_.irs)
    audio = torch.randn(6, 32000, generator=torch.Generator().manual_seed(0))
    rows, which = dir_.sample(torch.zeros(6, dtype=torch.long), torch.Generator().manual_seed(0))
    out = dir_.apply(audio, (rows, which))
    assert len(rows) == 6 and torch.isfinite(out).all() and len(set(which.tolist())) > 1
    for r in (0, 5):
        torch.testing.assert_close(out[r], AF.fftconvolve(audio[r], dir_.irs[int(which[r])])[:32000],
                                   atol=1e-4, rtol=1e-4)


def test_fast_length():
    assert [fast_length(n) for n in (1, 7, 17, 49599, 50001)] == [1, 8, 18, 50000, 50625]


def test_roll_per_row_and_uniform_shifts():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(40, dtype=torch.float32).repeat(5, 1) + torch.arange(5).view(-1, 1) * 100
    shifts = sample_shifts(5, 30, g)
    out = roll(x, shifts)
    for r in range(5):
        assert torch.equal(out[r], torch.roll(x[r], int(shifts[r])))
    many = sample_shifts(200_000, 100, g).double()
    assert many.min() == -100 and many.max() == 100
    assert abs(many.mean()) < 0.5
    assert many.var().item() == pytest.approx(((201 ** 2) - 1) / 12, rel=0.02)  # discrete uniform on [-100, 100]


@pytest.mark.parametrize("axis, width", [(-2, 48), (-1, 20)])
def test_masks_have_torchaudios_iid_distribution(axis, width):
    """Per clip, a span of U[0, width) bins at a uniform start: the statistics of torchaudio's iid masking."""
    x = torch.ones(4000, 1, 256, 65)
    spans = sample_masks(4000, width, x.shape[axis], torch.Generator().manual_seed(0))
    ours = apply_masks(x, spans, axis, value=0.0)
    start, end = spans
    assert ((end - start) >= 0).all() and ((end - start) <= width - 1).all()
    for r in (0, 1, 2):  # the masked positions are exactly the span
        masked = (ours[r, 0] == 0).all(dim=-1 if axis == -2 else -2)
        assert masked.nonzero().flatten().tolist() == list(range(int(start[r]), int(end[r])))
    torch.manual_seed(0)
    masker = (torchaudio.transforms.FrequencyMasking if axis == -2 else torchaudio.transforms.TimeMasking)(
        width, iid_masks=True)
    theirs = masker(x)
    dim = (-1,) if axis == -2 else (-2,)
    ours_n = (ours == 0).all(dim=dim).sum(-1).flatten().double()
    theirs_n = (theirs == 0).all(dim=dim).sum(-1).flatten().double()
    assert ours_n.mean().item() == pytest.approx(theirs_n.mean().item(), abs=0.7)  # E = (width - 1) / 2
    assert ours_n.std().item() == pytest.approx(theirs_n.std().item(), rel=0.05)
    positions = (ours == 0).all(dim=dim).double().mean(dim=(0, 1)).flatten()
    reference = (theirs == 0).all(dim=dim).double().mean(dim=(0, 1)).flatten()
    assert (positions - reference).abs().max() < 0.02  # the same coverage along the axis


def test_mixup_mixes_inputs_and_targets_alike():
    y = nn.functional.one_hot(torch.arange(8) % 4, 4).float()
    x_mix, y_mix = mixup(y.clone(), y, alpha=0.4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x_mix, y_mix)
    torch.testing.assert_close(y_mix.sum(dim=1), torch.ones(8))
    assert (y_mix.max(dim=1).values >= 0.5 - 1e-6).all()
    assert (y_mix.max(dim=1).values < 1).any()


# ---------------------------------------------------------------------------------------------------- the pipeline


def test_resolve_fills_the_front_ends_recipe_and_refuses_what_cannot_run(ir_folder):
    b24 = resolve_augment(AugmentConfig(), "baseline24")
    assert (b24.freq_mask, b24.time_mask, b24.fmin_aug_range, b24.fmax_aug_range) == (48, 0, 1, 1)
    passt = resolve_augment(AugmentConfig(freq_mask=0), "passt")
    assert (passt.freq_mask, passt.time_mask, passt.fmax_aug_range) == (0, 20, 1000)
    mn = resolve_augment(AugmentConfig(), "passt", {"fmin_aug_range": 10, "fmax_aug_range": 2000})
    assert (mn.fmin_aug_range, mn.fmax_aug_range) == (10, 2000)
    with pytest.raises(ConfigError, match="augment.dir_p = 0.6.*--dirs"):
        resolve_augment(AugmentConfig(dir_p=0.6), "cpjku23")
    assert resolve_augment(AugmentConfig(dir_p=0.6, dir_folder=str(ir_folder)), "cpjku23").dir_p == 0.6
    with pytest.raises(ConfigError, match="baseline24 front end has no band jitter"):
        resolve_augment(AugmentConfig(fmax_aug_range=1000), "baseline24")
    with pytest.raises(ConfigError, match="mixstyle_p"):
        resolve_augment(AugmentConfig(mixstyle_p=1.5), "baseline24")
    text = describe(vars(resolve_augment(AugmentConfig(dir_p=0.6, dir_folder=str(ir_folder)), "cpjku23")))
    assert text == "DIR p 0.6 (a) · roll ±3200 · band jitter fmax ±500 Hz · mask freq 48 · Freq-MixStyle p 0.4 α 0.3"
    assert describe(vars(resolve_augment(AugmentConfig(roll_samples=0, freq_mask=0, mixstyle_p=0),
                                         "baseline24"))) == "none"


def _pipeline(ir_folder, seed=0, **values):
    frontend = build_frontend("cpjku23")
    cfg = resolve_augment(AugmentConfig(dir_folder=str(ir_folder), **values), "cpjku23")
    return TrainAugment(cfg, frontend, ["a", "b"], seed=seed), frontend


def test_pipeline_order_and_what_teachers_get(ir_folder):
    audio = torch.randn(8, 32000, generator=torch.Generator().manual_seed(0)) * 0.1
    devices = torch.tensor([0, 1] * 4)
    aug, frontend = _pipeline(ir_folder, dir_p=1.0, roll_samples=100, freq_mask=20, time_mask=10, mixstyle_p=1.0,
                              mixup_alpha=0.3)
    state = aug.state_dict()
    batch = aug(audio, devices)
    # the same draws, step by step
    aug.load_state_dict(state)
    g = aug.generator
    rows, which = aug.dir.sample(devices, g)
    assert rows.tolist() == [0, 2, 4, 6]
    wave = roll(aug.dir.apply(audio, (rows, which)), sample_shifts(8, 100, g))
    torch.testing.assert_close(batch.audio, wave)  # what online teachers hear: after DIR and roll
    band = aug.sample_band()
    assert 15001 <= band[1] <= 16000 and band[0] == 0.0
    x = frontend(wave, band)
    x = apply_masks(x, sample_masks(8, 20, x.shape[-2], g), -2, frontend.mask_value)
    x = apply_masks(x, sample_masks(8, 10, x.shape[-1], g), -1, frontend.mask_value)
    draw = aug.mixstyle.sample(8)
    assert draw is not None and all(torch.equal(a, b) for a, b in zip(draw, batch.mixstyle))
    x = freq_mixstyle(x, *draw)
    lam, perm = batch.mixup
    torch.testing.assert_close(batch.logmel, lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm])


def test_pipeline_is_reproducible_from_its_state_and_off_means_off(ir_folder):
    audio = torch.randn(6, 32000, generator=torch.Generator().manual_seed(0)) * 0.1
    devices = torch.zeros(6, dtype=torch.long)
    a, _ = _pipeline(ir_folder, seed=5, dir_p=0.5, mixup_alpha=0.3)
    a(audio, devices)
    state = a.state_dict()
    first = a(audio, devices)
    b, _ = _pipeline(ir_folder, seed=99, dir_p=0.5, mixup_alpha=0.3)
    b.load_state_dict(state)
    second = b(audio, devices)
    torch.testing.assert_close(first.logmel, second.logmel, atol=0, rtol=0)
    off, frontend = _pipeline(ir_folder, roll_samples=0, freq_mask=0, fmax_aug_range=1, mixstyle_p=0.0)
    batch = off(audio, devices)
    assert batch.audio is audio and batch.mixstyle is None and batch.mixup is None
    torch.testing.assert_close(batch.logmel, frontend(audio), atol=0, rtol=0)
