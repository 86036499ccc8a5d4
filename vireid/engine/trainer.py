"""Training: the paper's schedule in a plain, explicit loop, with checkpoints that resume exactly.

One call, ``train(config, run_dir)``, does the whole run: data, model, losses,
optimizer (two learning rates), warm-up + step schedule, mixed precision,
periodic evaluation with best-checkpoint tracking, and the run folder (resolved
config, JSONL metrics, TensorBoard events, checkpoints). Under ``torchrun`` it
trains with DistributedDataParallel; rank 0 alone writes.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from vireid.atomic import write_text
from vireid.config import ConfigError, ExperimentConfig, TrainConfig, config_to_dict, load_config
from vireid.data.cache import image_cache
from vireid.data.dataset import SplitDataset
from vireid.data.device_augment import BatchAugment
from vireid.data.datasets import PROTOCOLS_OF_DATASET, test_images, training_split
from vireid.data.sampler import CrossModalityBatchSampler
from vireid.data.splits import Split
from vireid.data.transforms import train_transform
from vireid.engine.checkpoint import load_checkpoint, load_model_weights, rng_state, save_checkpoint, set_rng_state
from vireid.engine.extract import extract_features, feature_signature
from vireid.errors import UserError
from vireid.evaluation.feature_file import FeatureSet
from vireid.evaluation.protocols import ProtocolResult, evaluate_protocol, get_protocol
from vireid.losses import ReIDLoss
from vireid.models.network import CrossModalityNet, build_model, parameter_counts
from vireid.progress import track


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Environment:
    """Where this process trains: device, distributed rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_environment(device: str = "auto") -> Environment:
    """The device, and the process group when started by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size > 1:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return Environment(torch.device(device), rank, world_size)
    return Environment(torch.device(device))


def learning_rate_factor(epoch: int, config: TrainConfig) -> float:
    """Linear warm-up lr * (epoch + 1) / warmup_epochs, then x gamma at each milestone."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / config.warmup_epochs
    return config.gamma ** sum(epoch >= milestone for milestone in config.milestones)


