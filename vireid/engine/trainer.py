"""Training, in the shape of torchvision's reference scripts: ``build_run`` sets
everything up, ``train_one_epoch`` runs the epoch's steps (vireid.engine.step.
train_step, the one place a step is written, which the tests and benchmarks call too), and
``evaluate_and_checkpoint`` scores the model now and then and writes the
checkpoints. ``train(config, run_dir)`` strings them together.

The run folder gets the resolved config, JSONL metrics, TensorBoard events and
checkpoints that resume exactly. Under ``torchrun`` the model is wrapped in
DistributedDataParallel and rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from vireid.atomic import write_text
from vireid.config import ConfigError, ExperimentConfig, TrainConfig, changed_keys, config_from_dict, config_to_dict
from vireid.data.cache import image_cache
from vireid.data.dataset import SplitDataset
from vireid.data.device_augment import BatchAugment
from vireid.data.resident import ResidentBatches, resident_on
from vireid.data.sampler import CrossModalityBatchSampler, ViewBatchSampler
from vireid.data.splits import Split
from vireid.data.transforms import has_channel_views, inference_transform, modality_views, training_views
from vireid.dataset_check import require_usable_images
from vireid.datasets import get_dataset
from vireid.engine.batch_norm import recompute_batch_norm_statistics
from vireid.engine.checkpoint import (
    TRAINING_KEYS,
    Checkpoint,
    CheckpointError,
    CheckpointWriter,
    load_checkpoint,
    load_model_weights,
    provenance,
    rng_state,
    set_rng_state,
)
from vireid.engine.distributed import (
    Environment,
    average_gradients_over_ranks,
    barrier,
    parameter_checksums,
    setup_environment,
)
from vireid.engine.extract import HeldTestImages, held_test_images
from vireid.engine.loss_tally import LossTally, TallyReading
from vireid.engine.run_folder import check_run_folder, claimed_run_folder
from vireid.engine.run_log import RunLog
from vireid.engine.selection import (
    SELECTION_MEASURES,
    evaluate_test_trials,
    evaluate_validation,
    evaluation_due,
    evaluation_protocol,
    split_off_validation,
)
from vireid.engine.step import Compilation, ForwardAndLoss, Precision, train_step
from vireid.errors import NonFiniteFeatures, UserError
from vireid.evaluation.protocols import ProtocolResult
from vireid.method import Method, ParameterGroup, get_method, method_of, parameter_counts
from vireid.modality import ModalityLayout
from vireid.progress import track
from vireid.signals import stop_if_terminated


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def learning_rate_factor(epoch: int, config: TrainConfig) -> float:
    """Linear warm-up lr * (epoch + 1) / warmup_epochs, then x gamma at each milestone."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / config.warmup_epochs
    return config.gamma ** sum(epoch >= milestone for milestone in config.milestones)


def fused_update(config: TrainConfig, device: torch.device | str) -> bool:
    """Whether the optimizers update with one fused kernel: ``train.fused_optimizer``, auto on a GPU."""
    return config.fused_optimizer == "always" or (
        config.fused_optimizer == "auto" and torch.device(device).type == "cuda"
    )


def build_optimizers(
    groups: list[ParameterGroup], config: TrainConfig, device: torch.device | str = "cpu"
) -> list[torch.optim.Optimizer]:
    """The optimizers of a method's parameter groups: ``train.optimizer`` over the groups it trains (the
    first optimizer: the schedule's), then plain SGD over those that ask for their own (``own_sgd``);
    fused where fused_update says so for ``device``, the parameters' device."""
    if all(group.own_sgd for group in groups):
        names = ", ".join(group.name for group in groups) or "none"
        raise UserError(
            f"parameter groups ({names}): every one trains on its own SGD (own_sgd); at least one must train with "
            "train.optimizer, whose learning rate the schedule drives"
        )
    scheduled = [
        {"params": group.parameters, "lr": group.lr}
        | ({} if group.weight_decay is None else {"weight_decay": group.weight_decay})
        for group in groups
        if not group.own_sgd
    ]
    fused = {"fused": True} if fused_update(config, device) else {}
    if config.optimizer == "adamw":
        optimizers = [torch.optim.AdamW(scheduled, weight_decay=config.weight_decay, **fused)]
    elif config.optimizer == "adam":
        optimizers = [torch.optim.Adam(scheduled, weight_decay=config.weight_decay, **fused)]
    else:
        optimizers = [
            torch.optim.SGD(
                scheduled, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay, **fused
            )
        ]
    own = [{"params": group.parameters, "lr": group.lr} for group in groups if group.own_sgd]
    return optimizers + ([torch.optim.SGD(own, momentum=0.0, weight_decay=0.0, **fused)] if own else [])


