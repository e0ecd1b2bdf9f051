"""A run's settings for people: the recipe it started from (recorded in ``config.toml``, else the closest named
one) and what differs from it, and its key training values as short strings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asc.augment import describe as describe_augment
from asc.config import to_dict
from asc.errors import AscError
from asc.frontend import frontend_config
from asc.models.registry import get_spec, make_config
from asc.runs import RunDir
from asc.train.recipes import RECIPES

MISSING = "–"


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals (``–`` when missing)."""
    return MISSING if value is None else f"{100 * value:.2f}"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def recorded_recipe(config: dict[str, Any], run: Path) -> str:
    """The recipe recorded in ``config`` (else the closest named one, marked so) and what differs from it."""
    if RunDir(run).summary_path("finetune").is_file():
        return "device_finetune (one fine-tuned copy per device)"
    flat = _flatten(config)
    recorded = config.get("recipe") in RECIPES
    candidates = {config["recipe"]: RECIPES[config["recipe"]]} if recorded else RECIPES
    best: tuple[int, str, list[str]] | None = None
    for name, preset in candidates.items():
        values = _flatten(preset)
        if "model" in values and values["model"] != config.get("model"):
            continue
        differ = [f"{k}={value_text(flat.get(k, MISSING))}" for k, v in values.items() if flat.get(k) != v]
        if best is None or len(differ) < best[0]:
            best = (len(differ), name, differ)
    if best is None:
        return "custom"
    _, name, differ = best
    name = name if recorded else f"{name} (closest)"
    return name if not differ else f"{name}, changed: {', '.join(differ)}"


def _changes(defaults: dict[str, Any], actual: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    base, now = _flatten(defaults), _flatten(actual)
    diff = [f"{k}={value_text(v)}" for k, v in now.items() if k not in skip and k in base and base[k] != v]
    return ", ".join(diff) if diff else "defaults"


def value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _model_changes(config: dict[str, Any]) -> tuple[str, str]:
    """(model config, front-end config) as differences from the registry's defaults."""
    name = config.get("model", "")
    try:
        spec = get_spec(name)
        model = _changes(to_dict(make_config(name)), config.get("model_config", {}), skip=("n_classes",))
        fe_defaults = to_dict(frontend_config(spec.frontend, spec.frontend_config))
        frontend = f"{spec.frontend} ({_changes(fe_defaults, config.get('frontend', {}))})"
    except AscError:
        return value_text(config.get("model_config", {})), value_text(config.get("frontend", {}))
    return model, frontend


def key_settings(c: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, str]:
    """Key values of a run's ``config.toml`` ``c`` (and its history) as short strings."""
    optim, sched = c.get("optim", {}), c.get("schedule", {})
    aug, kd = c.get("augment", {}), c.get("kd", {})
    model_cfg, frontend = _model_changes(c)
    out = {"model": str(c.get("model", MISSING)), "model config": model_cfg, "front end": frontend}
    only = f" (devices {', '.join(c['train_devices'])})" if c.get("train_devices") else ""
    out["train split"] = f"{c.get('split', MISSING)}{only}"
    out["model selection"] = _selection_text(c.get("validation", {}), c.get("val_devices"))
    done = max((r["epoch"] for r in history), default=None)
    out["epochs"] = f"{c.get('epochs', MISSING)} planned" if done is None else f"{done} of {c.get('epochs', MISSING)}"
    out["batch size"] = str(c.get("batch_size", MISSING))
    if optim:
        out["optimizer"] = f"{optim.get('name')} lr {value_text(optim.get('lr'))}, weight decay " \
                           f"{value_text(optim.get('weight_decay'))}"
    if sched:
        out["schedule"] = _schedule_text(sched)
    if aug:
        out["augmentation"] = describe_augment(aug)
    teachers = kd.get("teacher_logits") or (f"{len(kd['teachers'])} teacher(s) online: "
                                            + ", ".join(kd["teachers"]) if kd.get("teachers") else "")
    if teachers:
        out["distillation"] = f"{teachers}, λ {value_text(kd.get('lam'))}, T {value_text(kd.get('temperature'))}"
    if c.get("init_from"):
        out["init from"] = str(c["init_from"])
    out["seed"] = str(c.get("seed", MISSING))
    val = [r for r in history if r.get("val_macro_accuracy") is not None]
    if val:
        best = max(val, key=lambda r: r["val_macro_accuracy"])
        out["best validation epoch"] = f"{best['epoch']} (macro accuracy {pct(best['val_macro_accuracy'])} % on " \
                                       f"the held-out training locations)"
    seconds = sum(r.get("time_s", 0.0) for r in history)
    if seconds:
        out["training time"] = _duration(seconds)
    return out


def _selection_text(v: dict[str, Any], devices: list[str] | None) -> str:
    if not v.get("fraction"):
        return "last epoch (no validation set)"
    only = f", devices {', '.join(devices)}" if devices else ""
    rule = "best validation epoch" if v.get("select") == "best" else "last epoch"
    return f"{rule}; validation: {value_text(v['fraction'])} of the training locations (seed {v.get('seed', 0)}{only})"


def _schedule_text(s: dict[str, Any]) -> str:
    if s.get("name") == "cosine":
        return f"cosine, {s.get('warmup_steps')} warm-up steps"
    if s.get("name") == "cpjku":
        return (f"cpjku: warm-up {s.get('warmup_epochs')} epochs, ramp-down from epoch {s.get('rampdown_start')} "
                f"over {s.get('rampdown_epochs')} to {value_text(s.get('last_factor'))}")
    return str(s.get("name"))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{int(minutes // 60)} h {int(minutes % 60):02d} min"
