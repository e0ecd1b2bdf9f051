"""Synthetic data in the exact TAU Urban Acoustic Scenes 2022 Mobile layout, for tests, demos and benchmarks.

``make_synthetic_dataset(out, cfg)`` writes ``out/dev`` (``meta.csv``, ``audio/``, ``evaluation_setup/``,
``splits/split{5,10,25,50,100}.csv`` + ``test.csv``) and ``out/eval`` (``audio/<int>.wav``,
``evaluation_setup/fold1_test.csv``; the hidden answers go to ``out/eval/ground_truth.csv``).

Each 10-s *segment* (here ``cfg.pieces`` seconds) is synthesised as one continuous signal and cut into 1-s pieces
``k = 0 .. pieces-1``. A scene is a mix of coloured noise with a band emphasis, tonal components and transient events,
all drawn from per-class distributions with per-segment randomness, slow amplitude modulation and, sometimes, events
borrowed from another scene; so classes are separable but not trivially. A device is a fixed short impulse response
(band limits, resonances, early reflections) plus a noise floor; device ``a`` is nearly flat. Train segments are
~70 % device ``a`` (the rest b, c, s1–s3); test and eval segments cycle over all 9 devices. Test and eval use
recording locations disjoint from train. Files are a pure function of the config: the same seed gives byte-identical
files.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len
from tqdm import tqdm

from asc.config import to_dict
from asc.data.layout import TAU_DEVICES, TAU_SCENES
from asc.errors import DatasetError
from asc.fileio import atomic_path, write_json, write_text

TAU_CITIES = ("barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague", "stockholm", "vienna")
TRAIN_DEVICES = ("a", "b", "c", "s1", "s2", "s3")
ALL_DEVICES = TAU_DEVICES
SPLIT_PERCENTS = (5, 10, 25, 50, 100)


@dataclass
class SynthConfig:
    """Size and character of a synthetic dataset. Counts of segments are per class."""

    seed: int = 0
    sample_rate: int = 44100
    clip_seconds: float = 1.0
    pieces: int = 3                  # 1-s pieces per segment (k = 0 .. pieces-1; TAU has 10)
    train_segments: int = 8          # per class
    test_segments: int = 4           # per class
    eval_segments: int = 2           # per class
    labels: tuple[str, ...] = TAU_SCENES
    cities: tuple[str, ...] = TAU_CITIES
    device_a_share: float = 0.7      # fraction of train segments recorded with device a
    segments_per_location: int = 2
    jitter: float = 1.0              # scale of the per-segment randomness (0 = every segment of a class alike)
    eval_device_ids: bool = True     # write a device_id column in the eval list (2025 style)

    @classmethod
    def preset(cls, name: str, **overrides) -> "SynthConfig":
        """A named size: ``tiny`` (tests, ~140 clips; splits 5, 10 and 25 coincide), ``small`` (the demo's, ~780),
        ``medium`` (~2,900)."""
        if name not in PRESETS:
            raise DatasetError(f"unknown synthetic preset {name!r}: expected one of {', '.join(PRESETS)}")
        return dataclasses.replace(cls(**PRESETS[name]), **overrides)


PRESETS: dict[str, dict] = {
    "tiny": dict(pieces=2, train_segments=4, test_segments=2, eval_segments=1),
    "small": dict(train_segments=20),  # 1, 2, 5, 10, 20 segments per class: five distinct splits
    "medium": dict(pieces=5, train_segments=40, test_segments=12, eval_segments=6),
}


@dataclass(frozen=True)
class SynthPaths:
    """Where a synthetic dataset was written: the development set (TAU layout) and the evaluation set."""

    dev: Path
    eval: Path


@dataclass
class _Segment:
    subset: str       # train | test | eval
    label: str
    city: str
    locid: int
    segid: int
    device: str

    def filename(self, k: int) -> str:
        return f"audio/{self.label}-{self.city}-{self.locid}-{self.segid}-{k}-{self.device}.wav"


def make_synthetic_dataset(out: str | Path, cfg: SynthConfig | None = None, overwrite: bool = False,
                           progress: bool = False) -> SynthPaths:
    """Write a synthetic development set to ``out/dev`` and an evaluation set to ``out/eval``."""
    cfg = cfg or SynthConfig()
    _validate(cfg)
    out = Path(out)
    paths = SynthPaths(dev=out / "dev", eval=out / "eval")
    for folder in (paths.dev, paths.eval):
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise DatasetError(f"{folder}: already exists and is not empty; choose another folder or "
                                   f"overwrite it (--overwrite)")
            shutil.rmtree(folder)

    segments = _plan(cfg)
    n = round(cfg.clip_seconds * cfg.sample_rate)
    eval_order = np.random.default_rng([cfg.seed, 7]).permutation(
        [(i, k) for i, s in enumerate(segments) if s.subset == "eval" for k in range(cfg.pieces)])
    eval_names = {(int(i), int(k)): f"audio/{j}.wav" for j, (i, k) in enumerate(eval_order)}

    (paths.dev / "audio").mkdir(parents=True, exist_ok=True)
    (paths.eval / "audio").mkdir(parents=True, exist_ok=True)
    devices = {d: _device_response(d, cfg.sample_rate) for d in ALL_DEVICES}
    for i, seg in enumerate(tqdm(segments, desc="synthesising segments", unit="seg", disable=not progress or None)):
        audio = _render_segment(seg, cfg, devices[seg.device])
        for k in range(cfg.pieces):
            if seg.subset == "eval":
                path = paths.eval / eval_names[(i, k)]
            else:
                path = paths.dev / seg.filename(k)
            _write_wav(path, audio[k * n:(k + 1) * n], cfg.sample_rate)

    _write_dev_tables(paths.dev, segments, cfg)
    _write_eval_tables(paths.eval, segments, eval_names, cfg)
    write_json(paths.dev / "synth_info.json", {"generator": "asc.data.synth", "config": to_dict(cfg)})
    return paths


def _validate(cfg: SynthConfig) -> None:
    checks = [
        (cfg.sample_rate >= 8000, "sample_rate must be at least 8000"),
        (cfg.clip_seconds > 0, "clip_seconds must be positive"),
        (cfg.pieces >= 1, "pieces must be at least 1"),
        (cfg.train_segments >= 1 and cfg.test_segments >= 1 and cfg.eval_segments >= 0,
         "train_segments and test_segments must be >= 1, eval_segments >= 0"),
        (len(cfg.labels) >= 2 and len(set(cfg.labels)) == len(cfg.labels), "labels must be >= 2 distinct names"),
        (all("-" not in x for x in (*cfg.labels, *cfg.cities)) and len(cfg.cities) >= 1,
         "labels and cities must not contain '-' and there must be at least one city"),
        (0.0 <= cfg.device_a_share <= 1.0, "device_a_share must be in [0, 1]"),
        (cfg.segments_per_location >= 1, "segments_per_location must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise DatasetError(f"SynthConfig: {message}")


def _plan(cfg: SynthConfig) -> list[_Segment]:
    """Every segment with its class, city, location, id and device. Locations never cross subsets."""
    segments: list[_Segment] = []
    counters = {"locid": 0, "segid": 0}
    other_devices = [d for d in TRAIN_DEVICES if d != "a"]
    cycle = {"train": 0, "test": 0, "eval": 4}

    def add(subset: str, ci: int, label: str, count: int, devices: list[str]) -> None:
        locid = None
        for j in range(count):
            if j % cfg.segments_per_location == 0:
                locid = 10 * counters["locid"] + {"train": 0, "test": 1, "eval": 2}[subset]
                counters["locid"] += 1
                city = cfg.cities[(3 * ci + j // cfg.segments_per_location + cycle[subset]) % len(cfg.cities)]
            segments.append(_Segment(subset, label, city, locid, counters["segid"], devices[j]))
            counters["segid"] += 1

    for ci, label in enumerate(cfg.labels):
        n_a = round(cfg.device_a_share * cfg.train_segments)
        devices = ["a"] * n_a
        for _ in range(cfg.train_segments - n_a):
            devices.append(other_devices[cycle["train"] % len(other_devices)])
            cycle["train"] += 1
        # spread the devices over locations instead of grouping them
        order = np.random.default_rng([cfg.seed, 1, ci]).permutation(len(devices))
        add("train", ci, label, cfg.train_segments, [devices[o] for o in order])
        for subset, count in (("test", cfg.test_segments), ("eval", cfg.eval_segments)):
            devices = []
            for _ in range(count):
                devices.append(ALL_DEVICES[cycle[subset] % len(ALL_DEVICES)])
                cycle[subset] += 1
            add(subset, ci, label, count, devices)
    return segments


def _split_order(segs: list[_Segment], rng: np.random.Generator) -> list[_Segment]:
    """Order one class's train segments so that every prefix keeps (nearly) the class's device mix; random phases
    make short prefixes of different classes pick different devices, so small splits keep the mix across classes."""
    by_device: dict[str, list[_Segment]] = {}
    for s in segs:
        by_device.setdefault(s.device, []).append(s)
    for d in by_device:
        by_device[d] = [by_device[d][i] for i in rng.permutation(len(by_device[d]))]
    total = {d: len(v) for d, v in by_device.items()}
    taken = {d: 0 for d in by_device}
    phase = {d: rng.uniform(0.0, 1.0) for d in sorted(by_device)}  # so that small prefixes differ between classes
    order = []
    for t in range(len(segs)):
        deficit = {d: total[d] * (t + 1) / len(segs) + phase[d] - taken[d] for d in by_device if taken[d] < total[d]}
        d = max(deficit, key=lambda x: (deficit[x], total[x]))
        order.append(by_device[d][taken[d]])
        taken[d] += 1
    return order


def _write_dev_tables(root: Path, segments: list[_Segment], cfg: SynthConfig) -> None:
    train = [s for s in segments if s.subset == "train"]
    test = [s for s in segments if s.subset == "test"]

    def rows(segs: list[_Segment]) -> list[tuple[str, _Segment]]:
        return sorted((s.filename(k), s) for s in segs for k in range(cfg.pieces))

    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    meta += [f"{f}\t{s.label}\t{s.city}-{s.locid}\t{s.device}" for f, s in rows(train + test)]
    write_text(root / "meta.csv", "\n".join(meta) + "\n")

    def labelled(segs: list[_Segment]) -> str:
        return "\n".join(["filename\tscene_label"] + [f"{f}\t{s.label}" for f, s in rows(segs)]) + "\n"

    setup = root / "evaluation_setup"
    write_text(setup / "fold1_train.csv", labelled(train))
    write_text(setup / "fold1_evaluate.csv", labelled(test))
    write_text(setup / "fold1_test.csv", "\n".join(["filename"] + [f for f, _ in rows(test)]) + "\n")

    ordered = {}
    for ci, label in enumerate(cfg.labels):
        ordered[label] = _split_order([s for s in train if s.label == label], np.random.default_rng([cfg.seed, 2, ci]))
    for pct in SPLIT_PERCENTS:
        chosen = []
        for segs in ordered.values():
            chosen += segs[:max(1, round(len(segs) * pct / 100))]
        write_text(root / "splits" / f"split{pct}.csv", labelled(chosen))
    write_text(root / "splits" / "test.csv", labelled(test))


def _write_eval_tables(root: Path, segments: list[_Segment], names: dict[tuple[int, int], str],
                       cfg: SynthConfig) -> None:
    items = sorted(((int(Path(f).stem), f, segments[i]) for (i, _), f in names.items()))
    header = "filename\tdevice_id" if cfg.eval_device_ids else "filename"
    lines = [f"{f}\t{s.device}" if cfg.eval_device_ids else f for _, f, s in items]
    write_text(root / "evaluation_setup" / "fold1_test.csv", "\n".join([header] + lines) + "\n")
    truth = ["filename\tscene_label\tsource_label"] + [f"{f}\t{s.label}\t{s.device}" for _, f, s in items]
    write_text(root / "ground_truth.csv", "\n".join(truth) + "\n")


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")


# ---------------------------------------------------------------------------------------------------------- audio


def _seed(*parts) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def _class_profile(label: str) -> dict[str, float]:
    """Fixed per-class distribution centres (a pure function of the label name)."""
    r = np.random.default_rng(_seed("class", label))
    return {
        "beta": r.uniform(0.0, 2.0),                       # noise power slope 1/f^beta
        "band_hz": math.exp(r.uniform(math.log(150), math.log(6000))),
        "band_oct": r.uniform(0.5, 2.0),
        "band_db": r.uniform(0.0, 15.0),
        "tone_hz": math.exp(r.uniform(math.log(50), math.log(1200))),
        "tone_harm": int(r.integers(1, 6)),
        "tone_db": r.uniform(-30.0, -8.0),
        "tone_am_hz": r.uniform(0.1, 4.0),
        "event_rate": math.exp(r.uniform(math.log(0.3), math.log(6.0))),
        "event_hz": math.exp(r.uniform(math.log(300), math.log(8000))),
        "event_decay": math.exp(r.uniform(math.log(0.004), math.log(0.15))),
        "event_db": r.uniform(-18.0, 0.0),
        "am_hz": r.uniform(0.05, 1.0),
        "am_depth": r.uniform(0.0, 0.6),
    }


def _jittered(p: dict[str, float], r: np.random.Generator, j: float) -> dict[str, float]:
    q = dict(p)
    q["beta"] = p["beta"] + r.normal(0, 0.3 * j)
    q["band_hz"] = p["band_hz"] * math.exp(r.normal(0, 0.3 * j))
    q["band_db"] = p["band_db"] + r.normal(0, 3 * j)
    q["tone_hz"] = p["tone_hz"] * math.exp(r.normal(0, 0.1 * j))
    q["tone_db"] = p["tone_db"] + r.normal(0, 4 * j)
    q["event_rate"] = p["event_rate"] * math.exp(r.normal(0, 0.4 * j))
    q["event_hz"] = p["event_hz"] * math.exp(r.normal(0, 0.25 * j))
    q["event_decay"] = p["event_decay"] * math.exp(r.normal(0, 0.3 * j))
    q["event_db"] = p["event_db"] + r.normal(0, 4 * j)
    q["am_depth"] = float(np.clip(p["am_depth"] + r.normal(0, 0.15 * j), 0.0, 0.9))
    return q


def _shaped_noise(r: np.random.Generator, n: int, sr: int, beta: float, band_hz: float, band_oct: float,
                  band_db: float) -> np.ndarray:
    spec = np.fft.rfft(r.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1]
    gain = f ** (-beta / 2)
    gain *= 1.0 + (10 ** (band_db / 20) - 1.0) * np.exp(-0.5 * (np.log2(f / band_hz) / band_oct) ** 2)
    x = np.fft.irfft(spec * gain, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _render_scene(r: np.random.Generator, p: dict[str, float], n: int, sr: int, with_noise: bool = True) -> np.ndarray:
    t = np.arange(n) / sr
    x = _shaped_noise(r, n, sr, p["beta"], p["band_hz"], p["band_oct"], p["band_db"]) if with_noise else np.zeros(n)
    wobble = 1.0 + 0.01 * np.sin(2 * np.pi * r.uniform(0.1, 1.0) * t + r.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(p["tone_hz"] * wobble) / sr
    tones = sum(np.sin(h * phase + r.uniform(0, 2 * np.pi)) / h for h in range(1, p["tone_harm"] + 1)
                if h * p["tone_hz"] < 0.45 * sr)
    tones = tones * (1.0 + 0.5 * np.sin(2 * np.pi * p["tone_am_hz"] * t + r.uniform(0, 2 * np.pi)))
    x = x + 10 ** (p["tone_db"] / 20) * np.sqrt(2) * tones
    n_events = r.poisson(p["event_rate"] * n / sr)
    length = min(n, int(6 * p["event_decay"] * sr) + 1)
    te = np.arange(length) / sr
    for _ in range(n_events):
        hz = min(p["event_hz"] * math.exp(r.normal(0, 0.2)), 0.45 * sr)
        shape = np.exp(-te / p["event_decay"]) * (np.sin(2 * np.pi * hz * te) + 0.3 * r.standard_normal(length))
        start = int(r.integers(0, n))
        stop = min(n, start + length)
        x[start:stop] += 10 ** ((p["event_db"] + r.normal(0, 3)) / 20) * 4.0 * shape[:stop - start]
    envelope = 1.0 + p["am_depth"] * np.sin(2 * np.pi * p["am_hz"] * t + r.uniform(0, 2 * np.pi))
    return x * envelope


def _render_segment(seg: _Segment, cfg: SynthConfig, device: np.ndarray) -> np.ndarray:
    sr = cfg.sample_rate
    n = round(cfg.clip_seconds * sr) * cfg.pieces
    r = np.random.default_rng([cfg.seed] + _seed("segment", seg.subset, seg.segid))
    x = _render_scene(r, _jittered(_class_profile(seg.label), r, cfg.jitter), n, sr)
    loc = np.random.default_rng(_seed("location", seg.locid))  # a location's own faint background colour
    x += 0.3 * _shaped_noise(r, n, sr, loc.uniform(0, 2), loc.uniform(100, 4000), 1.0, loc.uniform(0, 10))
    if r.random() < 0.3:  # events of another scene leak in
        other = cfg.labels[int(r.integers(0, len(cfg.labels)))]
        x += 0.5 * _render_scene(r, _jittered(_class_profile(other), r, cfg.jitter), n, sr, with_noise=False)
    y = _apply_device(x, device)
    dev = np.random.default_rng(_seed("device-noise", seg.device))
    y = y / (np.sqrt(np.mean(y ** 2)) + 1e-12)
    y += 10 ** (dev.uniform(-55, -35) / 20) * _shaped_noise(r, n, sr, dev.uniform(-0.5, 1.0), 1000, 2.0, 0.0)
    y *= 10 ** (r.uniform(-32, -18) / 20) / (np.sqrt(np.mean(y ** 2)) + 1e-12)
    peak = np.max(np.abs(y))
    if peak > 0.98:
        y *= 0.98 / peak
    return y.astype(np.float32)


def _device_response(device: str, sr: int, taps: int = 511) -> np.ndarray:
    """A device's impulse response: band limits, two resonances and early reflections (``a``: nearly flat)."""
    r = np.random.default_rng(_seed("device", device))
    nfft = 2048
    f = np.fft.rfftfreq(nfft, 1.0 / sr)
    if device == "a":
        lo, hi, res = 30.0, 0.45 * sr, []
    else:
        lo = r.uniform(80, 500)
        hi = min(r.uniform(3000, 12000), 0.45 * sr)
        res = [(math.exp(r.uniform(math.log(300), math.log(6000))), r.uniform(-8, 8)) for _ in range(2)]
    gain = 1.0 / np.sqrt(1 + (lo / np.maximum(f, 1.0)) ** 4) / np.sqrt(1 + (f / hi) ** 8)
    for hz, db in res:
        gain *= 10 ** (db / 20 * np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / hz) / 0.3) ** 2))
    h = np.roll(np.fft.irfft(gain, nfft), taps // 2)[:taps] * np.hanning(taps)
    if device != "a":
        n_ref = int(sr * r.uniform(0.002, 0.008))
        tail = r.standard_normal(n_ref) * np.exp(-np.arange(n_ref) / (0.3 * n_ref)) * 10 ** (r.uniform(-30, -18) / 20)
        h[taps // 2 + 1:taps // 2 + 1 + n_ref] += tail[:taps - taps // 2 - 1]
    return h / np.sqrt(np.sum(h ** 2))


def _apply_device(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = next_fast_len(len(x) + len(h) - 1, real=True)
    y = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)
    return y[len(h) // 2:len(h) // 2 + len(x)]
