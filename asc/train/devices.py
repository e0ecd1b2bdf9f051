"""DCASE 2025 device-specific fine-tuning: one copy of a general model per training device.

``finetune_devices(RUN)`` fine-tunes the run's model on each device's training clips (recipe
``device_finetune``: 50 epochs, AdamW lr 5e-4, 200 warm-up steps, no Freq-MixStyle), each as a normal run under
``OUT/devices/<device>/`` (its last epoch is kept, as in the DCASE 2025 baseline, unless the overrides ask for a
validation set), then writes a *multi-device bundle* ``OUT/checkpoints/last.pt``: the general model's bundle plus
``device_state_dicts`` {device: state dict}. :class:`asc.inference.TorchPredictor` routes each clip by its device id;
unknown devices use the general model. ``OUT/eval/test.json`` scores it on the dev-test split, ``OUT/finetune.json``
compares general and specific model per device.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from asc.config import to_dict
from asc.data.layout import natural_key
from asc.data.validate import open_dataset
from asc.errors import ConfigError
from asc.evaluate import evaluate
from asc.fileio import write_json
from asc.models.registry import bundle_dict, load_bundle
from asc.runs import RunDir, write_bundle
from asc.train.config import TrainConfig, load_train_config
from asc.train.recipes import build_config
from asc.train.trainer import fit

RECIPE = "device_finetune"


def finetune_devices(run: str | Path, out_dir: str | Path | None = None, epochs: int | None = None,
                     devices: Sequence[str] | None = None, overrides: Sequence[str] | None = None,
                     resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the general model of ``run`` per training device; returns the summary written to
    ``OUT/finetune.json`` (``OUT`` defaults to ``<run>-devices`` beside the run)."""
    run = RunDir(run)
    if not run.has_config():
        raise ConfigError(f"{run}: not a training run folder (no config.toml); pass runs/<name> of `asc train`")
    general_cfg = load_train_config(run.config_path)
    general_ckpt = run.model_checkpoint()
    out = RunDir(out_dir if out_dir is not None else run.path.parent / f"{run.name}-devices")
    with out.lock():
        return _finetune(run, general_cfg, general_ckpt, out, epochs, devices, overrides, resume, progress)


def _finetune(run: RunDir, general_cfg: TrainConfig, general_ckpt: Path, out: RunDir, epochs: int | None,
              devices: Sequence[str] | None, overrides: Sequence[str] | None, resume: bool,
              progress: bool) -> dict[str, Any]:
    if out.last_checkpoint.exists() and not resume:
        raise ConfigError(f"{out}: already holds a device fine-tuning result; pass --resume to redo missing "
                          f"devices or choose another --out")
    layout = open_dataset(general_cfg.data)
    train_devices = sorted(set(layout.split(general_cfg.split)["device"]), key=natural_key)
    devices = list(devices) if devices else train_devices
    unknown = [d for d in devices if d not in train_devices]
    if unknown:
        raise ConfigError(f"devices: {', '.join(unknown)} have no clips in split {general_cfg.split} "
                          f"(devices there: {', '.join(train_devices)})")

    base = dataclasses.replace(general_cfg, kd=dataclasses.replace(general_cfg.kd, teacher_logits=""),
                               progress=progress)
    state_dicts: dict[str, Any] = {}
    device_runs: dict[str, str] = {}
    for device in devices:
        dev_run = out.device_run(device)
        cfg = build_config(RECIPE, base=base, overrides=list(overrides or []), name=f"{out.name}-{device}",
                           init_from=str(general_ckpt), train_devices=[device], val_devices=[device],
                           epochs=epochs, validation={"fraction": 0.0, "select": "last", "patience": 0})
        if not (resume and dev_run.eval_paths("test")[0].is_file()):
            fit(cfg, dev_run.path, resume=resume)
        state_dicts[device] = load_bundle(dev_run.path).model.state_dict()
        device_runs[device] = str(dev_run)

    general = load_bundle(general_ckpt)
    write_bundle(bundle_dict(general.model, general.model_name, general.model_config, general.labels,
                             general.frontend_name, general.frontend_config, device_state_dicts=state_dicts,
                             device_runs=device_runs, general_run=str(run), train_config=to_dict(general_cfg),
                             selection={"checkpoint": "last", "selected_on": "last epoch of each device's fine-tuning",
                                        "general": general.extra.get("selection")}),
                 out.last_checkpoint)
    out.write_config(base)
    specific = evaluate(out.path, general_cfg.data, split="test", out_dir=out.eval_dir,
                        batch_size=cfg.eval_batch_size or None, cache_dir=general_cfg.cache_dir or None,
                        progress=progress, device=cfg.device, autocast=cfg.autocast)
    general_eval = _general_metrics(run, cfg, progress)
    summary = {
        "general_run": str(run), "devices": devices, "device_runs": device_runs,
        "general": _summary(general_eval), "device_specific": _summary(specific),
        "per_device": {d: {"general": general_eval["per_device"].get(d, {}).get("accuracy"),
                           "specific": specific["per_device"].get(d, {}).get("accuracy"),
                           "n": specific["per_device"].get(d, {}).get("n", 0)}
                       for d in specific["per_device"]},
    }
    write_json(out.summary_path("finetune"), summary)
    return summary


def _general_metrics(run: RunDir, cfg: TrainConfig, progress: bool) -> dict[str, Any]:
    """The general model's dev-test metrics (from its run's eval/, computed if missing)."""
    path, _ = run.eval_paths("test")
    if path.is_file():
        return json.loads(path.read_text())
    return evaluate(run.path, cfg.data, split="test", batch_size=cfg.eval_batch_size or None,
                    cache_dir=cfg.cache_dir or None, progress=progress, device=cfg.device, autocast=cfg.autocast)


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"macro_accuracy": metrics["macro_accuracy"], "accuracy": metrics["accuracy"],
            "log_loss": metrics["log_loss"],
            "per_device_accuracy": {d: m["accuracy"] for d, m in metrics["per_device"].items()},
            "mean_device_accuracy": float(np.mean([m["accuracy"] for m in metrics["per_device"].values()]))}
