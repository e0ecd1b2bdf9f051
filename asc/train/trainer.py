"""The one training loop behind every training command (students, teachers, distillation, device fine-tuning).

``fit(cfg, run_dir)`` trains ``cfg.model`` on ``cfg.split``; the run folder gets ``config.toml`` (fully resolved),
``metrics.jsonl`` (one JSON line per epoch), ``checkpoints/last.pt`` (every epoch, with the whole training state),
``learning_curve.png`` and finally ``eval/test.json`` from :func:`asc.evaluate.evaluate` (the layout is
:class:`asc.runs.RunDir`'s; rank 0 holds the run folder's lock while it trains).

Model selection never looks at the dev-test split (:mod:`asc.train.selection`): the run's model is its last epoch,
or, with a validation set carved from the training split (``validation.fraction``, files in ``validation.csv``) and
``validation.select = "best"``, the epoch with the best validation macro accuracy (``checkpoints/best.pt``). Every
bundle records how it was selected (``selection``) and ``eval/test.json`` repeats it. The dev-test split is read
once, after training, for the final report. Distillation uses stored teacher logits or teachers run online on the
student's augmented batch (:mod:`asc.train.teaching`).

Data and augmentation: the loader only slices the memory-mapped audio cache; :class:`asc.augment.TrainAugment` runs
DIR, time roll, band jitter, masks, Freq-MixStyle and mixup on the batch, on the training device, and the network runs
under the device's autocast (``autocast``; a grad scaler for fp16), optionally ``torch.compile``-d (``compile``).

Reproducibility and resume: the data order is a pure function of (seed, epoch)
(:class:`asc.train.distributed.EpochSampler`), and ``last.pt`` holds model, optimiser, scheduler, grad-scaler and
every process's RNG states (the augmentation generator among them) at the end of an epoch. ``fit(..., resume=True)``
continues from there (an epoch interrupted midway is redone from its start), so the result equals the uninterrupted
run's.

Multi-process training (``torchrun --nproc_per_node N``, i.e. WORLD_SIZE > 1): one process per device, gloo on CPU
and nccl on CUDA, ``batch_size`` is the global batch, each process sees its shard of every epoch, rank 0 writes
the run folder; validation gathers predictions with their clip indices and drops the padding duplicates.

Extension points: ``callbacks`` (objects with any of ``on_train_start``, ``on_epoch_start``, ``on_step_end``,
``on_epoch_end``, each called with the :class:`TrainerState`) and ``model=`` (a prepared network, e.g. for
quantization-aware training) or ``cfg.init_from`` (start from a trained bundle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from asc.accel import Accel, resolve
from asc.augment import TrainAugment, mix, resolve_augment
from asc.config import to_dict
from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset, clip_loader
from asc.data.validate import open_dataset
from asc.errors import ConfigError
from asc.evaluate import evaluate
from asc.fileio import check_writable_folder, write_json, write_text
from asc.frontend import MOVED_TO_AUGMENT, build_frontend, frontend_config
from asc.inference import TorchPredictor, predict_dataset
from asc.metrics import compute_metrics
from asc.models.registry import Bundle, bundle_dict, get_spec, load_state_dict_strict, make_config
from asc.plots import plot_confusion, plot_learning_curve
from asc.runs import RunDir, read_bundle, write_bundle
from asc.train.config import TrainConfig, load_train_config
from asc.train.distributed import Dist, EpochSampler, init_distributed, rng_state, seed_everything, set_rng_state
from asc.train.logits import TeacherLogits
from asc.train.losses import ce_loss, kd_loss
from asc.train.schedules import build_schedule
from asc.train.selection import (VALIDATION_FILE, check_validation, selection_record, training_tables,
                                 validations_since)
from asc.train.teaching import OnlineTeachers

# tqdm creates its write lock lazily, importing multiprocessing on the way; a Ctrl-C landing inside that import
# leaves tqdm without a lock, and every later tqdm.write fails. Create it now, before any run can be interrupted.
tqdm.get_lock()

# Keys of TrainConfig that may change between an interrupted run and its resumption.
RUNTIME_KEYS = ("progress", "num_workers", "device", "autocast", "compile", "eval_batch_size", "cache_dir")


@dataclass
class TrainerState:
    """What callbacks see (and may change, e.g. ``stop = True`` ends training after the current epoch)."""

    cfg: TrainConfig
    run_dir: Path
    model: nn.Module  # the bare network (not the DDP wrapper)
    frontend: nn.Module
    frontend_name: str
    labels: list[str]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    steps_per_epoch: int
    accel: Accel  # device and autocast dtype
    epoch: int = 0  # 0-based index of the current epoch
    step: int = 0  # optimiser steps done
    loss: float = float("nan")  # loss of the last step
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = -math.inf
    best_epoch: int = 0
    rank: int = 0
    world_size: int = 1
    stop: bool = False

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)


class Callback:
    """Base class of training callbacks: override any of the hooks."""

    def on_train_start(self, state: TrainerState) -> None: ...

    def on_epoch_start(self, state: TrainerState) -> None: ...

    def on_step_end(self, state: TrainerState) -> None: ...

    def on_epoch_end(self, state: TrainerState) -> None: ...


def _call(callbacks: Sequence[Any], hook: str, state: TrainerState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


# ---------------------------------------------------------------------------------------------------------------
# Configuration resolution


def resolve_config(cfg: TrainConfig, labels: Sequence[str]) -> TrainConfig:
    """Fill in the model's, front end's and augmentation's complete configs (from ``init_from`` when given): what
    will run, as ``config.toml`` records it."""
    if not cfg.data:
        raise ConfigError("data: the dataset root is not set (--data ROOT or data = \"...\" in the config)")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.eval_every < 1:
        raise ConfigError(f"epochs, batch_size and eval_every must be >= 1 "
                          f"(got {cfg.epochs}, {cfg.batch_size}, {cfg.eval_every})")
    check_validation(cfg)
    if cfg.kd.teacher_logits and cfg.kd.teachers:
        raise ConfigError("kd: set either teacher_logits (a stored ensemble) or teachers (online), not both")
    moved = [k for k in MOVED_TO_AUGMENT if k in cfg.frontend]
    if moved:
        raise ConfigError(f"frontend.{moved[0]}: masking and band jitter are augmentation settings now; set "
                          f"augment.{moved[0]} instead")
    model_name, model_cfg, frontend_name, fe_cfg = cfg.model, dict(cfg.model_config), None, dict(cfg.frontend)
    if cfg.init_from:
        _, init = read_bundle(cfg.init_from)
        if cfg.model and cfg.model != init["model_name"]:
            raise ConfigError(f"init_from: {cfg.init_from} holds a {init['model_name']!r} model but model = "
                              f"{cfg.model!r}; drop the model setting or start from a matching bundle")
        model_name = init["model_name"]
        model_cfg = {**init["model_config"], **model_cfg}
        frontend_name = init["frontend_name"]
        fe_cfg = {**init["frontend_config"], **fe_cfg}
    spec = get_spec(model_name)
    full_model = to_dict(make_config(model_name, model_cfg, n_classes=len(labels)))
    frontend_name = frontend_name or spec.frontend
    full_fe = to_dict(frontend_config(frontend_name, {**spec.frontend_config, **fe_cfg}))
    augment = resolve_augment(cfg.augment, frontend_name, spec.augment)
    return dataclasses.replace(cfg, model=model_name, model_config=full_model, frontend=full_fe, augment=augment)


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    """The config as TOML keeps it (None values dropped), without the keys that may change on resume."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        return value

    data = strip(to_dict(cfg))
    for key in RUNTIME_KEYS:
        data.pop(key, None)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Data