def build_optimizer(
    model: torch.nn.Module, loss: torch.nn.Module, config: ExperimentConfig
) -> list[torch.optim.Optimizer]:
    """The optimizers of ``config``'s method for ``model`` and its ``loss``: build_optimizers of its groups."""
    device = next(model.parameters()).device
    return build_optimizers(method_of(config).parameter_groups(model, loss, config.train), config.train, device)


@dataclass
class Run:
    """Everything a training run holds between its epochs."""

    config: ExperimentConfig
    environment: Environment
    run_dir: Path
    split: Split
    validation: Split | None  # images of the held-out identities (train.select_on=validation-map)
    method: Method
    num_classes: int  # the training identities, the classifiers' size
    model: torch.nn.Module  # the network itself (checkpoints, evaluation)
    trained_model: torch.nn.Module  # what the steps call: the network, or its DDP wrapper
    loss_function: torch.nn.Module  # the method's loss: (output, labels, modalities) -> its terms and total
    forward: ForwardAndLoss  # the trained model and the loss, as the steps call them (compiled or not)
    loss_terms: tuple[str, ...]  # the terms the method declares, in the order epoch lines show them
    optimizers: list[torch.optim.Optimizer]  # the scheduled one first (build_optimizers)
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    precision: Precision
    sampler: ViewBatchSampler  # the identity-balanced batches, each image once per view of its modality
    loader: DataLoader | ResidentBatches  # the training batches
    worker_seeds: torch.Generator  # re-seeded every epoch, so epoch e's augmentations never depend on history
    device_augment: BatchAugment | None
    statistics_batches: CrossModalityBatchSampler  # the batches whose BatchNorm statistics go into checkpoints
    log: RunLog
    start_epoch: int
    best: dict  # {"metric", "epoch", "measure", ...} of the best evaluation so far
    provenance: dict  # what every checkpoint records of where it comes from (vireid.engine.checkpoint.provenance)
    step: int = 0
    pending_evaluation: dict | None = None  # the record of a resumed epoch whose due evaluation never ran
    checkpoints: CheckpointWriter = dataclasses.field(default_factory=CheckpointWriter)  # writes in the background
    held_test_images: HeldTestImages | None = None  # the test set, listed (with train.cache_dir decoded) at first use

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def images_per_step(self) -> int:
        return self.environment.world_size * self.sampler.images_per_batch()


