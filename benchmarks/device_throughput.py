"""Clips per second of the batch pipeline on each device, side by side with the previous per-clip pipeline.

Sections (each a race: the cases alternate call by call until every one has run ``--seconds``, so load from other
processes hits them alike; compare within one run only):

* ``dir``: DIR alone, batched FFT convolution on the batch vs ``fftconvolve`` clip by clip (every clip convolved);
* ``loader``: the loader's capacity, cache -> batch -> augmentation (DIR p 0.6 on device-a clips, roll), then also
  front end, masks and Freq-MixStyle; asc's loader + ``TrainAugment`` vs the per-clip dataset hooks
  (``perclip_reference.py``) + torchaudio's masking front end;
* ``train``: full training steps (loader, augmentation, forward, backward, AdamW) of baseline24, CP-Mobile, CP-ResNet
  and PaSST per device and precision; the per-clip pipeline for baseline24; ``torch.compile`` for baseline24
  (compile time and steady speed);
* ``inference``: ``asc.inference.predict_dataset`` per model, device and precision (PyTorch fp32 / autocast, ONNX
  fp32 / INT8 on the CPU), and the previous path (per-item loader, batch 256, torchaudio front end) for INT8;
* ``predict``: ``asc predict`` of a synthetic evaluation set (``--predict-clips``, 10,000 by default) from the cache
  with an INT8 baseline24 ONNX file, in this process and as a fresh ``python -m asc`` process, with its stages
  (front end, network) alone, and the previous path on the same clips.

    python benchmarks/device_throughput.py                      # CPU (and every GPU it sees); a few minutes
    python benchmarks/device_throughput.py --quick               # smaller sizes (a smoke run)
    python benchmarks/device_throughput.py --devices cuda --dirs /data/micirp

Random weights (speed does not depend on them). Writes JSON (default benchmarks/results/device_throughput.json).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torch.nn.functional as F

from asc.accel import Accel, resolve
from asc.augment import AugmentConfig, FreqMixStyle, TrainAugment, resolve_augment
from asc.cli import main as asc_main
from asc.config import to_dict
from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset, clip_loader
from asc.data.validate import open_dataset
from asc.data.synth import SynthConfig, make_synthetic_dataset
from asc.export import export_model
from asc.fileio import write_json
from asc.inference import TorchPredictor, load_predictor, ort_session, predict_dataset
from asc.frontend import build_frontend
from asc.models.registry import Bundle, build_model, get_spec, make_config
from perclip_reference import PerClipDIR, PerClipRoll, TorchaudioBaseline24, per_clip_loader

SAMPLE_RATE = 32000
LABELS = [f"class{i}" for i in range(10)]
TRAIN_MODELS = ("baseline24", "cpmobile", "cpresnet", "passt")


def race(cases: dict[str, tuple[Callable[[], None], int]], seconds: float, min_calls: int = 2,
         warmup: int = 1) -> dict[str, dict]:
    """Alternate the cases call by call; clips/s of each over its timed calls."""
    for fn, _ in cases.values():
        for _ in range(warmup):
            fn()
    spent = {name: [0.0, 0, 0] for name in cases}  # seconds, clips, calls
    while any(s[0] < seconds or s[2] < min_calls for s in spent.values()):
        for name, (fn, clips) in cases.items():
            if spent[name][0] >= seconds and spent[name][2] >= min_calls:
                continue
            start = time.perf_counter()
            fn()
            spent[name][0] += time.perf_counter() - start
            spent[name][1] += clips
            spent[name][2] += 1
    return {name: {"clips_per_s": round(c / s, 1), "calls": n, "seconds": round(s, 2)}
            for name, (s, c, n) in spent.items()}


def _ratio(rows: dict, new: str, old: str) -> float:
    return round(rows[new]["clips_per_s"] / rows[old]["clips_per_s"], 2)


def _sync(accel: Accel) -> None:
    if accel.cuda:
        torch.cuda.synchronize(accel.device)


def synthetic_irs(folder: Path, n: int = 50, seed: int = 0) -> Path:
    """``n`` decaying-noise impulse responses of 0.3-0.55 s (the lengths of the MicIRP set) at 32 kHz."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        length = int(rng.uniform(0.3, 0.55) * SAMPLE_RATE)
        ir = rng.normal(0, 1, length) * np.exp(-np.arange(length) / (0.05 * SAMPLE_RATE))
        ir[0] = 1.0
        sf.write(folder / f"ir{i:02d}.wav", (ir / np.abs(ir).max()).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    return folder


def _cycle(loader):
    return itertools.chain.from_iterable(itertools.repeat(loader))


# ----------------------------------------------------------------------------------------------------- sections


def bench_dir(dataset: ClipDataset, dirs: Path, accel: Accel, batch: int, seconds: float) -> dict:
    cfg = resolve_augment(AugmentConfig(dir_p=1.0, dir_folder=str(dirs), dir_devices=list(dataset.devices),
                                        roll_samples=0, freq_mask=0), "baseline24")
    augment = TrainAugment(cfg, build_frontend("baseline24"), dataset.devices)
    per_clip = PerClipDIR(dirs, SAMPLE_RATE, 1.0, dataset.devices, dataset.devices)
    b = dataset.batch(np.arange(batch) % len(dataset))
    audio = accel.to(b["audio"])

    def batched():
        augment.waveforms(audio, b["device"])
        _sync(accel)

    def clip_by_clip():
        for k in range(batch):
            per_clip(b["audio"][k], {"device": int(b["device"][k])})

    rows = race({"batched on the batch": (batched, batch), "per clip (fftconvolve)": (clip_by_clip, batch)}, seconds)
    return {"device": str(accel.device), "batch": batch, "n_irs": len(augment.dir.irs), "rows": rows,
            "ratio": _ratio(rows, "batched on the batch", "per clip (fftconvolve)"), "target": 3.0}


def bench_loader(dataset: ClipDataset, dirs: Path, accel: Accel, batch: int, seconds: float) -> dict:
    cfg = resolve_augment(AugmentConfig(dir_p=0.6, dir_folder=str(dirs), roll_samples=3200), "baseline24")
    frontend = build_frontend("baseline24").to(accel.device)
    augment = TrainAugment(cfg, frontend, dataset.devices)
    new_batches = _cycle(clip_loader(dataset, batch, torch.randperm(len(dataset)).tolist(),
                                     pin_memory=accel.pin_memory))
    hooks = [PerClipDIR(dirs, SAMPLE_RATE, 0.6, ["a"], dataset.devices), PerClipRoll(3200)]
    old_batches = _cycle(per_clip_loader(dataset, hooks, batch))
    old_frontend = TorchaudioBaseline24(48).to(accel.device).train()
    mixstyle = FreqMixStyle(0.4, 0.3).train()

    def new(full: bool):
        b = next(new_batches)
        audio = accel.to(b["audio"])
        augment(audio, b["device"]) if full else augment.waveforms(audio, b["device"])
        _sync(accel)

    def old(full: bool):
        b = next(old_batches)
        audio = b["audio"].to(accel.device)
        if full:
            with torch.no_grad():
                mixstyle(old_frontend(audio))
        _sync(accel)

    out = {"device": str(accel.device), "batch": batch}
    for full, name in ((False, "cache -> batch -> DIR + roll"), (True, "... + front end, masks, Freq-MixStyle")):
        rows = race({"asc batch pipeline": (lambda f=full: new(f), batch),
                     "per-clip pipeline": (lambda f=full: old(f), batch)}, seconds)
        out[name] = {"rows": rows, "ratio": _ratio(rows, "asc batch pipeline", "per-clip pipeline")}
    return out


def _train_step_fn(model_name: str, dataset: ClipDataset, accel: Accel, batch: int, dirs: Path,
                   per_clip: bool = False, compiled: bool = False):
    """A closure doing one full training step; the model and pipeline are built here."""
    torch.manual_seed(0)
    spec = get_spec(model_name)
    overrides = {"pretrained": ""} if "pretrained" in to_dict(make_config(model_name)) else {}
    model = build_model(model_name, overrides, n_classes=len(dataset.labels)).to(accel.device).train()
    model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(accel.device.type, enabled=accel.dtype == torch.float16)
    frontend = build_frontend(spec.frontend, spec.frontend_config).to(accel.device)
    if per_clip:
        hooks = [PerClipDIR(dirs, SAMPLE_RATE, 0.6, ["a"], dataset.devices), PerClipRoll(3200)]
        batches = _cycle(per_clip_loader(dataset, hooks, batch))
        old_frontend = TorchaudioBaseline24(48).to(accel.device).train()
        mixstyle = FreqMixStyle(0.4, 0.3).train()
    else:
        cfg = resolve_augment(AugmentConfig(dir_p=0.6, dir_folder=str(dirs)), spec.frontend, spec.augment)
        augment = TrainAugment(cfg, frontend, dataset.devices)
        batches = _cycle(clip_loader(dataset, batch, torch.randperm(len(dataset)).tolist(),
                                     pin_memory=accel.pin_memory))

    def step():
        b = next(batches)
        labels = b["label"].to(accel.device)
        if per_clip:
            with torch.no_grad():
                x = mixstyle(old_frontend(b["audio"].to(accel.device)))
        else:
            x = augment(accel.to(b["audio"]), b["device"]).logmel
        with accel.autocast():
            logits = net(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(accel)

    return step


def bench_train(dataset: ClipDataset, dirs: Path, accels: list[Accel], batch: int, seconds: float,
                models: tuple[str, ...], compile_model: bool) -> list[dict]:
    out = []
    for accel in accels:
        for name in models:
            model_batch = max(2, batch // 4) if name == "passt" and not accel.cuda else batch
            cases = {}
            try:
                cases["asc"] = (_train_step_fn(name, dataset, accel, model_batch, dirs), model_batch)
                if name == "baseline24" and accel.dtype is None:
                    cases["per-clip pipeline"] = (_train_step_fn(name, dataset, accel, model_batch, dirs, True),
                                                  model_batch)
            except Exception as e:  # e.g. PaSST without hear21passt
                out.append({"model": name, "device": str(accel.device), "precision": accel.precision,
                            "skipped": f"{type(e).__name__}: {e}"})
                continue
            rows = race(cases, seconds, min_calls=2)
            row = {"model": name, "device": str(accel.device), "precision": accel.precision, "batch": model_batch,
                   "rows": rows}
            if "per-clip pipeline" in rows:
                row["ratio"] = _ratio(rows, "asc", "per-clip pipeline")
            out.append(row)
            print(f"  train {name:<11} {accel.device} {accel.precision}: {rows['asc']['clips_per_s']:8.1f} clips/s",
                  file=sys.stderr)
    if compile_model:
        accel = accels[0]
        start = time.perf_counter()
        compiled = _train_step_fn("baseline24", dataset, accel, batch, dirs, compiled=True)
        compiled()  # compiles
        compile_s = time.perf_counter() - start
        eager = _train_step_fn("baseline24", dataset, accel, batch, dirs)
        rows = race({"torch.compile": (compiled, batch), "eager": (eager, batch)}, seconds)
        out.append({"model": "baseline24", "device": str(accel.device), "precision": accel.precision,
                    "batch": batch, "compile": True, "compile_seconds": round(compile_s, 1), "rows": rows,
                    "ratio": _ratio(rows, "torch.compile", "eager")})
    return out


def _bundle(name: str) -> Bundle:
    torch.manual_seed(0)
    spec = get_spec(name)
    return Bundle(model=build_model(name, n_classes=len(LABELS)).eval(),
                  frontend=build_frontend(spec.frontend, spec.frontend_config).eval(), model_name=name,
                  model_config=to_dict(make_config(name, n_classes=len(LABELS))), frontend_name=spec.frontend,
                  frontend_config=dict(spec.frontend_config), labels=LABELS)


def _onnx(name: str, precision: str, folder: Path) -> Path:
    path = folder / f"{name}.{precision}.onnx"
    if not path.is_file():
        noise = np.random.default_rng(0).normal(0, 0.1, (64, SAMPLE_RATE)).astype(np.float32)
        export_model(_bundle(name), path, precision=precision, calibration=noise, n_calibration=64)
    return path


def _old_predict(onnx: Path, dataset: ClipDataset, rows: np.ndarray):
    """The previous predict path: per-item DataLoader (batch 256), torchaudio front end, ORT at batch 256."""
    session = ort_session(onnx)
    frontend = TorchaudioBaseline24(48).eval()
    subset = torch.utils.data.Subset(dataset, rows.tolist())

    def run():
        loader = torch.utils.data.DataLoader(subset, batch_size=256, collate_fn=lambda items: torch.stack(
            [torch.as_tensor(i["audio"]) for i in items]))
        for audio in loader:
            with torch.inference_mode():
                x = frontend(audio)
            session.run(None, {"logmel": np.ascontiguousarray(x.numpy())})

    return run


def bench_inference(dataset: ClipDataset, accels: list[Accel], folder: Path, seconds: float) -> list[dict]:
    out = []
    rows = np.arange(min(len(dataset), 256))
    for name in ("baseline24", "cpmobile"):
        cases = {}
        for accel in accels:
            cases[f"torch {accel.device} {accel.precision}"] = TorchPredictor(_bundle(name), accel)
        for precision in ("fp32", "int8"):
            cases[f"onnx cpu {precision}"] = load_predictor(_onnx(name, precision, folder), "cpu")
        fns = {k: (lambda p=p: predict_dataset(p, dataset, order=rows.tolist(), progress=False), len(rows))
               for k, p in cases.items()}
        if name == "baseline24":
            fns["previous path onnx cpu int8 (batch 256)"] = (_old_predict(_onnx(name, "int8", folder), dataset,
                                                                           rows), len(rows))
        result = race(fns, seconds, min_calls=1)
        out.append({"model": name, "clips": len(rows), "rows": result})
        for k, v in result.items():
            print(f"  inference {name:<11} {k:<40} {v['clips_per_s']:8.1f} clips/s", file=sys.stderr)
    return out


def make_eval_set(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` one-second 32 kHz clips (tones in noise, devices a..c, s1..s6) in the evaluation-set layout."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    devices = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
    names = []
    for i in range(n):
        clip = 0.3 * np.sin(2 * np.pi * rng.uniform(50, 4000) * t) + rng.normal(0, 0.05, SAMPLE_RATE)
        name = f"audio/{i}.wav"
        sf.write(root / name, clip.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        names.append(name)
    (root / "evaluation_setup").mkdir(exist_ok=True)
    pd.DataFrame({"filename": names, "device_id": [devices[i % len(devices)] for i in range(n)]}).to_csv(
        root / "evaluation_setup" / "fold1_test.csv", sep="\t", index=False)
    return root


FRONTEND_ALONE = """import sys, time, torch
from asc.frontend import build_frontend
fe, x = build_frontend("baseline24").eval(), torch.randn(int(sys.argv[1]), 32000)
with torch.inference_mode():
    fe(x); start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 3.0:
        fe(x); calls += 1
print(calls * len(x) / (time.perf_counter() - start))"""


def versus(other: Path, args: list[str], env: dict, batch: int, rounds: int = 2) -> dict:
    """Fresh ``python -m asc`` processes of this checkout and of ``other`` (a checkout of another revision),
    alternating, and each one's front end alone: clips/s, best of ``rounds``."""
    here = Path(__file__).resolve().parents[1]
    out: dict = {}
    for _ in range(rounds):
        for name, src in (("this", here), ("other", other)):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "asc", *args], check=True, env=env, capture_output=True, cwd=src)
            seconds = time.perf_counter() - start
            fe = float(subprocess.run([sys.executable, "-c", FRONTEND_ALONE, str(batch)], check=True, text=True,
                                      capture_output=True, cwd=src).stdout)
            row = out.setdefault(name, {"source": str(src), "fresh_process_s": [], "front_end_clips_per_s": []})
            row["fresh_process_s"].append(round(seconds, 2))
            row["front_end_clips_per_s"].append(round(fe, 1))
    return out


def bench_predict(folder: Path, n: int, cache_dir: Path, batch: int | None, other: Path | None = None) -> dict:
    root = make_eval_set(folder / f"eval{n}", n)
    onnx = _onnx("baseline24", "int8", folder)
    files = pd.read_csv(root / "evaluation_setup" / "fold1_test.csv", sep="\t")["filename"].tolist()
    start = time.perf_counter()
    cache = load_cache(root, files, SAMPLE_RATE, cache_dir, progress=False)
    cache_s = time.perf_counter() - start
    args = ["predict", str(onnx), "--eval-set", str(root), "--out", str(folder / "out.csv"), "--device", "cpu",
            "--quiet"] + (["--batch-size", str(batch)] if batch else [])
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            assert asc_main(args) == 0
        runs.append(time.perf_counter() - start)
    env = {**os.environ, "ASC_CACHE_DIR": str(cache_dir)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "asc", *args], check=True, env=env, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])
    process_s = time.perf_counter() - start
    side = versus(other, args, env, batch or 8) if other else None
    # stages alone and the previous path, side by side on a subset
    dataset = ClipDataset(pd.DataFrame({"filename": files}), cache, LABELS, [])
    predictor = load_predictor(onnx, "cpu")
    b = batch or predictor.accel.batch_size()
    audio = dataset.batch(np.arange(b))["audio"]
    logmel = predictor.frontend(audio)
    old_fe = TorchaudioBaseline24(48).eval()
    session = predictor.session
    audio256, rows = dataset.batch(np.arange(256))["audio"], np.arange(min(n, 2048))
    with torch.inference_mode():
        stages = race({f"front end (asc, batch {b})": (lambda: predictor.frontend(audio), b),
                       "front end (previous, batch 256)": (lambda: old_fe(audio256), 256),
                       f"network (ORT INT8, batch {b})": (lambda: session.run(None, {"logmel": logmel.numpy()}), b),
                       f"asc prediction path, {len(rows)} clips": (
                           lambda: predict_dataset(predictor, dataset, b, rows.tolist(), progress=False), len(rows)),
                       f"previous path, {len(rows)} clips": (_old_predict(onnx, dataset, rows), len(rows))},
                      3.0, min_calls=1)
    best = min(runs)
    return {"clips": n, "model": "baseline24 INT8 ONNX (random weights)", "cache_build_s": round(cache_s, 1),
            "in_process_s": [round(r, 2) for r in runs], "in_process_clips_per_s": round(n / best, 1),
            "fresh_process_s": round(process_s, 2), "fresh_process_clips_per_s": round(n / process_s, 1),
            "target_clips_per_s": 1500, "stages": stages,
            "path_ratio": round(stages[f"asc prediction path, {len(rows)} clips"]["clips_per_s"]
                                / stages[f"previous path, {len(rows)} clips"]["clips_per_s"], 2),
            **({"versus_other_checkout": {k: {**v, "fresh_process_clips_per_s": round(n / min(v["fresh_process_s"]), 1)}
                                          for k, v in side.items()}} if side else {})}


# ---------------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=None, help="devices (default: cpu and every CUDA GPU)")
    parser.add_argument("--dirs", type=Path, help="impulse responses for DIR (default: 50 synthetic ones)")
    parser.add_argument("--batch", type=int, default=None, help="training / loader batch (default 32 CPU, 256 GPU)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case and race (default 3)")
    parser.add_argument("--predict-clips", type=int, default=10000, help="evaluation-set size (0: skip)")
    parser.add_argument("--predict-batch", type=int, help="batch of `asc predict` (default: the device's)")
    parser.add_argument("--versus", type=Path, help="a checkout of another revision: its `asc predict` and front end "
                        "measured as fresh processes alternating with this checkout's")
    parser.add_argument("--models", nargs="+", default=list(TRAIN_MODELS), help="models for training throughput")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes: 1 s per case, 1,000 predicted clips")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "device_throughput.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.predict_clips = 1.0, min(args.predict_clips, 1000)
    names = args.devices or ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    devices = [resolve(d, "off") for d in names]
    precisions = []  # every device in fp32 and its mixed precision (bf16 requested explicitly on the CPU)
    for accel in devices:
        precisions += [accel, resolve(accel.device, "bf16")]
        if accel.cuda:
            precisions.append(resolve(accel.device, "fp16"))
    load_before = os.getloadavg()
    result = {"machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
              "seconds_per_case": args.seconds}
    with tempfile.TemporaryDirectory(prefix="asc-bench-") as tmp:
        tmp = Path(tmp)
        cache_dir = tmp / "cache"
        synth = make_synthetic_dataset(tmp / "synth", SynthConfig.preset("tiny"), progress=False)
        layout = open_dataset(synth.dev)
        table = layout.split("100")
        cache = load_cache(layout.root, table["filename"].tolist(), SAMPLE_RATE, cache_dir, progress=False)
        dataset = ClipDataset(table, cache, list(layout.labels), list(layout.devices), list(layout.cities))
        dirs = args.dirs or synthetic_irs(tmp / "irs")
        for accel in devices:
            batch = args.batch or (256 if accel.cuda else 32)
            print(f"[{accel.device}] DIR and loader, batch {batch}", file=sys.stderr)
            result.setdefault("dir", []).append(bench_dir(dataset, dirs, accel, batch, args.seconds))
            result.setdefault("loader", []).append(bench_loader(dataset, dirs, accel, batch, args.seconds))
        print("training steps", file=sys.stderr)
        result["train"] = bench_train(dataset, dirs, precisions, args.batch or 16, args.seconds, tuple(args.models),
                                      not args.no_compile)
        print("inference", file=sys.stderr)
        result["inference"] = bench_inference(dataset, precisions, tmp, args.seconds)
        if args.predict_clips:
            print(f"asc predict, {args.predict_clips} clips", file=sys.stderr)
            result["predict"] = bench_predict(tmp, args.predict_clips, cache_dir, args.predict_batch,
                                              args.versus)
    result["load_average_before"], result["load_average_after"] = load_before, os.getloadavg()
    _print(result)
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


def _print(r: dict) -> None:
    for d in r.get("dir", []):
        rows = d["rows"]
        print(f"DIR on {d['device']} (batch {d['batch']}, {d['n_irs']} responses): batched "
              f"{rows['batched on the batch']['clips_per_s']:,.0f} vs per clip "
              f"{rows['per clip (fftconvolve)']['clips_per_s']:,.0f} clips/s = {d['ratio']}x (target >= 3x)")
    for d in r.get("loader", []):
        for key, v in d.items():
            if isinstance(v, dict) and "ratio" in v:
                print(f"loader on {d['device']}, {key}: asc {v['rows']['asc batch pipeline']['clips_per_s']:,.0f} "
                      f"vs per-clip {v['rows']['per-clip pipeline']['clips_per_s']:,.0f} clips/s = {v['ratio']}x")
    for row in r.get("train", []):
        if "skipped" in row:
            print(f"train {row['model']} {row['device']} {row['precision']}: skipped ({row['skipped']})")
            continue
        text = ", ".join(f"{k} {v['clips_per_s']:,.1f}" for k, v in row["rows"].items())
        extra = f" ({row['ratio']}x)" if "ratio" in row else ""
        extra += f", compile {row['compile_seconds']} s" if row.get("compile") else ""
        print(f"train {row['model']} {row['device']} {row['precision']} batch {row['batch']}: {text} clips/s{extra}")
    for row in r.get("inference", []):
        for k, v in row["rows"].items():
            print(f"inference {row['model']} {k}: {v['clips_per_s']:,.0f} clips/s")
    p = r.get("predict")
    if p:
        print(f"asc predict {p['clips']:,} clips from the cache: {p['in_process_clips_per_s']:,.0f} clips/s in process "
              f"({min(p['in_process_s'])} s), {p['fresh_process_clips_per_s']:,.0f} clips/s as a fresh process "
              f"({p['fresh_process_s']} s; target {p['target_clips_per_s']:,}); cache build {p['cache_build_s']} s")
        for k, v in p["stages"].items():
            print(f"  {k}: {v['clips_per_s']:,.0f} clips/s")
        print(f"  prediction path vs previous path: {p['path_ratio']}x")
        for k, v in p.get("versus_other_checkout", {}).items():
            print(f"  fresh process, {k} checkout ({v['source']}): {v['fresh_process_clips_per_s']:,.0f} clips/s "
                  f"(runs {v['fresh_process_s']} s); its front end alone {v['front_end_clips_per_s']} clips/s")
    print(f"load average {r['load_average_before'][0]:.1f} before, {r['load_average_after'][0]:.1f} after "
          f"({r['machine']['cpus']} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