def _clip_dataset(layout, table, cfg: TrainConfig, sample_rate: int) -> ClipDataset:
    cache = load_cache(layout.root, table["filename"].tolist(), sample_rate=sample_rate,
                       cache_dir=cfg.cache_dir or None, progress=cfg.progress)
    return ClipDataset(table, cache, list(layout.labels), list(layout.devices), cities=list(layout.cities))


# ---------------------------------------------------------------------------------------------------------------
# The loop


def fit(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, callbacks: Sequence[Any] = (),
        model: nn.Module | None = None) -> dict[str, Any]:
    """Train, validate, checkpoint and finally evaluate; returns the final dev-test metrics (``eval/test.json``).

    ``model``: use this network (e.g. prepared for quantization-aware training) instead of building ``cfg.model``
    from the registry; its state dict is what the checkpoints hold.
    """
    run_dir = Path(run_dir)
    if not cfg.data:
        raise ConfigError("data: the dataset root is not set (--data ROOT or data = \"...\" in the config)")
    check_writable_folder(run_dir, "run folder")
    layout = open_dataset(cfg.data, cfg.labels, train_split=cfg.split, allow_leak=cfg.allow_leak)  # before any write
    ddp = init_distributed(cfg.device)
    try:
        # a new run refuses a folder another process is writing at once; a resumed one waits for it
        with RunDir(run_dir).lock(wait=None if resume else False) if ddp.main else contextlib.nullcontext():
            result = _fit(cfg, layout, run_dir, resume, list(callbacks), model, ddp)
        if ddp.owns_group:
            # the DDP wrapper (in reference cycles) holds the process group: free it while the group and every peer
            # are alive, or its gloo threads are torn down at interpreter exit (std::terminate, exit -6)
            gc.collect()
            ddp.barrier()
        return result
    finally:
        if ddp.owns_group:
            dist.destroy_process_group()