def build_run(config: ExperimentConfig, run_dir: Path, resume: str | Path | None, device: str, progress: bool) -> Run:
    """Data, model, loss, optimizer, schedule and precision of
    ``config`` (restored from ``resume``), and the run folder."""
    environment = setup_environment(device)
    check_run_folder(run_dir, resume)
    checkpoint = load_checkpoint(resume, needs=TRAINING_KEYS) if resume else None
    if checkpoint is not None:
        check_resumed_config(config_from_dict(checkpoint.config, get_method), config, resume)
    train_config = config.train
    torch.manual_seed(train_config.seed)
    np.random.seed(train_config.seed)
    origin = provenance(config) if environment.is_main else {}  # before the reads below: it silences their warnings
    if environment.is_main:  # one rank reads the headers; its error ends the job
        require_usable_images(config.data.dataset, config.data.root, config.data.trial, progress)
    split = get_dataset(config.data.dataset).read_training_split(Path(config.data.root), config.data.trial)
    validation = None
    if train_config.select_on == "validation-map":
        split, validation = split_off_validation(config, split)
    num_classes = int(split.labels.max()) + 1
    method = method_of(config)
    model = method.build_model(config, num_classes, load_weights=checkpoint is None).to(environment.device)
    loss_function = method.build_loss(config, num_classes, model).to(environment.device)
    if environment.distributed:
        average_gradients_over_ranks(loss_function.parameters())
    precision = Precision.of(train_config, environment.device)
    if environment.device.type == "cuda":  # a step's shapes never change: cuDNN's fastest kernels, found once
        torch.backends.cudnn.benchmark = True
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    compilation = Compilation.of(train_config, environment.device)
    optimizers = build_optimizer(model, loss_function, config)  # on the parameters' device
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizers[0], lambda epoch: learning_rate_factor(epoch, train_config)
    )
    scaler = torch.amp.GradScaler(environment.device.type, enabled=precision.dtype == torch.float16)
    identity_batches = CrossModalityBatchSampler(
        split.labels,
        split.modalities,
        train_config.identities_per_batch,
        train_config.instances_per_modality,
        train_config.seed,
        train_config.steps_per_epoch * environment.world_size,
        environment.rank,
        environment.world_size,
        train_config.sampler,
    )
    statistics_batches = CrossModalityBatchSampler(
        split.labels,
        split.modalities,
        train_config.identities_per_batch,
        train_config.instances_per_modality,
        train_config.seed,
        min(train_config.precise_bn_batches, len(identity_batches) * environment.world_size),
    )
    views = {modality: len(names) for modality, names in modality_views(train_config).items()}
    sampler = ViewBatchSampler(identity_batches, split.modalities, views)
    start_epoch, best = 0, {"metric": -1.0, "epoch": -1}
    if checkpoint is not None:
        start_epoch, best = _restore(
            checkpoint, resume, config, num_classes, model, loss_function, optimizers[0], scheduler, scaler
        )
    if environment.is_main:
        resumed = " (resumed)" if start_epoch else ""
        held_out = f" ({validation.num_identities} identities held out to validate)" if validation else ""
        print(
            f"training {config.name} on {split.summary()}{held_out} ({config.data.dataset} at {config.data.root}); "
            f"{parameter_counts(model)['trainable']:,} trainable parameters; {environment.describe()}, "
            f"{precision.describe()}{compilation.describe()}; "
            f"epochs {start_epoch + 1} to {train_config.epochs}{resumed}, "
            f"{len(sampler)} steps each; seed {train_config.seed}; best.pt selected on "
            f"{SELECTION_MEASURES[train_config.select_on]}; run folder {run_dir}",
            flush=True,
        )
    worker_seeds = torch.Generator()
    loader, device_augment = _training_loader(
        config, split, sampler, worker_seeds, environment.device, progress and environment.is_main
    )
    if environment.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    trained_model = _distributed(model, environment, train_config.sync_bn)
    forward = ForwardAndLoss(trained_model, loss_function)
    compilation.apply(forward)
    return Run(
        config=config,
        environment=environment,
        run_dir=run_dir,
        split=split,
        validation=validation,
        method=method,
        num_classes=num_classes,
        model=model,
        trained_model=trained_model,
        loss_function=loss_function,
        forward=forward,
        loss_terms=method.loss_terms(config),
        optimizers=optimizers,
        scheduler=scheduler,
        scaler=scaler,
        precision=precision,
        sampler=sampler,
        loader=loader,
        worker_seeds=worker_seeds,
        device_augment=device_augment,
        statistics_batches=statistics_batches,
        log=RunLog(run_dir, environment.is_main, checkpoint.step if checkpoint else 0),
        start_epoch=start_epoch,
        best=best,
        provenance=origin,
        step=checkpoint.step if checkpoint else 0,
        pending_evaluation=checkpoint.metrics if checkpoint and not checkpoint.evaluated else None,
    )


