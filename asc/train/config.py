"""The typed configuration of a training run (one TOML file; dotted overrides such as ``optim.lr=1e-3``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asc.augment import AugmentConfig
from asc.config import bounded, load_config


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
    eval_batch_size: int = bounded(256, ge=1)
    num_workers: int = bounded(0, ge=0)
    seed: int = 0
    grad_clip: float = bounded(0.0, ge=0)  # max gradient norm; 0 = off
    amp: bool = False  # float16 autocast + grad scaling; CUDA only (ignored on CPU)
    channels_last: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    eval_every: int = bounded(1, ge=1)  # validate every N epochs (and after the last) when there is a validation set
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    progress: bool = True  # tqdm progress bars


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      base: TrainConfig | None = None) -> TrainConfig:
    """Defaults (or ``base``) <- TOML file <- dotted overrides."""
    return load_config(TrainConfig, path, overrides, base=base)