def _fit(cfg: TrainConfig, layout, run_dir: Path, resume: bool, callbacks: list[Any],
         given_model: nn.Module | None, ddp: Dist) -> dict[str, Any]:
    accel = resolve(cfg.device, cfg.autocast, ddp.local_rank)
    device = accel.device
    cfg = resolve_config(dataclasses.replace(cfg, name=cfg.name or run_dir.name), layout.labels)
    run = RunDir(run_dir)
    checkpoint = _check_run_dir(cfg, run, resume)
    if cfg.batch_size % ddp.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {ddp.world_size} processes")

    init = read_bundle(cfg.init_from)[1] if cfg.init_from else None
    frontend_name = init["frontend_name"] if init else get_spec(cfg.model).frontend

    seed_everything(cfg.seed)
    frontend = build_frontend(frontend_name, cfg.frontend).to(device)
    if given_model is not None:
        model = given_model
    else:
        build_cfg = dict(cfg.model_config)
        if init is not None and build_cfg.get("pretrained"):
            build_cfg["pretrained"] = ""  # the bundle's weights replace the pretrained start point
        model = get_spec(cfg.model).build(make_config(cfg.model, build_cfg))
        if init is not None:
            load_state_dict_strict(model, init["state_dict"], f"init_from {cfg.init_from}")
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ddp.enabled else model
    if cfg.compile:
        net = torch.compile(net)

    sample_rate = frontend.sample_rate
    # Distinct augmentation randomness per process, identical across runs.
    augment = TrainAugment(cfg.augment, frontend, list(layout.devices), seed=cfg.seed * 1000 + 1 + ddp.rank)
    train_table, val_table = training_tables(layout, cfg)
    train_ds = _clip_dataset(layout, train_table, cfg, sample_rate)
    val_ds = _clip_dataset(layout, val_table, cfg, sample_rate) if val_table is not None else None
    per_rank_batch = cfg.batch_size // ddp.world_size
    sampler = EpochSampler(len(train_ds), cfg.seed, True, ddp.rank, ddp.world_size)
    loader = clip_loader(train_ds, per_rank_batch, sampler, cfg.num_workers, accel.pin_memory)
    steps_per_epoch = len(loader)

    teacher = None
    if cfg.kd.teacher_logits:
        store = TeacherLogits.load(cfg.kd.teacher_logits)
        store.check_dataset(layout.root, layout.labels, source=cfg.kd.teacher_logits)
        store.check_audio(train_ds.cache, train_ds.filenames, source=cfg.kd.teacher_logits)
        teacher = torch.from_numpy(store.for_files(train_ds.filenames))
    elif cfg.kd.teachers:
        teacher = OnlineTeachers(cfg.kd.teachers, layout.labels, sample_rate, accel, cfg.channels_last)

    optimizer = _optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_schedule(cfg.schedule, steps_per_epoch,
                                                                            cfg.epochs))
    scaler = torch.amp.GradScaler(device.type, enabled=accel.dtype == torch.float16)

    state = TrainerState(cfg=cfg, run_dir=run_dir, model=model, frontend=frontend, frontend_name=frontend_name,
                         labels=list(layout.labels), optimizer=optimizer, scheduler=scheduler, device=device,
                         steps_per_epoch=steps_per_epoch, accel=accel, rank=ddp.rank, world_size=ddp.world_size)
    start_epoch = 0
    seed_everything(cfg.seed * 1000 + 1 + ddp.rank)  # dropout and other randomness of the network
    if checkpoint is not None:
        start_epoch = _restore(checkpoint, state, scaler, augment, ddp, run.last_checkpoint)
    elif ddp.main:
        run.write_config(cfg)
        if val_table is not None:
            write_text(run.path / VALIDATION_FILE, val_table[["filename", "scene_label"]].to_csv(
                sep="\t", index=False, lineterminator="\n"))
    ddp.barrier()

    _log(ddp, f"training {cfg.model} on split {cfg.split} ({len(train_ds)} clips{_devices_note(cfg.train_devices)}"
              f"), {_validation_note(cfg, val_ds)}; {cfg.epochs} epochs x {steps_per_epoch} steps, batch "
              f"{cfg.batch_size}, {ddp.world_size} process(es) on {accel.describe()}{_teacher_note(cfg)}"
              f"{_resume_note(start_epoch, cfg.epochs, state.stop) if checkpoint is not None else ''}")
    _call(callbacks, "on_train_start", state)
    for epoch in range(start_epoch, cfg.epochs):
        if state.stop:
            break
        state.epoch = epoch
        _call(callbacks, "on_epoch_start", state)
        sampler.set_epoch(epoch)
        t0 = time.time()
        train_stats = _train_epoch(state, net, loader, augment, teacher, scaler, ddp, callbacks)
        record: dict[str, Any] = {"epoch": epoch + 1, "step": state.step, **train_stats}
        val = None
        if val_ds is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            val = _validate(state, val_ds, ddp)
            record.update(val_loss=val["log_loss"], val_macro_accuracy=val["macro_accuracy"],
                          val_accuracy=val["accuracy"], val_n=val["n"])
        record["time_s"] = round(time.time() - t0, 3)
        state.history.append(record)
        improved = val is not None and val["macro_accuracy"] > state.best_metric
        if improved:
            state.best_metric, state.best_epoch = val["macro_accuracy"], epoch + 1
        patience = cfg.validation.patience
        if val is not None and patience and validations_since(state.history, state.best_epoch) >= patience:
            state.stop = True
            _log(ddp, f"early stop: no better validation macro accuracy in {patience} validation(s) since epoch "
                      f"{state.best_epoch}")
        _log(ddp, _epoch_line(record, cfg.epochs, improved))
        rngs = ddp.all_gather({**rng_state(), "augment": augment.state_dict()})
        if ddp.main:
            _write_epoch(state, record, val, improved, scaler, rngs, sampler)
        ddp.barrier()
        _call(callbacks, "on_epoch_end", state)

    result = _final_eval(state, ddp) if given_model is None else _final_eval_in_memory(state, layout, ddp)
    sel = result.get("selection") or {}
    _log(ddp, f"{run_dir}: model = epoch {sel.get('epoch', '?')} ({sel.get('selected_on', 'last epoch')}), dev-test "
              f"macro accuracy {100 * result['macro_accuracy']:.2f} % ({run.eval_dir})")
    return result


