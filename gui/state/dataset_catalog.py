"""Imported datasets in the workspace: ``datasets/<name>/v<N>/manifest.json``. Qt-free."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.core import names, paths, workspace
from gui.state.timefmt import format_time

MANIFEST = "manifest.json"
_VERSION_DIR = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class DatasetRow:
    name: str
    version: int
    rows: int | None
    shape: str
    source: str
    created: str
    content_hash: str
    path: Path
    meta_columns: tuple[str, ...] = ()  # extra columns of the source file, kept per row

    def slice_columns(self) -> list[str]:
        """Columns an evaluation can slice by: the label (classification), the expected
        answer, and every extra column of the source file."""
        own = ["label"] if self.shape == "classification" else []
        return own + ["reference"] + list(self.meta_columns)


def list_datasets(root: Path | None = None) -> list[DatasetRow]:
    """One row per stored version, by name then version; folders without a manifest are skipped
    (an import still being written has none yet)."""
    root = root or paths.datasets_dir()
    rows = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and names.is_name(p.name)) if root.is_dir() else []
    for name_dir in folders:
        for version, folder in _versions(name_dir):
            manifest = workspace.read_json(folder / MANIFEST)
            if manifest is not None:
                rows.append(_row(name_dir.name, version, folder, manifest))
    return rows


def dataset_names(root: Path | None = None) -> list[str]:
    return sorted({row.name for row in list_datasets(root)})


def _versions(name_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in name_dir.iterdir() if (m := _VERSION_DIR.match(p.name))]
    return sorted(found)


def _row(name: str, version: int, folder: Path, manifest: dict) -> DatasetRow:
    rows = manifest.get("rows")
    return DatasetRow(
        name=name,  # the folder's name: a manifest's own could name a path outside datasets/
        version=version,  # the folder name is the truth; manifests may write "v1" or 1
        rows=rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        shape=str(manifest.get("shape") or ""),
        source=str(manifest.get("source") or ""),
        created=format_time(manifest.get("created")),
        content_hash=str(manifest.get("content_hash") or ""),
        path=folder,
        meta_columns=tuple(str(c) for c in manifest.get("meta_columns") or ()),
    )