RESUMABLE_KEYS = (
    "data.root",
    "train.epochs",
    "train.eval_every",
    "train.eval_offset",
    "train.eval_last",
    "train.eval_flip",
    "train.eval_protocol",
    "train.eval_trials",
    "train.workers",
    "train.log_every",
    "train.cache_dir",
    "train.resident",
    "train.precise_bn_batches",
    "train.amp",
    "train.channels_last",
    "train.fused_optimizer",
    "train.compile",
    "train.cuda_graph",
    "test.",
)
"""What ``--set`` may change when a run is resumed (a key, or a section ending in a dot): where the data
are, how long and how often to evaluate, how to compute; never the network, the method, its losses or
the recipe's draws, which the checkpoint's state belongs to."""


def check_resumed_config(saved: ExperimentConfig, config: ExperimentConfig, resume: str | Path) -> None:
    """A ConfigError naming the first key that ``config`` changes of the resumed run's and may not change."""
    for key in changed_keys(saved, config):
        if not any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE_KEYS):
            before = functools.reduce(getattr, key.split("."), saved)  # a section's key, or a top-level one
            raise ConfigError(
                f"{key}: the run of {resume} trained with {before!r}; it cannot change on --resume (only "
                f"{', '.join(name.rstrip('.') + ('.*' if name.endswith('.') else '') for name in RESUMABLE_KEYS)} "
                "can); start a new run with another --out to change it"
            )


def _distributed(model: torch.nn.Module, environment: Environment, sync_bn: bool) -> torch.nn.Module:
    if not environment.distributed:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [environment.device.index] if environment.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping the optimizer's own kernel choice (``fused``): how
    to compute the update is this run's setting (``train.fused_optimizer``), not the saved run's."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kernel in zip(optimizer.param_groups, fused):
        group["fused"] = kernel


def _restore(
    checkpoint: Checkpoint, resume: str | Path, config: ExperimentConfig, num_classes: int, *stateful
) -> tuple[int, dict]:
    """Load the model, loss, optimizer, scheduler and scaler (``stateful``, in that order) and the RNG
    states of ``checkpoint``; returns the epoch to start at and the best evaluation so far."""
    if checkpoint.num_classes != num_classes:
        raise UserError(f"{resume}: trained for {checkpoint.num_classes} identities, the data have {num_classes}")
    model, loss, optimizer, scheduler, scaler = stateful
    load_model_weights(model, checkpoint.model, resume, config)  # names the tensors a changed --set no longer fits
    try:
        loss.load_state_dict(checkpoint.loss)  # empty before version 3, as the built-in methods' losses hold nothing
    except RuntimeError as error:  # a loss whose parameters changed shape or name since the run was saved
        first_line = str(error).splitlines()[-1].strip()
        method = config.model.method
        raise CheckpointError(f"{resume}: its loss state does not fit {method}'s loss ({first_line})") from None
    load_optimizer_state(optimizer, checkpoint.optimizer)
    scheduler.load_state_dict(checkpoint.scheduler)
    scaler.load_state_dict(checkpoint.scaler)
    set_rng_state(checkpoint.rng)
    return checkpoint.epoch, checkpoint.best