def _final_eval(state: TrainerState, ddp: Dist) -> dict[str, Any]:
    """``asc.evaluate`` of the run's model on the dev-test split (on rank 0; shared with the other ranks)."""
    cfg, result = state.cfg, None
    if ddp.main:
        result = evaluate(state.run_dir, cfg.data, split="test", out_dir=state.run.eval_dir,
                          batch_size=cfg.eval_batch_size or None, cache_dir=cfg.cache_dir or None,
                          progress=cfg.progress, device=state.accel)
    return ddp.broadcast(result)


def _final_eval_in_memory(state: TrainerState, layout, ddp: Dist) -> dict[str, Any]:
    """For a network given to :func:`fit` (which the registry may not rebuild, e.g. QAT-prepared): the weights of
    the run's model checkpoint scored in memory on the dev-test split, written like :func:`asc.evaluate.evaluate`."""
    cfg = state.cfg
    ckpt = read_bundle(state.run.model_checkpoint())[1]
    state.model.load_state_dict(ckpt["state_dict"])
    test_ds = _clip_dataset(layout, layout.split("test"), cfg, state.frontend.sample_rate)
    metrics = _validate(state, test_ds, ddp)
    result = {"model": str(state.run_dir.resolve()), "model_name": cfg.model,
              "data_root": str(Path(cfg.data).resolve()), "split": "test", "selection": ckpt.get("selection"),
              **metrics}
    if ddp.main:
        json_path, png_path = state.run.eval_paths("test")
        plot_confusion(metrics, png_path, title=f"{cfg.model} on test: macro accuracy "
                                                f"{100 * metrics['macro_accuracy']:.2f} %")
        write_json(json_path, result)
    return result


def _validation_note(cfg: TrainConfig, val_ds) -> str:
    if val_ds is None:
        return "no validation set (the model is the last epoch)"
    v = cfg.validation
    return (f"validating on {len(val_ds)} clips held out from it ({v.fraction:g} of its locations, seed {v.seed}"
            f"{_devices_note(cfg.val_devices)}; model = {'best validation epoch' if v.select == 'best' else 'last epoch'})")


