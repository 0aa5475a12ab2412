"""The Hugging Face Hub, when the user asks for it: `models search` and the client, token and
error handling `models download` (engine/runtime/hub_download.py) shares.

Tunebench is offline by default (docs/architecture.md, 'Offline and on a CPU'): these are the
only engine commands that go online, and only because the user ran them (the command table
marks them ``online``, so the CLI does not switch huggingface_hub to offline mode for them).
Everything goes through huggingface_hub's own client, never hand-written HTTP.

- The endpoint is read from ``HF_ENDPOINT`` at each call and passed on explicitly:
  huggingface_hub reads its constants once, at import, and a mirror (or a test's server) set
  later would otherwise be ignored.
- A gated or private repository needs a token, taken from the OS keyring (service
  ``tunebench``, user ``huggingface``; `models login` stores it), never from a settings file.
- A refusal from the Hub becomes one line and an exit code (:func:`hub_errors`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from engine.core import errors, fit_estimate, protocol, untrusted
from engine.core.errors import EngineError
from engine.core.job import Job
from engine.runtime import peak

log = logging.getLogger("engine.runtime.hub")

KEYRING_SERVICE = "tunebench"
KEYRING_USER = "huggingface"
DEFAULT_ENDPOINT = "https://huggingface.co"
SEARCH_FIELDS = ["downloads", "likes", "safetensors", "gguf", "pipeline_tag", "tags", "gated", "lastModified"]


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """The Hub token from the OS keyring, or None (public repositories need none)."""
    try:
        import keyring  # optional: without it only public repositories can be fetched
        from keyring.errors import KeyringError  # the same optional package
    except ImportError:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or None
    except KeyringError:
        return None


def api() -> Any:
    """An HfApi on :func:`endpoint`, authenticated by :func:`token`; refuses in offline mode."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise errors.usage("the Hub: offline mode is on (HF_HUB_OFFLINE=1); unset it to search or download")
    # token=False when the keyring has none: huggingface_hub would otherwise fall back to a
    # token in a plain file or the environment, which Tunebench does not treat as its setting.
    return HfApi(endpoint=endpoint(), token=token() or False)


@contextlib.contextmanager
def hub_errors(repo_id: str = "") -> Iterator[None]:
    """Turns huggingface_hub's and httpx's exceptions into one EngineError line each."""
    from huggingface_hub import errors as hub

    what = f"the Hub: {repo_id}" if repo_id else "the Hub"
    try:
        yield
    except EngineError:
        raise
    except hub.GatedRepoError:
        raise errors.not_found(_gated_message(f"{what} is gated", repo_id)) from None
    except hub.RepositoryNotFoundError:
        raise errors.not_found(f"{what} was not found, or is private (a private one needs a token: "
                               "`tunebench-engine models login`)") from None
    except hub.RevisionNotFoundError:
        raise errors.not_found(f"{what}: no such revision") from None
    except hub.LocalEntryNotFoundError as exc:  # huggingface_hub's word for "could not ask the Hub"
        raise _network_error(exc, what) from None
    except hub.EntryNotFoundError as exc:
        raise errors.not_found(f"{what}: a file is missing on the Hub ({errors.one_line(exc, last=True)})") from None
    except hub.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise errors.not_found(f"{what}: the Hub refused access (HTTP {status}); "
                                   + _gated_message("if the model is gated", repo_id)) from None
        raise EngineError(protocol.ExitCode.FAILED, f"{what}: the Hub answered HTTP {status or '?'}") from None
    except hub.HFValidationError as exc:  # a malformed repository id or revision
        raise errors.usage(f"{what}: {errors.one_line(exc, last=True)}") from None
    except hub.OfflineModeIsEnabled:
        raise errors.usage(f"{what}: offline mode is on (HF_HUB_OFFLINE=1); unset it to use the Hub") from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # a local failure (a full disk): the CLI words it
        # huggingface_hub's own, e.g. a file that arrived shorter than the Hub said.
        detail = errors.one_line(exc, last=True)
        raise EngineError(protocol.ExitCode.FAILED, f"{what}: {detail}; run it again") from None
    except Exception as exc:
        if type(exc).__module__.startswith(("httpx", "httpcore")):  # httpx2 too
            raise _network_error(exc, what) from None
        raise  # a bug: the CLI logs the traceback


def _gated_message(what: str, repo_id: str) -> str:
    page = f"{endpoint()}/{repo_id}" if repo_id else "the model's Hub page"
    if token():
        return (f"{what}: accept its licence at {page} with the account whose token `models login` stored "
                "(access may also wait for the authors' approval)")
    return f"{what}: accept its licence at {page}, then store a token with `tunebench-engine models login`"


def _network_error(exc: BaseException, what: str) -> EngineError:
    return EngineError(protocol.ExitCode.FAILED, f"{what}: cannot reach {endpoint()}; check the connection "
                       f"({errors.one_line(exc, last=True)[:120]})")


# -- search -----------------------------------------------------------------------------------

def search(query: str, task: str = "", architecture: str = "", license: str = "",
           limit: int = 20) -> list[dict[str, Any]]:
    """Models matching the query and filters, most downloaded first, each with a fit label per
    method for this machine's memory."""
    filters = [tag for tag in (architecture, f"license:{license}" if license else "") if tag]
    with hub_errors():
        found = list(api().list_models(search=query or None, pipeline_tag=task or None, filter=filters or None,
                                       sort="downloads", limit=limit, expand=SEARCH_FIELDS))
    device, available = machine_memory()
    return [_row(model, available / fit_estimate.GB, device) for model in found]