def _training_loader(
    config: ExperimentConfig,
    split: Split,
    sampler: ViewBatchSampler,
    worker_seeds: torch.Generator,
    device: torch.device,
    progress: bool,
) -> tuple[DataLoader | ResidentBatches, BatchAugment | None]:
    """The loader of the training split: augmentations per image (and view) in its workers, or on
    the device for whole batches (``train.augment_on=device``, fed by the decoded-image cache,
    which ``train.resident`` may hold on the device itself)."""
    train_config, height, width = config.train, config.data.height, config.data.width
    resize_filter = config.data.resize_filter
    decoded = (
        image_cache(split, height, width, train_config.cache_dir, progress, resize_filter)
        if train_config.cache_dir
        else None
    )
    device_augment = None
    if train_config.augment_on == "device":
        plain = train_config.random_erasing == 0 and train_config.random_grayscale == 0
        if decoded is None or not plain or has_channel_views(train_config):
            raise ConfigError(
                "train.augment_on=device pads, crops and flips only: it needs train.cache_dir (decoded images), "
                "train.random_erasing=0, train.random_grayscale=0 and one plain view per modality "
                "(train.visible_views and train.infrared_views [[]]); the CAJ and DEEN recipes' erasing, "
                "gray images and channel views need train.augment_on=loader"
            )
        transform, device_augment = None, BatchAugment(train_config.padding, worker_seeds)
    else:
        transform = training_views(config)
    if resident_on(train_config, decoded, device):  # after the check above: a device path has its decoded images
        return ResidentBatches(decoded, split, sampler, worker_seeds, device), device_augment
    loader = DataLoader(
        SplitDataset(split, transform, decoded),
        batch_sampler=sampler,
        num_workers=train_config.workers,
        generator=worker_seeds,
        pin_memory=device.type == "cuda",
    )
    return loader, device_augment


def train_one_epoch(run: Run, epoch: int, progress: bool) -> dict:
    """Every step of one epoch; returns the epoch's record (mean loss terms, lr, speed)."""
    train_config, device = run.config.train, run.environment.device
    run.sampler.set_epoch(epoch)
    run.worker_seeds.manual_seed(train_config.seed * 1_000_003 + epoch)
    learning_rate = train_config.lr * learning_rate_factor(epoch, train_config)  # what the schedule makes of train.lr
    run.trained_model.train()
    tally = LossTally((*run.loss_terms, "total"), device)
    started = time.perf_counter()
    waited, asked = 0.0, started  # seconds spent waiting for the loader; when the next batch was asked for
    batches = track(run.loader, f"epoch {epoch + 1}/{train_config.epochs}", "batch", progress, leave=False)
    for images, labels, modalities, _ in batches:
        waited += time.perf_counter() - asked
        images = images.to(device, non_blocking=True)
        if run.device_augment is not None:
            images = run.device_augment(images)
        try:
            losses = train_step(
                run.forward,
                run.optimizers,
                run.scaler,
                images,
                labels.to(device, non_blocking=True),
                ModalityLayout.of(modalities, device),  # read on the host, where the loader gave them
                run.precision,
            )
        except torch._dynamo.exc.Unsupported as error:  # train.compile: the first step compiles
            reason = str(error).strip().splitlines()[0]
            raise UserError(
                f"train.compile: model.method {run.method.name}'s forward pass and loss do not compile into one "
                f"graph ({reason}); train it with train.compile: never"
            ) from None
        if set(losses) != {*run.loss_terms, "total"}:  # the method's declaration is what every record shows
            raise UserError(
                f"model.method {run.method.name}: its loss returned {', '.join(sorted(losses))}; it declares "
                f"{', '.join(run.loss_terms)} (loss_terms) and total"
            )
        run.step += 1
        tally.add(losses, run.step)
        stop_if_terminated()
        if run.step % train_config.log_every == 0:  # the one wait for the device in an interval
            values = _finite_reading(run, tally, epoch).last
            batches.set_postfix(loss=f"{values['total']:.3f}")
            run.log.write(
                {"kind": "step", "epoch": epoch + 1, "step": run.step, **values, "lr": learning_rate}, run.step
            )
        asked = time.perf_counter()
    sums = _finite_reading(run, tally, epoch).sums  # before the epoch's checkpoint is written
    run.scheduler.step()
    seconds = time.perf_counter() - started
    return {
        "kind": "epoch",
        "epoch": epoch + 1,
        "step": run.step,
        **{name: total / len(run.sampler) for name, total in sums.items()},
        "lr": learning_rate,
        "seconds": seconds,
        "images_per_second": len(run.sampler) * run.images_per_step / seconds,
        "data_wait": waited / seconds,  # the share of the epoch spent waiting for batches (loader-bound when high)
    }