def _teacher_note(cfg: TrainConfig) -> str:
    if cfg.kd.teacher_logits:
        return f", KD from stored logits {cfg.kd.teacher_logits}"
    if cfg.kd.teachers:
        return f", KD from {len(cfg.kd.teachers)} teacher(s) online"
    return ""


def _resume_note(start_epoch: int, epochs: int, stopped: bool) -> str:
    if start_epoch >= epochs or stopped:
        return f"; all {start_epoch} epochs were done already: evaluating only"
    return f", resuming at epoch {start_epoch + 1}"


def _devices_note(devices: Sequence[str]) -> str:
    return f" of device {', '.join(devices)}" if devices else ""


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))


def _check_run_dir(cfg: TrainConfig, run: RunDir, resume: bool) -> dict | None:
    """The checkpoint to resume from (None = fresh start); refuses to overwrite a finished or running run."""
    if not resume:
        if run.last_checkpoint.exists() or run.has_history():
            raise ConfigError(f"{run}: run folder already holds a run; resume it with --resume or choose "
                              f"another --name")
        return None
    if run.has_config():
        saved = run.config_path
        before = _comparable(load_train_config(run.config_path))
        now = _comparable(cfg)
        if before != now:
            diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise ConfigError(f"{saved}: the resumed run's config differs in {', '.join(diff)}; resume with the "
                              f"saved config (asc train --resume --name NAME) or start a new run")
    if not run.last_checkpoint.is_file():
        return None
    return read_bundle(run.last_checkpoint)[1]


def _restore(ckpt: dict, state: TrainerState, scaler, augment: TrainAugment, ddp: Dist, path: Path) -> int:
    load_state_dict_strict(state.model, ckpt["state_dict"], str(path))
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    state.step = int(ckpt["step"])
    state.best_metric = float(ckpt["best_metric"])
    state.best_epoch = int(ckpt["best_epoch"])
    state.stop = bool(ckpt.get("stopped", False))
    epochs_done = int(ckpt["epoch"])
    state.history = [r for r in state.run.read_history() if r["epoch"] <= epochs_done]
    rngs = ckpt["rng"]
    if len(rngs) == ddp.world_size:
        set_rng_state(rngs[ddp.rank])
        if "augment" in rngs[ddp.rank]:
            augment.load_state_dict(rngs[ddp.rank]["augment"])
    else:
        _log(ddp, f"note: {path} was written by {len(rngs)} process(es), now {ddp.world_size}: the augmentation "
                  f"randomness after resuming differs from the uninterrupted run")
    return epochs_done


def _train_epoch(state: TrainerState, net: nn.Module, loader: DataLoader, augment: TrainAugment,
                 teacher: torch.Tensor | OnlineTeachers | None, scaler, ddp: Dist,
                 callbacks: Sequence[Any]) -> dict[str, float]:
    cfg, device, accel = state.cfg, state.device, state.accel
    net.train()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss·n, correct, n, kd part·n
    lr = state.optimizer.param_groups[0]["lr"]
    bar = tqdm(loader, desc=f"epoch {state.epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
               disable=not (cfg.progress and ddp.main) or None, file=sys.stderr)
    for i, batch in enumerate(bar):
        labels = accel.to(batch["label"])
        aug = augment(accel.to(batch["audio"]), batch["device"])
        x = aug.logmel.contiguous(memory_format=torch.channels_last) if cfg.channels_last else aug.logmel
        if isinstance(teacher, OnlineTeachers):
            t_logits = teacher.logits(aug.audio, augment.mixstyle, aug.mixstyle, aug.mixup)
        else:
            t_logits = teacher[batch["index"]].to(device) if teacher is not None else None
            if t_logits is not None and aug.mixup is not None:
                t_logits = mix(t_logits, *aug.mixup)
        targets = mix(F.one_hot(labels, len(state.labels)).float(), *aug.mixup) if aug.mixup is not None else labels
        with accel.autocast():
            logits = net(x)
        logits = logits.float()
        if t_logits is not None:
            loss, parts = kd_loss(logits, targets, t_logits, cfg.kd.lam, cfg.kd.temperature)
        else:
            loss, parts = ce_loss(logits, targets)
        state.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
        lr = state.optimizer.param_groups[0]["lr"]
        scaler.step(state.optimizer)
        scaler.update()
        state.scheduler.step()
        state.step += 1
        n = labels.numel()
        detached = loss.detach()
        sums += torch.stack([detached.double() * n, (logits.detach().argmax(1) == labels).sum().double(),
                             torch.tensor(float(n), dtype=torch.float64, device=device),
                             parts.get("kd_loss", torch.zeros((), device=device)).double() * n])
        state.loss = float(detached)
        if cfg.progress and ddp.main and (i % 5 == 0 or i + 1 == len(loader)):
            bar.set_postfix(loss=f"{sums[0].item() / sums[2].item():.4f}",
                            acc=f"{sums[1].item() / sums[2].item():.3f}", lr=f"{lr:.2e}")
        _call(callbacks, "on_step_end", state)
    bar.close()
    loss_sum, correct, count, kd_sum = ddp.sum(sums.tolist(), device)
    stats = {"train_loss": loss_sum / max(count, 1), "train_accuracy": correct / max(count, 1), "lr": lr}
    if teacher is not None:
        stats["train_kd_loss"] = kd_sum / max(count, 1)
    return stats


