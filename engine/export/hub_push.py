"""`push RUN --repo OWNER/NAME`: a run's adapter (or, with ``--merged``, the base with the
adapter merged in) to a Hugging Face Hub repository, with a model card written from the run
(engine/export/model_card.py).

Like `models search` and `models download` (engine/runtime/hub.py), this goes online only
because the user ran it, through huggingface_hub's own client, with the token from the OS
keyring (`models login`); a refusal from the Hub is one line naming the field.

What goes up is what another machine needs to load the model and nothing else: safetensors
weights, JSON configs, tokenizer files and the chat template, plus README.md and loss.svg.
Pickled files (``*.bin``, ``*.pt``...) never go up, nor Tunebench's own notes with local paths.
The files are gathered into a temporary folder in the run folder first (hard links where the disk
allows), so the upload is exactly the list the result reports.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from engine.core import errors, protocol, workspace
from engine.core.job import Job
from engine.export import model_card
from engine.runtime import hub

log = logging.getLogger("engine.export.push")

UPLOAD_SUFFIXES = (".safetensors", ".json", ".txt", ".jinja", ".model")
NEVER_UPLOADED = frozenset({model_card.CARD_FILE, "tunebench-export.json", "training_args.bin"})
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
STAGES = ("prepare", "model card", "create repository", "upload")


def cmd_push(args: argparse.Namespace, job: Job) -> int:
    repo_id = checked_repo_id(args.repo)  # before anything else, and before any network call
    run = find_run(args.run)
    source = tuned_folder(run)
    whole_model = args.merged or source == run.model
    client = hub.api()  # refuses in offline mode
    # In the run folder, not the system's temp folder: a merged model is the base's size (GBs),
    # and on the adapter's own disk the staged files are hard links, not copies.
    with tempfile.TemporaryDirectory(prefix=".push-", dir=run.path) as tmp:
        step(job, "prepare")
        folder = merged_folder(run, Path(tmp), args.outtype) if args.merged and source == run.adapter else source
        staging = stage(folder, Path(tmp) / "upload")
        step(job, "model card")
        model_card.write(run.path, staging, whole_model, repo_id)
        files = sorted(path.name for path in staging.iterdir())
        if job.control.cancelled.is_set():
            log.info("Push cancelled before anything was sent")
            return protocol.ExitCode.CANCELLED
        url = upload(client, repo_id, staging, args, job, run.id)
    log.info("Pushed %d files to %s", len(files), url)
    job.channel.send(protocol.result({"repo_id": repo_id, "url": url, "files": files, "merged": whole_model,
                                      "private": args.private, "run_id": run.id}))
    return protocol.ExitCode.OK


def step(job: Job, stage: str) -> None:
    job.channel.send(protocol.progress(STAGES.index(stage), len(STAGES), stage=stage))


def checked_repo_id(value: str) -> str:
    """OWNER/NAME as the Hub accepts it; refused here, with no network call, when it is not."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not REPO_ID.match(value or ""):
        raise errors.usage(f"repo: {value!r} is not OWNER/NAME (letters, digits, '-', '_' and '.')")
    try:
        validate_repo_id(value)
    except HFValidationError as exc:
        raise errors.usage(f"repo: {errors.one_line(exc)}") from None
    return value


def find_run(ref: str) -> workspace.RunFolder:
    run = workspace.open_run(ref)
    if run is None:
        raise errors.not_found(f"run: {ref!r} is not a run folder or a run id in the workspace")
    return run


def tuned_folder(run: workspace.RunFolder) -> Path:
    """The run's adapter folder, or its whole model for a full fine-tune."""
    if (run.adapter / "adapter_config.json").is_file():
        return run.adapter
    if (run.model / "config.json").is_file():
        return run.model
    raise errors.not_found(f"run: {run.id} has no finished adapter or model yet")


def merged_folder(run: workspace.RunFolder, tmp: Path, outtype: str) -> Path:
    """The base with the run's adapter merged in, written by `export`'s own functions."""
    from engine.export import model as export_model  # loads the inference stack: --merged only
    from engine.infer import generate  # the same

    base, adapter_dir, _ = generate.resolve(None, str(run.path))
    log.info("Merging the adapter of run %s into %s (on the CPU)", run.id, base)
    model, tokenizer, _ = generate.load(None, str(run.path), "cpu", dtype=export_model.merge_dtype(base))
    target = tmp / "merged"
    export_model.write_merged(export_model.merged(model), tokenizer, target, outtype,
                              export_model.describe(base, adapter_dir or run.adapter, outtype))
    return target


def stage(folder: Path, staging: Path) -> Path:
    """The files of ``folder`` that go up, linked (or copied) into ``staging``."""
    staging.mkdir(parents=True)
    chosen = [path for path in sorted(folder.iterdir()) if uploadable(path)]
    if not any(path.suffix == ".safetensors" for path in chosen):
        raise errors.invalid_input(f"run: {folder} holds no safetensors weights; only safetensors are pushed")
    for path in chosen:
        try:
            os.link(path, staging / path.name)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(path, staging / path.name)
    return staging


def uploadable(path: Path) -> bool:
    return path.is_file() and path.name not in NEVER_UPLOADED and path.suffix.lower() in UPLOAD_SUFFIXES


def upload(client: Any, repo_id: str, staging: Path, args: argparse.Namespace, job: Job, run_id: str) -> str:
    """Creates the repository when missing and uploads ``staging`` in one commit; its URL."""
    message = args.message or f"Push run {run_id} from Tunebench"
    with hub.hub_errors(repo_id), refusals(repo_id):
        step(job, "create repository")
        url = client.create_repo(repo_id, private=True if args.private else None, exist_ok=True)
        step(job, "upload")
        client.upload_folder(repo_id=repo_id, folder_path=str(staging), commit_message=message)
    job.channel.send(protocol.progress(len(STAGES), len(STAGES), stage="done"))
    return str(url)


@contextlib.contextmanager
def refusals(repo_id: str) -> Iterator[None]:
    """A Hub that refuses to create or write the repository, in one line naming the field
    (hub_errors words 401/403 for downloads, where the cause is a gated model)."""
    from huggingface_hub import errors as hub_errors_module

    try:
        yield
    except hub_errors_module.HfHubHTTPError as exc:  # RepositoryNotFoundError (a 401) is one too
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise errors.not_found(f"repo: the Hub refused to write {repo_id} (HTTP {status}): "
                                   + _token_advice(repo_id)) from None
        if status == 400:
            raise errors.usage(f"repo: the Hub refused {repo_id}: {errors.one_line(exc, last=True)}") from None
        raise


def _token_advice(repo_id: str) -> str:
    owner = repo_id.split("/")[0]
    if hub.token():
        return f"the token `models login` stored cannot write to {owner}; give it write access there"
    return "no token is stored; store one with write access with `tunebench-engine models login`"

