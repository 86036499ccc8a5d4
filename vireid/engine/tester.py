"""Testing trained checkpoints: every trial of the dataset's protocols, the table, the files."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from vireid.atomic import write_text
from vireid.datasets import DatasetSpec, describe_fingerprint, get_dataset, get_protocol
from vireid.engine.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from vireid.engine.extract import extract_test_features
from vireid.engine.reference_import import reported_line
from vireid.errors import UserError
from vireid.evaluation.by_camera import evaluate_by_camera
from vireid.evaluation.feature_file import FeatureSet, save_features
from vireid.evaluation.protocols import ProtocolResult, evaluate_protocol, results_table
from vireid.evaluation.rerank import RerankSettings
from vireid.evaluation.seeds import SeedResults, seeds_table
from vireid.method import parameter_counts
from vireid.viz.by_camera import draw_camera_table
from vireid.viz.cmc import draw_cmc_curves, protocol_cmc_curves
from vireid.viz.rank_list import draw_rank_list
from vireid.viz.trial_ranks import trial_rank_lists
from vireid.wording import counted


def find_checkpoints(path: str | Path) -> list[Path]:
    """A checkpoint file; a run folder's selected checkpoint (best.pt, else last.pt); a folder's
    checkpoint files (``*.pt``); or the selected checkpoint of every run folder below it (RegDB's
    trial runs, the runs of several seeds, or both)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        if (path / "last.pt").is_file():
            return [selected_checkpoint(path)]
        found = sorted(path.glob("*.pt")) or [
            selected_checkpoint(run) for run in sorted({last.parent for last in path.glob("*/**/last.pt")})
        ]
        if found:
            return found
        raise CheckpointError(f"{path}: expected checkpoints (*.pt, or run folders holding last.pt), found none")
    raise CheckpointError(f"{path}: expected a checkpoint file or a folder of them, but it does not exist")


def selected_checkpoint(run_folder: Path) -> Path:
    """The checkpoint a run's selection rule picked (best.pt), or its last one where it has none."""
    best = run_folder / "best.pt"
    return best if best.is_file() else run_folder / "last.pt"


def selection_label(selections: list[tuple[str, int, int]]) -> str:
    """How the checkpoints were chosen, from each one's (selected on, epoch, epochs of its run):
    e.g. 'test rank-1 (reference habit), epoch 14' or 'last epoch (80 of 80)'."""
    measures = sorted({measure for measure, _, _ in selections})
    epochs = ", ".join(str(epoch) for _, epoch, _ in selections)
    if measures == ["last epoch"]:
        return f"last epoch ({epochs} of {', '.join(map(str, sorted({length for _, _, length in selections})))})"
    return f"{' / '.join(measures)}, epoch{'s' if len(selections) > 1 else ''} {epochs}"


def group_by_seed(checkpoint_paths: list[Path]) -> dict[int, list[Path]]:
    """The checkpoints by the seed of their run (``train.seed``), seeds in order."""
    if len(checkpoint_paths) == 1:
        return {-1: checkpoint_paths}
    groups: dict[int, list[Path]] = {}
    for path in checkpoint_paths:
        seed = load_checkpoint(path, mmap=True).config["train"].get("seed", 0)  # the weights stay on disk
        groups.setdefault(int(seed), []).append(path)
    return dict(sorted(groups.items()))