def _validate(state: TrainerState, dataset: ClipDataset, ddp: Dist) -> dict[str, Any]:
    """Metrics of the network being trained on ``dataset`` through the prediction path (:mod:`asc.inference`):
    each process predicts its shard, duplicates from padding are dropped."""
    cfg, model = state.cfg, state.model
    if ddp.enabled:  # BatchNorm statistics drift apart per process: evaluate rank 0's (= the checkpoint's)
        for buf in model.buffers():
            dist.broadcast(buf, src=0)
    bundle = Bundle(model=model, frontend=state.frontend, model_name=cfg.model, model_config=cfg.model_config,
                    frontend_name=state.frontend_name, frontend_config=cfg.frontend, labels=state.labels)
    predictor = TorchPredictor(bundle, state.accel, channels_last=cfg.channels_last)
    shard = EpochSampler(len(dataset), shuffle=False, rank=ddp.rank, world_size=ddp.world_size)
    local = (np.asarray(list(shard), dtype=np.int64),
             predict_dataset(predictor, dataset, cfg.eval_batch_size or None, shard, progress=False,
                             num_workers=cfg.num_workers))
    gathered = ddp.all_gather(local)
    idx = np.concatenate([g[0] for g in gathered])
    logits = np.concatenate([g[1] for g in gathered])
    idx, first = np.unique(idx, return_index=True)
    logits = logits[first]
    table = dataset.table.iloc[idx]
    return compute_metrics(logits, table["label"].to_numpy(), table["device"].tolist(), list(dataset.labels))


def _epoch_line(record: dict[str, Any], epochs: int, improved: bool) -> str:
    text = (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_accuracy']:.1f} %, lr {record['lr']:.2e}")
    if "val_macro_accuracy" in record:
        text += (f"; val loss {record['val_loss']:.4f} macro acc {100 * record['val_macro_accuracy']:.2f} %"
                 f"{' (best)' if improved else ''}")
    return text + f" [{record['time_s']:.1f} s]"


def _log(ddp: Dist, message: str) -> None:
    if ddp.main:
        tqdm.write(message, file=sys.stderr)


def _bundle(state: TrainerState, **extra: Any) -> dict[str, Any]:
    cfg = state.cfg
    return bundle_dict(state.model, cfg.model, cfg.model_config, state.labels, state.frontend_name, cfg.frontend,
                       train_config=to_dict(cfg), **extra)


def _write_epoch(state: TrainerState, record: dict[str, Any], val: dict[str, Any] | None, improved: bool,
                 scaler, rngs: list[dict[str, Any]], sampler: EpochSampler) -> None:
    run = state.run
    run.write_history(state.history)
    summary = {"epoch": record["epoch"], "step": state.step, "val_metrics": val}
    cfg = state.cfg
    if improved and cfg.validation.select == "best":
        write_bundle(_bundle(state, **summary, selection=selection_record(cfg, "best", state.best_epoch,
                                                                          state.best_metric)),
                     run.best_checkpoint)
    write_bundle(_bundle(state, **summary, selection=selection_record(cfg, "last", record["epoch"]),
                         optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
                         scaler=scaler.state_dict(), rng=rngs, sampler=sampler.state_dict(),
                         best_metric=state.best_metric, best_epoch=state.best_epoch, stopped=state.stop),
                 run.last_checkpoint)
    plot_learning_curve(state.history, run.learning_curve_path, title=run.name)