def machine_memory() -> tuple[str, int]:
    """Where this machine would run a model and the bytes there: a CUDA GPU's memory when NVML
    sees one (training picks CUDA when it is there), else the RAM available."""
    gpu = peak.gpu_total_bytes()
    return ("cuda", gpu) if gpu else ("cpu", peak.ram_available_bytes())


def _row(model: Any, available_gb: float, device: str) -> dict[str, Any]:
    params = parameter_count(model)
    tags = list(model.tags or [])
    row: dict[str, Any] = {
        "id": model.id, "downloads": model.downloads or 0, "likes": model.likes or 0,
        "task": model.pipeline_tag or "", "gated": bool(model.gated), "params": params,
        "license": next((tag.split(":", 1)[1] for tag in tags if tag.startswith("license:")), ""),
        "formats": [name for name in ("safetensors", "gguf") if name in tags or getattr(model, name, None)],
    }
    if params:  # the fit labels need a size; a repository that does not say gets none
        row["fit"] = fit_estimate.fit_labels(fit_estimate.guess_shape(params), available_gb, device)
        row["fit_device"] = device
    return row


def parameter_count(model: Any) -> int:
    """Parameters as the Hub reports them (safetensors' or GGUF's header total), else 0."""
    info = getattr(model, "safetensors", None)
    total = getattr(info, "total", None)
    if isinstance(total, int) and total > 0:
        return total
    gguf = getattr(model, "gguf", None)
    total = gguf.get("total") if isinstance(gguf, dict) else None
    return total if isinstance(total, int) and total > 0 else 0


def cmd_search(args: argparse.Namespace, job: Job) -> int:
    rows = search(args.query, args.task, args.architecture, args.license, args.limit)
    device, available = machine_memory()
    if not job.channel.json_mode:  # a terminal: one line per model before the full result
        for row in rows:
            log.info("%s", summary_line(row))
    job.channel.send(protocol.result({"models": rows, "endpoint": endpoint(), "device": device,
                                      "memory_gb": round(available / fit_estimate.GB, 1)}))
    return protocol.ExitCode.OK


def summary_line(row: dict[str, Any]) -> str:
    """'owner/name  1234 downloads  135M params  inference fits 0.8 GB, lora ...'."""
    params = f"{_count(row['params'])} params" if row["params"] else "size unknown"
    fit = ", ".join(f"{method} {entry['label']} {entry['gb']:.1f} GB" for method, entry in row.get("fit", {}).items())
    return f"{row['id']}  {row['downloads']} downloads  {params}" + (f"  {fit}" if fit else "")


def _count(value: int) -> str:
    """135_000_000 -> "135M", 7_240_000_000 -> "7.2B", 150_000 -> "150k"."""
    if value >= 1e9:
        return f"{value / 1e9:.1f}B"
    return f"{value / 1e6:.0f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"


# -- model card -------------------------------------------------------------------------------

MAX_CARD_BYTES = 1024 * 1024  # a model card is a page of Markdown; a larger README is not one


def card(repo_id: str) -> str:
    """The model card (the repository's README.md) as text; "" when the repository has none."""
    from huggingface_hub import errors as hub_errors_module
    from huggingface_hub import hf_hub_download

    api()  # refuses in offline mode, as search and download do
    with tempfile.TemporaryDirectory() as tmp, hub_errors(repo_id):
        try:
            path = hf_hub_download(repo_id, "README.md", local_dir=tmp, endpoint=endpoint(),
                                   token=token() or False)
        except hub_errors_module.RemoteEntryNotFoundError:  # not the Local one: that is "could not ask"
            return ""
        try:
            return untrusted.read_text(Path(path), limit=MAX_CARD_BYTES)
        except untrusted.InputError as exc:
            raise errors.invalid_input(f"the Hub: {repo_id}: model card: {exc}") from None


def cmd_card(args: argparse.Namespace, job: Job) -> int:
    job.channel.send(protocol.result({"repo_id": args.repo_id, "card": card(args.repo_id)}))
    return protocol.ExitCode.OK


# -- login ------------------------------------------------------------------------------------

def cmd_login(args: argparse.Namespace, job: Job) -> int:
    """Stores a Hub token, read from stdin (never argv, which other users' `ps` shows), in the
    OS keyring."""
    try:
        import keyring  # optional dependency: only gated and private repositories need it
        from keyring.errors import KeyringError  # the same optional package
    except ImportError:
        raise errors.missing_dependency("models login: the keyring package is not installed "
                                        "(pip install keyring)") from None
    value = sys.stdin.readline().strip()
    if not value:
        raise errors.usage("models login: no token on stdin (paste it, or pipe it in)")
    try:
        keyring.set_password(KEYRING_SERVICE, KEYRING_USER, value)
    except KeyringError as exc:
        raise errors.missing_dependency(f"models login: the OS keyring refused the token ({exc})") from None
    job.channel.send(protocol.result({"stored": True, "keyring": f"{KEYRING_SERVICE}/{KEYRING_USER}"}))
    return protocol.ExitCode.OK