def _finite_reading(run: Run, tally: LossTally, epoch: int) -> TallyReading:
    """The tally read; a step whose total was NaN or infinite stops the run, naming it and the last
    good checkpoint (written before that step: the weights it made are never saved)."""
    reading = tally.read()
    if reading.first_non_finite_step is not None:
        run.checkpoints.wait()  # the last good checkpoint is on disk before it is named
        values = reading.first_non_finite
        last = run.last_path if run.last_path.exists() else "none (first epoch)"
        raise TrainingDiverged(
            f"the loss became {values['total']} at epoch {epoch + 1}, step {reading.first_non_finite_step} "
            f"({', '.join(f'{name}={value:.4g}' for name, value in values.items())}); "
            f"the last good checkpoint is {last}"
        )
    return reading


def evaluate_and_checkpoint(run: Run, epoch: int, record: dict, progress: bool) -> None:
    """On rank 0: write last.pt, then score the model when due (vireid.engine.selection.
    evaluation_due), track the best, log the record, print the epoch line, and write
    last.pt again with the scores (and best.pt). The epoch's training is on disk before the
    evaluation runs, so a failing evaluation costs no training."""
    config = run.config
    if not run.environment.is_main:
        return
    due = evaluation_due(config.train, epoch + 1)
    if config.train.precise_bn_batches and run.start_epoch <= epoch:  # a resumed pending evaluation has them
        _recompute_batch_norm_statistics(run, epoch, progress)
    stop_if_terminated()
    state = Checkpoint(
        config=config_to_dict(config),
        num_classes=run.num_classes,
        model=run.model.state_dict(),
        epoch=epoch + 1,
        step=run.step,
        loss=run.loss_function.state_dict(),
        optimizer=run.optimizers[0].state_dict(),  # an own-SGD group's plain SGD keeps no state
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(),
        rng=rng_state(),
        metrics=record,
        best=run.best,
        evaluated=not due,  # False until the due evaluation is in: a resume then runs it first
        provenance=run.provenance,
    )
    run.checkpoints.save(run.last_path, state)
    select_on = config.train.select_on
    scope = "validation" if select_on == "validation-map" else evaluation_protocol(config)
    if due:
        try:
            scores = _scores(run, scope, progress)
        except NonFiniteFeatures as error:  # counted as a failed evaluation, never best; training goes on
            scores = None
            record[f"{scope}/failed"] = str(error)
        set_rng_state(state.rng)  # evaluation must not change what training draws next
        stop_if_terminated()
        if scores is not None:
            record.update({f"{scope}/{name}": float(value) for name, value in scores.items()})
            metric = float(scores["rank1"] if select_on == "test-rank1" else scores["mAP"])
            if select_on != "last" and metric > run.best["metric"]:
                run.best = {
                    "metric": metric,
                    "epoch": epoch + 1,
                    "scope": scope,
                    "measure": SELECTION_MEASURES[select_on],
                }
                record["best"] = True
        state = dataclasses.replace(state, metrics=record, best=run.best, evaluated=True)
        run.checkpoints.save(run.last_path, state)
        if record.get("best"):
            run.checkpoints.save(run.run_dir / "best.pt", dataclasses.replace(state, selected_on=run.best["measure"]))
    run.log.write(record, run.step)
    print(_epoch_line(record, scope, run.loss_terms), flush=True)


def _recompute_batch_norm_statistics(run: Run, epoch: int, progress: bool) -> None:
    """BatchNorm's running averages replaced by the statistics of ``train.precise_bn_batches`` batches of
    unaugmented training images, drawn from the seed and the epoch (a resumed run draws the same)."""
    config, device = run.config, run.environment.device
    run.statistics_batches.set_epoch(epoch)
    loader = DataLoader(
        SplitDataset(run.split, inference_transform(config.data.height, config.data.width, config.data.resize_filter)),
        batch_sampler=run.statistics_batches,
        num_workers=config.train.workers,
        generator=torch.Generator().manual_seed(config.train.seed),  # the global RNG stays as training left it
    )
    batches = (
        (images.to(device), modalities.to(device))
        for images, _, modalities, _ in track(loader, "BatchNorm statistics", "batch", progress, leave=False)
    )
    recompute_batch_norm_statistics(run.model, batches, run.precision.dtype, run.precision.channels_last)


