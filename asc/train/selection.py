"""What a run trains and validates on, and how its model is selected (never on the dev-test split).

``training_tables(layout, cfg)``: the training split's clips (of ``train_devices``), less a validation set carved
from them when ``validation.fraction`` > 0 (whole recording locations, :func:`asc.data.splits.carve_validation`).
:func:`selection_record` is what every model bundle stores about how it was chosen; ``eval/test.json`` repeats it.
"""

from __future__ import annotations

from typing import Any, Sequence

from asc.data.splits import carve_validation
from asc.errors import ConfigError
from asc.train.config import TrainConfig

VALIDATION_FILE = "validation.csv"  # the held-out files, in the run folder


def check_validation(cfg: TrainConfig) -> None:
    v = cfg.validation
    if not 0.0 <= v.fraction < 1.0:
        raise ConfigError(f"validation.fraction: expected a share of the training split in [0, 1), got {v.fraction}")
    if v.fraction == 0 and (v.select == "best" or v.patience):
        raise ConfigError("validation.select = \"best\" and validation.patience need a validation set carved from the "
                          "training split: set validation.fraction (e.g. --val-split 0.2); the dev-test split is "
                          "never used to select a model")


def only_devices(table, devices: Sequence[str], setting: str, where: str):
    """Rows of ``devices`` (all rows when empty); ``setting`` and ``where`` name them in errors."""
    if not devices:
        return table
    unknown = sorted(set(devices) - set(table["device"]))
    if unknown:
        raise ConfigError(f"{setting}: no clips of device(s) {', '.join(unknown)} in {where} "
                          f"(devices there: {', '.join(sorted(set(table['device'])))})")
    return table[table["device"].isin(list(devices))].reset_index(drop=True)


def training_tables(layout, cfg: TrainConfig):
    """(training rows, validation rows or None) of ``cfg``."""
    table = only_devices(layout.split(cfg.split), cfg.train_devices, "train_devices", f"split {cfg.split}")
    if cfg.validation.fraction == 0:
        return table, None
    train, val = carve_validation(table, cfg.validation.fraction, cfg.validation.seed)
    return train, only_devices(val, cfg.val_devices, "val_devices", "the validation set")


def selection_record(cfg: TrainConfig, which: str, epoch: int, best_metric: float | None = None) -> dict[str, Any]:
    """How the bundle ``which`` ("last" or "best", at ``epoch``) was chosen."""
    v = cfg.validation
    if which == "best":
        out = {"checkpoint": "best", "epoch": epoch, "selected_on": "validation macro accuracy",
               "validation_macro_accuracy": best_metric}
    else:
        out = {"checkpoint": "last", "epoch": epoch, "selected_on": "last epoch"}
    if v.fraction > 0:
        out["validation"] = {"fraction": v.fraction, "seed": v.seed, "files": VALIDATION_FILE}
    return out


def validations_since(history: list[dict[str, Any]], epoch: int) -> int:
    """Validations recorded after ``epoch`` (early stopping counts them)."""
    return sum(1 for r in history if "val_macro_accuracy" in r and r["epoch"] > epoch)