def score_checkpoints(
    checkpoint_paths: list[Path],
    protocols: list[str] | None = None,
    root: str | None = None,
    trials: list[int] | None = None,
    device: str = "cpu",
    out: Path | None = None,
    progress: bool = True,
    overrides: list[str] | tuple[str, ...] = (),
    force: bool = False,
    by_camera: bool = False,
) -> list[ProtocolResult]:
    """Score checkpoints with every trial of each protocol; write results.md/json,
    the features, the CMC curves (cmc.png) and a rank list per protocol (ranks_<protocol>.png).

    Most datasets (SYSU-MM01, LLCM) take one checkpoint; those with one model
    per trial (RegDB) take one per trial (each checkpoint's config names its
    trial) and average over them. ``overrides``
    (``key=value``) change the checkpoints' configs, e.g. the test-time feature.
    With ``test.rerank`` each protocol is scored twice, plainly and k-reciprocal
    re-ranked; the re-ranked rows say so, and results.json keeps both.
    An ``out`` other than the checkpoints' own folder that holds results already
    is refused unless ``force``. ``by_camera``: each protocol's plain results also by query and
    gallery camera (vireid.evaluation.by_camera), in the results and as by_camera_<protocol>.png.
    """
    loaded, selections, reported = [], [], []
    for path in checkpoint_paths:
        model, config, checkpoint = model_from_checkpoint(path, device, overrides)
        if root is not None:
            config.data.root = root
        loaded.append((path, model, config))
        selections.append((checkpoint.selected_on or "last epoch", checkpoint.epoch, config.train.epochs))
        reported += [line for line in [reported_line(checkpoint)] if line]
    datasets = {config.data.dataset for _, _, config in loaded}
    if len(datasets) != 1:
        raise UserError(
            f"the checkpoints were trained on different datasets ({', '.join(sorted(datasets))}); test them separately"
        )
    dataset = get_dataset(datasets.pop())
    own_trials = [dataset.model_trial(config.data.trial) for _, _, config in loaded]  # None: one model, every trial
    if own_trials[0] is None and len(loaded) > 1:
        raise UserError(
            f"{dataset.name} is tested with ONE checkpoint (its trials are gallery draws), got {len(loaded)}"
        )
    protocols = protocols or [protocol.name for protocol in dataset.protocols if protocol.by_default]
    for name in protocols:
        if get_protocol(name).dataset != dataset.name:
            raise UserError(f"--protocol {name} does not apply to a model trained on {dataset.name}")
    own_folder = _common_folder(checkpoint_paths)
    out = Path(out) if out else own_folder
    sources = ", ".join(str(path) for path in checkpoint_paths)
    _refuse_results_of_others(out, own_folder, sources, force)
    print(_start_line(loaded, own_trials, dataset, protocols, trials, device, out), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    feature_sets, written = [], []
    for (path, model, config), own_trial in zip(loaded, own_trials):
        feature_set = extract_test_features(model, config, device, progress)
        feature_set.metadata["checkpoint"] = str(path)
        suffix = "" if own_trial is None else f"_trial{own_trial}"
        written.append(save_features(out / f"features{suffix}.npz", feature_set))
        feature_sets.append(feature_set)
    rerank = rerank_settings(loaded[0][2].test)
    results = [
        evaluate_protocol(name, feature_sets, trials if own_trials[0] is None else None, device=device, rerank=settings)
        for name in protocols
        for settings in ([None, rerank] if rerank else [None])
    ]
    if by_camera:
        own_trials_given = trials if own_trials[0] is None else None
        results = [
            result
            if result.rerank
            else dataclasses.replace(
                result, by_camera=evaluate_by_camera(result.protocol, feature_sets, own_trials_given, device=device)
            )
            for result in results
        ]
    table = results_table(results)
    by_camera_text = "".join(f"{result.by_camera.markdown()}\n\n" for result in results if result.by_camera)
    reported_text = "".join(f"{line}\n\n" for line in reported)  # an imported checkpoint's own figures
    pictures = write_pictures(results, feature_sets[0], out, loaded[0][2].name)
    pictures += [
        draw_camera_table(result.by_camera, out / f"by_camera_{result.protocol.name}.png")
        for result in results
        if result.by_camera
    ]
    links = "\n".join(f"![{picture.stem}]({picture.name})" for picture in pictures)
    data, selected, seed = feature_sets[0].metadata["data"], selection_label(selections), loaded[0][2].train.seed
    report = (
        f"# Results\n\nCheckpoints: {sources}\n\nSelected on: {selected}\n\nSeed: {seed}\n\n"
        f"Data: {describe_fingerprint(data)}\n\n{table}\n\n{reported_text}{by_camera_text}{links}\n"
    )
    written.append(write_text(out / "results.md", report))
    records = [{**result.to_dict(), "seed": seed, "selected_on": selected} for result in results]
    written.append(write_text(out / "results.json", json.dumps(records, indent=2) + "\n"))
    for path in [*written, *pictures]:
        print(f"wrote {path}")
    return results


def rerank_settings(test_config) -> RerankSettings | None:
    """The re-ranking a test config asks for (``test.rerank`` and its k1, k2, lambda), or None."""
    if not test_config.rerank:
        return None
    return RerankSettings(test_config.rerank_k1, test_config.rerank_k2, test_config.rerank_lambda)


def score_seeds(
    groups: dict[int, list[Path]], out: Path | None = None, force: bool = False, **options
) -> list[SeedResults]:
    """Score the runs of each seed (score_checkpoints with ``options``, into each seed's own
    folder), then write their mean ± std over seeds into ``out`` (default: the folder holding them all)."""
    parent = _common_folder([path for paths in groups.values() for path in paths])
    out = Path(out) if out else parent
    sources = ", ".join(f"seed {seed}: {', '.join(map(str, paths))}" for seed, paths in groups.items())
    _refuse_results_of_others(out, parent, sources, force)
    per_seed = {}
    for seed, paths in groups.items():
        own = _common_folder(paths)
        seed_out = own if own.resolve() != out.resolve() else out / f"seed{seed}"
        per_seed[seed] = score_checkpoints(paths, out=seed_out, force=force, **options)
    seeds = tuple(groups)
    results = [
        SeedResults(seeds, tuple(per_seed[seed][position] for seed in seeds))
        for position in range(len(per_seed[seeds[0]]))
    ]
    data = results[0].results[0].data
    report = f"# Results over seeds {', '.join(map(str, seeds))}\n\nCheckpoints: {sources}\n\n"
    report += f"Data: {describe_fingerprint(data) if data else 'not recorded'}\n\n{seeds_table(results)}\n"
    out.mkdir(parents=True, exist_ok=True)
    for path in (
        write_text(out / "results.md", report),
        write_text(out / "results.json", json.dumps([result.to_dict() for result in results], indent=2) + "\n"),
    ):
        print(f"wrote {path}")
    return results


def _common_folder(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([path.parent for path in paths]))


def _refuse_results_of_others(out: Path, own_folder: Path, sources: str, force: bool) -> None:
    """A folder other than the checkpoints' own that holds other results is replaced only with ``force``."""
    if out.resolve() != own_folder.resolve() and _results_of_others(out, sources) and not force:
        raise UserError(
            f"{out}: already holds results (results.json) of other checkpoints; "
            f"choose another --out, or pass --force to replace them"
        )


def _results_of_others(out: Path, sources: str) -> bool:
    """Whether ``out`` holds results written for other checkpoints than ``sources`` (results.md names them)."""
    if not (out / "results.json").exists():
        return False
    report = out / "results.md"
    lines = report.read_text().splitlines() if report.exists() else []
    return f"Checkpoints: {sources}" not in lines


def _start_line(
    loaded: list,
    own_trials: list[int | None],
    dataset: DatasetSpec,
    protocols: list[str],
    trials: list[int] | None,
    device: str,
    out: Path,
) -> str:
    """What is about to be scored, in one line: checkpoints, data, model size, device, protocols, output folder."""
    path, model, config = loaded[0]
    checkpoints = str(path) if len(loaded) == 1 else f"{len(loaded)} checkpoints ({path}, ...)"
    images = dataset.read_test_images(Path(config.data.root), config.data.trial)
    if own_trials[0] is not None:
        trial_count = "one per trial model"
    else:
        trial_count = counted(len(trials), "trial", "trials") if trials else "all trials"
    rerank = rerank_settings(config.test)
    trial_count += f"; plain and {rerank.describe()}" if rerank else ""
    return (
        f"testing {checkpoints} on {images.summary()} ({config.data.dataset} at {config.data.root}"
        f"{f', trial {own_trials[0]}' if len(loaded) == 1 and own_trials[0] is not None else ''}); "
        f"{parameter_counts(model)['total']:,} parameters; {device}, fp32; "
        f"{', '.join(protocols)} ({trial_count}); results into {out}"
    )


def write_pictures(results: list[ProtocolResult], feature_set: FeatureSet, out: Path, run: str) -> list[Path]:
    """cmc.png (every protocol's CMC, mean ± std over trials)
    and ranks_<protocol>.png (the first trial's rank lists)."""
    pictures = [draw_cmc_curves(protocol_cmc_curves(results), out / "cmc.png", title=f"CMC of {run}")]
    for result in results:
        if result.rerank:
            continue  # the rank lists show the plain ranking
        trial = result.trials[0].trial
        _, queries, ranked = trial_rank_lists(feature_set, result.protocol, trial)
        title = f"{result.protocol.name} trial {trial}: {result.protocol.query} → {result.protocol.gallery}"
        pictures.append(draw_rank_list(queries, ranked, out / f"ranks_{result.protocol.name}.png", title=title))
    return pictures