def build_optimizer(model: CrossModalityNet, config: TrainConfig) -> torch.optim.Optimizer:
    """Two parameter groups: the backbone at ``backbone_lr``, every new layer at ``lr``."""
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in backbone}
    new_layers = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    groups = [{"params": backbone, "lr": config.backbone_lr}, {"params": new_layers, "lr": config.lr}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    choice = config.amp if config.amp != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


class RunLog:
    """The run folder's logs: metrics.jsonl (one JSON object per line) and TensorBoard events."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if isinstance(value, (int, float)) and name not in ("epoch", "step"):
                self.writer.add_scalar(f"{record['kind']}/{name}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def evaluation_protocol(config: ExperimentConfig) -> str:
    return config.train.eval_protocol or PROTOCOLS_OF_DATASET[config.data.dataset][0]


def extract_test_features(model: CrossModalityNet, config: ExperimentConfig, device: torch.device, progress: bool) -> FeatureSet:
    """Features of every test image of ``config.data``, with the metadata the feature file records."""
    images = test_images(config.data)
    features = extract_features(model, images, config.test, config.data.height, config.data.width, device, config.train.workers, progress)
    metadata = {
        "dataset": config.data.dataset,
        "root": str(Path(config.data.root).resolve()),
        "model": feature_signature(config.model, config.test, config.data.height, config.data.width, features.shape[1]),
    }
    if config.data.dataset == "regdb":
        metadata["trial"] = config.data.trial
    return FeatureSet(features, images, metadata)


def _evaluate_during_training(
    model: CrossModalityNet, config: ExperimentConfig, protocol_name: str, device: torch.device, progress: bool
) -> ProtocolResult:
    """The protocol's first ``train.eval_trials`` trials (RegDB: the run's own trial)."""
    protocol = get_protocol(protocol_name)
    trials = None if protocol.dataset == "regdb" else protocol.trials[: config.train.eval_trials]
    return evaluate_protocol(protocol, [extract_test_features(model, config, device, progress)], trials)


def _summary(result: ProtocolResult) -> dict[str, float]:
    return {f"{result.protocol.name}/{name}": value for name, value in result.mean().items()}


def train(config: ExperimentConfig, run_dir: str | Path, resume: str | Path | None = None, device: str = "auto", progress: bool = True) -> Path:
    """Train ``config`` into ``run_dir``; returns the path of the last checkpoint."""
    environment = setup_environment(device)
    run_dir = Path(run_dir)
    if resume is None and (run_dir / "last.pt").exists():
        raise UserError(f"{run_dir}: already holds a run (last.pt); continue it with --resume {run_dir / 'last.pt'} or choose another --out")
    checkpoint = load_checkpoint(resume) if resume else None
    train_config = config.train
    torch.manual_seed(train_config.seed)
    np.random.seed(train_config.seed)

    split = training_split(config.data)
    num_classes = int(split.labels.max()) + 1
    model = build_model(config.model, num_classes, load_weights=checkpoint is None).to(environment.device)
    channels_last = train_config.channels_last == "always" or (train_config.channels_last == "auto" and environment.device.type == "cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, train_config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: learning_rate_factor(epoch, train_config))
    dtype = autocast_dtype(train_config, environment.device)
    scaler = torch.amp.GradScaler(environment.device.type, enabled=dtype == torch.float16)
    start_epoch, best = 0, {"metric": -1.0, "epoch": -1}
    if checkpoint is not None:
        if checkpoint["num_classes"] != num_classes:
            raise UserError(f"{resume}: trained for {checkpoint['num_classes']} identities, the data have {num_classes}")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, best = checkpoint["epoch"], checkpoint["best"]
        set_rng_state(checkpoint["rng"])
    trained_model = model
    if environment.world_size > 1:
        if train_config.sync_bn:
            trained_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trained_model)
        device_ids = [environment.device.index] if environment.device.type == "cuda" else None
        trained_model = torch.nn.parallel.DistributedDataParallel(trained_model, device_ids=device_ids)

    sampler = CrossModalityBatchSampler(
        split.labels, split.modalities, train_config.identities_per_batch, train_config.instances_per_modality,
        train_config.seed, train_config.steps_per_epoch * environment.world_size, environment.rank, environment.world_size,
    )
    worker_seeds = torch.Generator()  # re-seeded every epoch, so the augmentations of epoch e never depend on history
    if environment.is_main:
        print(_start_line(config, split, model, environment, dtype, len(sampler), run_dir, start_epoch), flush=True)
    progress = progress and environment.is_main
    decoded = image_cache(split, config.data.height, config.data.width, train_config.cache_dir, progress) if train_config.cache_dir else None
    device_augment = None
    if train_config.augment_on == "device":
        if decoded is None or train_config.random_erasing > 0:
            raise ConfigError("train.augment_on=device needs train.cache_dir (decoded images) and train.random_erasing=0")
        transform, device_augment = None, BatchAugment(train_config.padding, worker_seeds)
    else:
        transform = train_transform(config.data.height, config.data.width, train_config.padding)
        if train_config.random_erasing > 0:
            from torchvision import transforms as T

            transform.transforms.append(T.RandomErasing(p=train_config.random_erasing))
    loader = DataLoader(
        SplitDataset(split, transform, decoded),
        batch_sampler=sampler,
        num_workers=train_config.workers,
        generator=worker_seeds,
        pin_memory=environment.device.type == "cuda",
    )
    loss_function = ReIDLoss(config.loss)
    if environment.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    log = RunLog(run_dir, environment.is_main)
    protocol = evaluation_protocol(config)
    step = start_epoch * len(sampler)
    last_path = run_dir / "last.pt"
    try:
        for epoch in range(start_epoch, train_config.epochs):
            sampler.set_epoch(epoch)
            worker_seeds.manual_seed(train_config.seed * 1_000_003 + epoch)
            learning_rate = optimizer.param_groups[1]["lr"]
            trained_model.train()
            sums: dict[str, float] = {}
            started = time.perf_counter()
            batches = track(loader, f"epoch {epoch + 1}/{train_config.epochs}", "batch", progress, leave=False)
            for images, labels, modalities, _ in batches:
                images = images.to(environment.device, non_blocking=True)
                if device_augment is not None:
                    images = device_augment(images)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels, modalities = labels.to(environment.device), modalities.to(environment.device)
                autocast = torch.autocast(environment.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                with autocast:
                    losses = loss_function(trained_model(images, modalities), labels, modalities)
                if not torch.isfinite(losses["total"]):
                    raise TrainingDiverged(
                        f"the loss became {losses['total'].item()} at epoch {epoch + 1}, step {step + 1} "
                        f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())}); "
                        f"the last good checkpoint is {last_path if last_path.exists() else 'none (first epoch)'}"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                if train_config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                values = {name: value.item() for name, value in losses.items()}
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + value
                batches.set_postfix(loss=f"{values['total']:.3f}")
                if step % train_config.log_every == 0:
                    log.write({"kind": "step", "epoch": epoch + 1, "step": step, **values, "lr": learning_rate}, step)
            scheduler.step()
            seconds = time.perf_counter() - started
            record = {
                "kind": "epoch", "epoch": epoch + 1, "step": step,
                **{name: total / len(sampler) for name, total in sums.items()},
                "lr": learning_rate, "seconds": seconds,
                "images_per_second": len(sampler) * environment.world_size * 2 * train_config.identities_per_batch * train_config.instances_per_modality / seconds,
            }
            finished = epoch + 1 == train_config.epochs
            if environment.is_main and ((train_config.eval_every and (epoch + 1) % train_config.eval_every == 0) or finished):
                training_rng = rng_state()  # evaluation must not change what training draws next
                result = _evaluate_during_training(model, config, protocol, environment.device, progress)
                set_rng_state(training_rng)
                record.update(_summary(result))
                metric = result.mean()["mAP"]
                if metric > best["metric"]:
                    best = {"metric": metric, "epoch": epoch + 1, "protocol": protocol, "measure": "mAP (on the test set)"}
                    record["best"] = True
            if environment.is_main:
                log.write(record, step)
                print(_epoch_line(record, protocol), flush=True)
                state = {
                    "config": config_to_dict(config), "num_classes": num_classes, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "epoch": epoch + 1, "step": step, "rng": rng_state(), "metrics": record, "best": best,
                }
                save_checkpoint(last_path, state)
                if record.get("best"):
                    save_checkpoint(run_dir / "best.pt", state)
            if environment.world_size > 1:
                dist.barrier()
        if environment.world_size > 1:
            log.write({"kind": "distributed", "step": step, "parameter_checksums": _parameter_checksums(model)}, step)
    finally:
        log.close()
    return last_path


def _parameter_checksums(model: torch.nn.Module) -> list[float]:
    """Every rank's sum of all parameter values: equal when the ranks are in sync."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return [float(value) for value in gathered]


