"""`data split`: a seeded train/validation(/test) split stored as a new version of a dataset.

The new version's ``data/`` folder holds a ``datasets.DatasetDict`` (``save_to_disk``), so the
splits are part of the version and a run that records ``name@vN`` records its splits too. The
manifest says which version was split (``split_of``), with what fractions and seed, and how many
rows each split got. Classification data is split per label (stratified), so a rare label keeps
its share in every split.

Readers that want rows should call :func:`load_split` (one split) or :func:`load_rows` (every
row), which work for split and unsplit versions alike.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from typing import Any

from engine.core import errors, protocol
from engine.core.job import Job
from engine.core.workspace import atomic_folder, atomic_write_json
from engine.data.formats import read_only_arrow
from engine.data.importer import (
    MANIFEST,
    DatasetVersion,
    dataset_folder,
    resolve,
    versions,
)

log = logging.getLogger("engine.data")

SPLITS = ("train", "validation", "test")
STRATIFY_COLUMN = "label"  # classification rows: {"text", "label"}


# -- reading split and unsplit versions ----------------------------------------------------------

def load_data(version: DatasetVersion) -> Any:
    """The stored ``datasets.Dataset`` (unsplit version) or ``DatasetDict`` (split version)."""
    import datasets

    read_only_arrow(datasets)
    return datasets.load_from_disk(str(version.path / "data"))


def load_split(version: DatasetVersion, split: str = "train") -> Any:
    """One split of a version as a ``datasets.Dataset``.

    An unsplit version is all training data, so ``"train"`` gives the whole dataset.

    Raises:
        EngineError: NOT_FOUND when the version has no such split.
    """
    import datasets

    data = load_data(version)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise errors.not_found(f"dataset: {version.ref} has no {split!r} split "
                                   f"(it has {', '.join(data)})")
        return data[split]
    if split != "train":
        raise errors.not_found(f"dataset: {version.ref} is not split, so it has no {split!r} split "
                               f"(make one with: tunebench-engine data split {version.ref})")
    return data


def load_rows(version: DatasetVersion, split: str = "") -> Any:
    """Every row of a version (splits concatenated in train, validation, test order), or one
    split when ``split`` is given."""
    import datasets

    if split:
        return load_split(version, split)
    data = load_data(version)
    if isinstance(data, datasets.DatasetDict):
        # Known splits first, then any others an imported DatasetDict brought (e.g. "dev").
        names = [name for name in SPLITS if name in data] + [name for name in data if name not in SPLITS]
        return datasets.concatenate_datasets([data[name] for name in names])
    return data


# -- choosing rows --------------------------------------------------------------------------------

def split_sizes(rows: int, val: float, test: float) -> dict[str, int]:
    """Rows per split: validation and test rounded from their fractions, train the rest.

    Raises:
        EngineError: USAGE, naming the flag, for a fraction out of range or one that leaves a
            split empty.
    """
    if not 0 < val < 1:
        raise errors.usage(f"--val {val}: must be between 0 and 1 (e.g. 0.1)")
    if not 0 <= test < 1:
        raise errors.usage(f"--test {test}: must be between 0 and 1 (0 for no test split)")
    if val + test >= 1:
        raise errors.usage(f"--val {val} + --test {test} = {val + test:g}: must be below 1, "
                           "or no rows are left to train on")
    sizes = {"validation": round(rows * val)}
    if test > 0:
        sizes["test"] = round(rows * test)
    for name, flag in (("validation", "--val"), ("test", "--test")):
        if name in sizes and sizes[name] == 0:
            raise errors.usage(f"{flag} {val if name == 'validation' else test}: leaves the {name} "
                               f"split empty for {rows} rows; use a larger fraction")
    sizes["train"] = rows - sum(sizes.values())
    if sizes["train"] <= 0:
        raise errors.usage(f"--val {val} + --test {test}: leaves the train split empty for {rows} rows")
    return {name: sizes[name] for name in SPLITS if name in sizes}


def _largest_remainder(group_sizes: list[int], fraction: float, total: int) -> list[int]:
    """Shares of ``total`` rows taken from each group in proportion to its size (rounded by
    largest remainder, so the shares add up to ``total`` exactly)."""
    exact = [size * fraction for size in group_sizes]
    shares = [int(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for index in by_remainder[:total - sum(shares)]:
        shares[index] += 1
    return [min(share, size) for share, size in zip(shares, group_sizes)]


def assign_rows(rows: int, sizes: dict[str, int], seed: int,
                labels: list[str] | None = None) -> dict[str, list[int]]:
    """Row indices per split: a seeded shuffle, per label when ``labels`` are given.

    Indices inside each split stay in file order, so the same seed always gives the same rows
    in the same order, whatever the platform.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [list(range(rows))]
    else:
        by_label: dict[str, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(label, []).append(index)
        groups = [by_label[label] for label in sorted(by_label)]
    shuffled = [[group[i] for i in rng.permutation(len(group))] for group in groups]
    chosen: dict[str, list[int]] = {name: [] for name in sizes}
    remaining = [len(group) for group in shuffled]
    taken = [0] * len(shuffled)
    for name in ("validation", "test"):
        if name not in sizes:
            continue
        # Each split takes its share of the whole group, from what earlier splits left.
        fraction = sizes[name] / rows
        shares = _largest_remainder([len(group) for group in shuffled], fraction, sizes[name])
        for index, group in enumerate(shuffled):
            share = min(shares[index], remaining[index])
            chosen[name].extend(group[taken[index]:taken[index] + share])
            taken[index] += share
            remaining[index] -= share
    chosen["train"] = [i for index, group in enumerate(shuffled) for i in group[taken[index]:]]
    return {name: sorted(indices) for name, indices in chosen.items()}


# -- storing --------------------------------------------------------------------------------------

def split_dataset(spec: str, val: float, test: float = 0.0, seed: int = 42) -> DatasetVersion:
    """Splits a dataset version and stores the result as the dataset's next version.

    Args:
        spec: ``name`` or ``name@vN`` (anything :func:`engine.data.importer.resolve` accepts).
        val: fraction of rows for the validation split (0 < val < 1).
        test: fraction for a test split (0 for none).
        seed: the shuffle seed; the same version, fractions and seed give the same split.

    Returns:
        The new version, or the existing one when this exact split was made before.

    Raises:
        EngineError: USAGE for bad fractions; NOT_FOUND for an unknown dataset. A version that
            is itself a split is split again from the version it came from.
    """
    import datasets

    source = resolve(spec)
    if source.manifest.get("split_of"):
        # Splitting a split again means choosing new splits of the same rows.
        log.info("%s is a split of %s; splitting %s", source.ref, source.manifest["split_of"],
                 source.manifest["split_of"])
        source = resolve(source.manifest["split_of"])
    data = load_rows(source)  # a version that brought its own splits is re-split as a whole
    sizes = split_sizes(len(data), val, test)
    reused = _existing_split(source, val, test, seed)
    if reused:
        log.info("%s was already split this way as %s; reusing it", source.ref, reused.ref)
        return reused
    stratify = source.manifest.get("shape") == "classification" and STRATIFY_COLUMN in data.column_names
    labels = data[STRATIFY_COLUMN] if stratify else None
    indices = assign_rows(len(data), sizes, seed, labels)
    splits = datasets.DatasetDict({name: data.select(indices[name]) for name in sizes})
    return _store(source, splits, {"val": val, "test": test}, seed, STRATIFY_COLUMN if stratify else "")


def _existing_split(source: DatasetVersion, val: float, test: float, seed: int) -> DatasetVersion | None:
    for existing in versions(source.name):
        manifest = existing.manifest
        if (manifest.get("split_of") == source.ref and manifest.get("seed") == seed
                and manifest.get("fractions") == {"val": val, "test": test}):
            return existing
    return None


def _store(source: DatasetVersion, splits: Any, fractions: dict[str, float], seed: int,
           stratified_by: str) -> DatasetVersion:
    """Writes into a temp folder beside the versions and renames it into place, as imports do,
    so a half-written split is never visible."""
    existing = versions(source.name)
    number = existing[-1].version + 1
    target = dataset_folder(source.name) / f"v{number}"
    with atomic_folder(target) as tmp:
        splits.save_to_disk(str(tmp / "data"))
        manifest = _manifest(source, number, splits, fractions, seed, stratified_by)
        atomic_write_json(tmp / MANIFEST, manifest)
        del splits  # release memory-mapped files before the rename (Windows)
    log.info("Split %s into %s as %s@v%d", source.ref,
             ", ".join(f"{name} {count}" for name, count in manifest["splits"].items()), source.name, number)
    return DatasetVersion(source.name, number, target, manifest)


def _manifest(source: DatasetVersion, number: int, splits: Any, fractions: dict[str, float], seed: int,
              stratified_by: str) -> dict[str, Any]:
    counts = {name: len(split) for name, split in splits.items()}
    # A hash of its own: the source's content hash would make `data import` of the original file
    # treat this split version as the plain import of it.
    identity = f"{source.manifest.get('content_hash', '')}:split:{fractions['val']}:{fractions['test']}:{seed}"
    inherited = {key: source.manifest[key] for key in ("source", "format", "encoding", "shape", "mapping", "options")
                 if key in source.manifest}
    return {"name": source.name, "version": number, **inherited, "rows": sum(counts.values()),
            "skipped": 0, "splits": counts, "split_of": source.ref, "seed": seed, "fractions": fractions,
            "stratified_by": stratified_by, "content_hash": hashlib.sha256(identity.encode()).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


# -- CLI handler ----------------------------------------------------------------------------------

def cmd_split(args: argparse.Namespace, job: Job) -> int:
    version = split_dataset(args.dataset, args.val, args.test, args.seed)
    job.channel.send(protocol.result({"name": version.name, "version": version.version,
                                      "split_of": version.manifest["split_of"],
                                      "splits": version.manifest["splits"], "seed": version.manifest["seed"],
                                      "stratified_by": version.manifest["stratified_by"],
                                      "path": str(version.path)}))
    return protocol.ExitCode.OK
