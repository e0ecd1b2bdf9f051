"""The typed configuration of a training run (one TOML file; dotted overrides such as ``optim.lr=1e-3``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asc.augment import AugmentConfig
from asc.config import apply_overrides, bounded, from_dict, merge, read_toml, to_dict
from asc.frontend import MOVED_TO_AUGMENT


@dataclass
class OptimizerConfig:
    name: Literal["adam", "adamw"] = "adamw"
    lr: float = bounded(5e-3, gt=0)
    weight_decay: float = bounded(1e-4, ge=0)
    betas: tuple[float, float] = bounded((0.9, 0.999), ge=0, lt=1)


@dataclass
class ScheduleConfig:
    """``cosine`` (per step: linear warm-up, cosine to ``min_factor``), ``cpjku`` (per epoch: exponential
    warm-up, flat until ``rampdown_start``, linear to ``last_factor`` over ``rampdown_epochs``) or ``constant``."""

    name: Literal["cosine", "cpjku", "constant"] = "cosine"
    warmup_steps: int = bounded(2000, ge=0)
    min_factor: float = bounded(0.0, ge=0, le=1)
    warmup_epochs: int = bounded(14, ge=0)
    rampdown_start: int = bounded(50, ge=0)
    rampdown_epochs: int = bounded(84, ge=0)
    last_factor: float = bounded(0.005, ge=0, le=1)


@dataclass
class KDConfig:
    """Knowledge distillation; no teacher = plain CE.

    Two ways to teach (at most one per run): ``teacher_logits``, a store of logits computed once on un-augmented
    clips (``asc teachers ensemble``), or ``teachers``, teacher runs (or bundles) that run *online* on the very
    batch the student sees (same DIR, roll, Freq-MixStyle draw and mixup: consistent teaching / function matching,
    Beyer et al. 2022), their logits averaged."""

    teacher_logits: str = ""
    teachers: list[str] = field(default_factory=list)
    lam: float = bounded(0.02, ge=0, le=1)  # weight of the label loss; 1 - lam weighs T² · KL
    temperature: float = bounded(2.0, gt=0)


@dataclass
class ValidationConfig:
    """Model selection on data that is not the test split.

    ``fraction`` > 0 holds out that share of the training split's recording locations (whole locations, stratified
    by class, seeded by ``seed``) as a validation set; the run trains on the rest and records the held-out files in
    ``RUN/validation.csv``. ``select = "best"`` keeps the epoch with the best validation macro accuracy as the run's
    model (``checkpoints/best.pt``); ``patience`` > 0 stops after that many validations without improvement.
    Without validation the run's model is its last epoch (the DCASE baseline protocol). The dev-test split is only
    ever read for the final report."""

    fraction: float = bounded(0.0, ge=0, lt=1)
    seed: int = 0
    select: Literal["last", "best"] = "last"
    patience: int = bounded(0, ge=0)


@dataclass
class TrainConfig:
    """Everything that defines a training run; written fully resolved to ``RUN/config.toml``."""

    name: str = ""
    recipe: str = ""  # the recipe the run started from: packaged name or file path (asc.train.recipes)
    recipe_sha256: str = ""  # sha256 of that recipe file's content
    data: str = ""  # dataset root in the TAU layout
    split: str = "25"  # training split (5, 10, 25, 50, 100)
    allow_leak: bool = False  # train even if the split shares recording locations with the test split
    labels: list[str] = field(default_factory=list)  # the declared class list (empty: official TAU scenes or meta.csv)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    train_devices: list[str] = field(default_factory=list)  # restrict training clips to these devices (empty = all)
    val_devices: list[str] = field(default_factory=list)  # restrict validation clips to these devices (empty = all)
    cache_dir: str = ""  # audio cache folder (empty = $ASC_CACHE_DIR or ~/.cache/asc)
    model: str = "baseline24"
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the model's default config
    frontend: dict[str, Any] = field(default_factory=dict)  # overrides of the model's front-end config
    init_from: str = ""  # start from this model bundle / run folder (its model, config and weights)
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    epochs: int = bounded(150, ge=1)
    batch_size: int = bounded(256, ge=1)  # global batch (split over DDP processes)
    eval_batch_size: int = bounded(0, ge=0)  # clips per validation batch; 0 = the device's default
    num_workers: int = bounded(0, ge=0)  # loader processes (a loader only slices the memory-mapped cache)
    seed: int = 0
    grad_clip: float = bounded(0.0, ge=0)  # max gradient norm; 0 = off
    channels_last: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    eval_every: int = bounded(1, ge=1)  # validate every N epochs (and after the last) when there is a validation set
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ... (asc.accel)
    autocast: str = "auto"  # auto (bf16 on a GPU that supports it, else fp16; off on the CPU), off, bf16, fp16
    compile: bool = False  # torch.compile the network (opt-in: benchmarks/device_throughput.py measures it)
    progress: bool = True  # tqdm progress bars


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A config written before masking and band jitter moved to ``augment`` and ``amp`` became ``autocast``, in
    today's keys (run folders of older versions resume and report as they ran)."""
    data = dict(data)
    frontend = dict(data.get("frontend") or {})
    moved = {k: frontend.pop(k) for k in MOVED_TO_AUGMENT if k in frontend}
    if moved:
        data["frontend"] = frontend
        data["augment"] = {**moved, **(data.get("augment") or {})}
    if "amp" in data:
        data.setdefault("autocast", "fp16" if data.pop("amp") else "off")
    return data


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      base: TrainConfig | None = None) -> TrainConfig:
    """Defaults (or ``base``) <- TOML file (:func:`migrate`-d) <- dotted overrides."""
    data = to_dict(base if base is not None else TrainConfig())
    if path is not None:
        data = merge(data, migrate(read_toml(path)))
    return from_dict(TrainConfig, apply_overrides(data, overrides))