def _start_line(
    config: ExperimentConfig, split: Split, model: CrossModalityNet, environment: Environment,
    dtype: torch.dtype | None, steps_per_epoch: int, run_dir: Path, start_epoch: int,
) -> str:
    """What is about to happen, in one line: data, model, device, precision, length, run folder."""
    device = str(environment.device) + (f" x {environment.world_size} processes" if environment.world_size > 1 else "")
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]
    resumed = " (resumed)" if start_epoch else ""
    return (
        f"training {config.name} on {split.summary()} ({config.data.dataset} at {config.data.root}); "
        f"{parameter_counts(model)['trainable']:,} trainable parameters; {device}, {precision}; "
        f"epochs {start_epoch + 1} to {config.train.epochs}{resumed}, {steps_per_epoch} steps each; run folder {run_dir}"
    )


def _epoch_line(record: dict, protocol: str) -> str:
    line = (
        f"epoch {record['epoch']:>3}  loss {record.get('total', float('nan')):.4f}  "
        + "  ".join(f"{name} {record[name]:.3f}" for name in ("id", "triplet", "part_id", "part_triplet", "msid", "cmp") if name in record)
        + f"  lr {record['lr']:.2e}  {record['images_per_second']:.0f} img/s"
    )
    if f"{protocol}/rank1" in record:
        line += f"  | {protocol} R1 {100 * record[f'{protocol}/rank1']:.2f} mAP {100 * record[f'{protocol}/mAP']:.2f}"
        line += " (best)" if record.get("best") else ""
    return line


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> tuple[CrossModalityNet, ExperimentConfig, dict]:
    """The trained network, its config (with ``key=value`` overrides, e.g. of the
    test-time feature) and the checkpoint's contents. Weights that do not fit the
    network the config describes are a CheckpointError naming what differs."""
    checkpoint = load_checkpoint(path)
    config = load_config(None, overrides, base=checkpoint["config"])
    model = build_model(config.model, checkpoint["num_classes"], load_weights=False)
    load_model_weights(model, checkpoint["model"], path)
    return model.to(device).eval(), config, checkpoint


__all__ = ["TrainingDiverged", "extract_test_features", "learning_rate_factor", "model_from_checkpoint", "train"]
