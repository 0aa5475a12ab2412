"""`models download`: a Hub model into the models cache, where `models list` and every model
picker find it (engine/runtime/models.py resolves a cached folder that has the marker file).

How it goes, and why:

1. The repository's file list and sizes (``model_info(files_metadata=True)``), pinned to one
   commit so every file comes from the same revision.
2. The files to fetch (engine/runtime/hub_files.py): safetensors or GGUF weights and the text
   files beside them; pickled weights stay on the Hub.
3. Free disk space against the bytes still to fetch, before anything is written.
4. Each file through ``hf_hub_download`` into a staging folder (``cache/downloads/OWNER--NAME``).
   A dropped connection is resumed by huggingface_hub with a Range request. After a cancel or a
   killed process, the files already finished stay in the staging folder, and huggingface_hub
   keeps them next time when they match the Hub's ETag; the file that was cut off starts again
   (huggingface_hub 2 removes its partial file).
5. The folder's checks (model_files: safetensors headers, no custom code), then the marker, then
   one rename into the models cache: a model appears whole or not at all. A GGUF download is
   converted by `models prepare`'s code instead, and its staging folder keeps the file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from engine.core import paths, protocol
from engine.core.errors import EngineError
from engine.core.fit import format_gb
from engine.core.job import Job
from engine.core.workspace import atomic_write_json
from engine.runtime import hub, hub_files, model_files, models

log = logging.getLogger("engine.runtime.hub_download")

DISK_MARGIN_BYTES = 256 * 2**20  # room left for logs, temporary files and the rest of the system
PROGRESS_INTERVAL_S = 0.25
HUB_METADATA = ".cache"  # huggingface_hub's bookkeeping inside a local_dir; not part of the model


def free_bytes(folder: Path) -> int:
    """Free space where ``folder`` lives (a test replaces this function)."""
    return shutil.disk_usage(folder).free


def staging_dir(name: str) -> Path:
    folder = paths.cache_dir() / "downloads" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def download(repo_id: str, job: Job, revision: str = "", include: str = "") -> dict[str, Any]:
    name = hub_files.folder_name(repo_id)
    target = paths.models_cache_dir() / name
    if (target / models.MARKER).is_file():
        log.info("%s is already downloaded: %s", repo_id, target)
        return {"model": name, "path": str(target), "repo_id": repo_id, "downloaded_bytes": 0}
    with hub.hub_errors(repo_id):
        info = hub.api().model_info(repo_id, revision=revision or None, files_metadata=True)
    files = [hub_files.RepoFile(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
    selection = hub_files.select(files, include)
    if selection.pickles:
        log.info("Not fetching pickled files (Tunebench never loads pickles): %s", ", ".join(selection.pickles))
    staging = staging_dir(name)
    check_disk_space(selection, staging)
    fetched = _fetch_all(repo_id, info.sha, selection, staging, job)
    folder = _install(repo_id, info.sha, selection, staging, target)
    return {"model": folder.name, "path": str(folder), "repo_id": repo_id, "revision": info.sha,
            "files": [file.name for file in selection.files], "skipped_pickles": list(selection.pickles),
            "downloaded_bytes": fetched}


def remaining(selection: hub_files.Selection, staging: Path) -> list[hub_files.RepoFile]:
    """The files not yet in the staging folder at their full size (an earlier, interrupted
    download), for the disk check; whether one is really complete, hf_hub_download checks."""
    return [file for file in selection.files
            if not ((staging / file.name).is_file() and (staging / file.name).stat().st_size == file.size)]


# A GGUF file is converted to safetensors once (engine/runtime/models.py): the dequantised copy
# is up to about four times a 4-bit file (16-bit weights), so that much more room is needed.
GGUF_CONVERSION_FACTOR = 4


def check_disk_space(selection: hub_files.Selection, staging: Path) -> None:
    needed = sum(file.size for file in remaining(selection, staging))
    if selection.gguf is not None:
        needed += selection.gguf.size * GGUF_CONVERSION_FACTOR
    free = free_bytes(staging)
    if needed + DISK_MARGIN_BYTES > free:
        raise EngineError(protocol.ExitCode.FAILED, (
            f"models download: not enough disk space: it needs {format_gb(needed / 2**30)} "
            f"{'(the file and its conversion)' if selection.gguf else 'for the files'} and "
            f"{format_gb(free / 2**30)} is free in {staging.parent}; free some space and run it again"))


def _fetch_all(repo_id: str, commit: str, selection: hub_files.Selection, staging: Path, job: Job) -> int:
    from huggingface_hub import hf_hub_download

    # Every file goes through hf_hub_download: one already in the staging folder from an earlier
    # try is checked against the Hub's ETag there (huggingface_hub's local_dir metadata) and kept.
    reporter = Progress(job, selection.total_bytes)
    for file in selection.files:
        reporter.current_file = file.name
        with hub.hub_errors(repo_id):
            hf_hub_download(repo_id, file.name, revision=commit, local_dir=staging, endpoint=hub.endpoint(),
                            token=hub.token() or False, tqdm_class=reporter.bar_class())
        reporter.file_done(file.size)
    reporter.send(force=True)
    return reporter.done


class Progress:
    """Bytes, speed and ETA as ``progress`` messages, from huggingface_hub's progress-bar hook;
    also where a cancel stops the transfer, between two chunks."""

    def __init__(self, job: Job, total: int) -> None:
        self.job, self.total, self.done = job, total, 0
        self.started = time.monotonic()
        self.last_sent = 0.0
        self.current_file = ""
        self._file_bytes = 0  # of the file in flight: a restarted file rolls its bytes back

    def advance(self, count: int) -> None:
        if self.job.control.cancelled.is_set():
            raise EngineError(protocol.ExitCode.CANCELLED, "models download: cancelled; the files finished are "
                              "kept, and running the same download again continues from them")
        self._file_bytes += count
        self.done += count
        self.send()

    def file_done(self, size: int) -> None:
        self.done += size - self._file_bytes  # a file the Hub sent without a length counts in full
        self._file_bytes = 0

    def send(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_sent < PROGRESS_INTERVAL_S:
            return
        self.last_sent = now
        elapsed = max(now - self.started, 1e-6)
        speed = self.done / elapsed
        eta = (self.total - self.done) / speed if speed > 0 else None
        self.job.channel.send(protocol.progress(
            self.done, self.total, stage="download", file=self.current_file, bytes_per_s=round(speed),
            eta_s=round(eta, 1) if eta is not None else None))

    def bar_class(self) -> type:
        """A class huggingface_hub builds in place of its tqdm bar (it calls a class that is not
        its own tqdm with the bar's keyword arguments only) and calls ``update(bytes)`` on."""
        reporter = self

        class Bar:
            def __init__(self, **_: Any) -> None:
                pass

            def update(self, count: float = 1) -> None:
                reporter.advance(int(count))

            def close(self) -> None:
                pass

            def __enter__(self) -> "Bar":
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

        return Bar


def _install(repo_id: str, commit: str, selection: hub_files.Selection, staging: Path, target: Path) -> Path:
    shutil.rmtree(staging / HUB_METADATA, ignore_errors=True)
    gguf = selection.gguf
    if gguf is not None:
        model_files.check_gguf(staging / gguf.name)
        # Converted once, into the download's own name, so that owner/name finds it like any other.
        return models.convert_gguf(staging / gguf.name, target)
    model_files.check_folder(staging)
    atomic_write_json(staging / models.MARKER, {"name": target.name, "source": f"hub:{repo_id}@{commit}",
                                                "downloaded": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if target.exists():  # no marker (checked first): an unfinished conversion or copy
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def cmd_download(args: argparse.Namespace, job: Job) -> int:
    result = download(args.repo_id, job, args.revision, args.include)
    job.channel.send(protocol.artifact("model", result["path"]))
    job.channel.send(protocol.result(result))
    return protocol.ExitCode.OK