def _scores(run: Run, scope: str, progress: bool) -> dict[str, float]:
    """Rank-1, mAP and mINP of the model on ``scope`` (validation, or a test protocol's first trials)."""
    if run.validation is not None:
        metrics = evaluate_validation(run.model, run.config, run.validation, run.environment.device, progress)
        return {"rank1": metrics.cmc[0], "mAP": metrics.mAP, "mINP": metrics.mINP}
    return _evaluate(run, scope, progress).mean()


def _evaluate(run: Run, protocol_name: str, progress: bool) -> ProtocolResult:
    """evaluate_test_trials of the run's model; the test images listed once for the run, and with
    ``train.cache_dir`` decoded once (on the device with train.resident)."""
    device = run.environment.device
    if run.held_test_images is None:
        where = device if isinstance(run.loader, ResidentBatches) else torch.device("cpu")
        run.held_test_images = held_test_images(run.config, where, progress)
    return evaluate_test_trials(run.model, run.config, protocol_name, device, run.held_test_images, progress)


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    resume: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train ``config`` into ``run_dir`` (holding its lock: one writer at a time); returns the path of
    the last checkpoint."""
    run_dir = Path(run_dir)
    claim = claimed_run_folder(run_dir) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
    with claim:
        return _train(config, run_dir, resume, device, progress)


def _train(config: ExperimentConfig, run_dir: Path, resume: str | Path | None, device: str, progress: bool) -> Path:
    run = build_run(config, run_dir, resume, device, progress)
    progress = progress and run.environment.is_main
    try:
        if run.pending_evaluation is not None:  # the run was stopped while evaluating its last epoch
            evaluate_and_checkpoint(run, run.start_epoch - 1, run.pending_evaluation, progress)
        for epoch in range(run.start_epoch, config.train.epochs):
            record = train_one_epoch(run, epoch, progress)
            evaluate_and_checkpoint(run, epoch, record, progress)
            barrier(run.environment)
        if run.environment.distributed:
            run.log.write(
                {
                    "kind": "distributed",
                    "step": run.step,
                    "parameter_checksums": parameter_checksums(run.model, run.loss_function),
                },
                run.step,
            )
    finally:
        try:
            run.checkpoints.close()  # every checkpoint asked for is on disk when train returns, or fails
        finally:
            run.log.close()
    return run.last_path


def _epoch_line(record: dict, scope: str, loss_terms: tuple[str, ...]) -> str:
    """The epoch's losses (``loss_terms``, in order), lr and speed, and the scores of ``scope`` (a
    protocol, or validation) when evaluated."""
    line = (
        f"epoch {record['epoch']:>3}  loss {record.get('total', float('nan')):.4f}  "
        + "  ".join(f"{name} {record[name]:.3f}" for name in loss_terms if name in record)
        + f"  lr {record['lr']:.2e}  {record['images_per_second']:.0f} img/s"
    )
    if f"{scope}/rank1" in record:
        line += f"  | {scope} R1 {100 * record[f'{scope}/rank1']:.2f} mAP {100 * record[f'{scope}/mAP']:.2f}"
        line += " (best)" if record.get("best") else ""
    elif f"{scope}/failed" in record:
        line += f"  | {scope} evaluation failed, never best: {record[f'{scope}/failed']}"
    return line


__all__ = [
    "RESUMABLE_KEYS",
    "Run",
    "TrainingDiverged",
    "build_optimizer",
    "build_optimizers",
    "fused_update",
    "load_optimizer_state",
    "build_run",
    "check_resumed_config",
    "evaluate_and_checkpoint",
    "learning_rate_factor",
    "train",
    "train_one_epoch",
]
