"""A run's model card: the README.md a Hub repository shows, written from the run folder alone
(offline), for `push` (engine/export/hub_push.py).

The front matter is huggingface_hub's ``ModelCardData`` (base_model, library_name, tags,
license, pipeline_tag), which the Hub reads to link an adapter to its base and to list the model
under the right library. The body says what the run folder records: the base model, the dataset
version and its content hash, the settings (config.toml), the loss curve (events.ndjson) and
every evaluation in the workspace that scored this run (engine/eval/store.py).

Only what is recorded is shown: a base model given as a local folder gets no ``base_model``
(the Hub wants a repository id there), a run without validation has no validation column, a run
never evaluated has no evaluation section. Local paths never reach the card: a folder is named
by its last part only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core import paths, untrusted, workspace
from engine.eval import store
from engine.export import card_sections, loss_chart
from engine.runtime import models

log = logging.getLogger("engine.export.card")

CARD_FILE = "README.md"
CHART_FILE = "loss.svg"
# The bundled default model is a GGUF copy of this Hub repository (engine/runtime/models.py).
DEFAULT_HUB_ID = f"HuggingFaceTB/{models.DEFAULT_NAME}"
METHODS = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning", "prompt_tuning": "prompt tuning",
           "prefix_tuning": "prefix tuning"}
OBJECTIVES = {"sft": "supervised fine-tuning", "dpo": "DPO", "orpo": "ORPO"}


@dataclass(frozen=True)
class Card:
    text: str  # README.md
    chart: str  # loss.svg, "" when the run recorded no loss


def build(run_path: Path, merged: bool = False, repo_id: str = "") -> Card:
    """The card of the run in ``run_path``; ``merged``: for the base with the adapter merged in."""
    run = workspace.RunFolder(run_path)
    info = run.info()
    points = loss_chart.loss_points(run_path)
    chart = loss_chart.loss_svg(points) if points else ""
    ref = str(info.get("dataset") or "")
    body = [*_intro(info, merged, repo_id),
            *card_sections.data_section(ref, dataset_manifest(ref)),
            *card_sections.settings_section(run_settings(run)),
            *card_sections.loss_section(loss_chart.sampled(points), CHART_FILE if chart else ""),
            *card_sections.evaluation_section(evaluations_of(run))]
    return Card(f"---\n{front_matter(info, merged).to_yaml()}\n---\n\n" + "\n".join(body), chart)


def write(run_path: Path, folder: Path, merged: bool = False, repo_id: str = "") -> list[str]:
    """Writes README.md (and loss.svg) into ``folder``; the names written."""
    card = build(run_path, merged, repo_id)
    workspace.atomic_write_text(folder / CARD_FILE, card.text)
    if card.chart:
        workspace.atomic_write_text(folder / CHART_FILE, card.chart)
    return [CARD_FILE, CHART_FILE] if card.chart else [CARD_FILE]


def front_matter(info: dict[str, Any], merged: bool) -> Any:
    from huggingface_hub import ModelCardData

    method = str(info.get("method") or "")
    whole_model = merged or info.get("artifact_kind") == "model"
    tags = ["tunebench", *(value for value in (method, info.get("objective")) if value)]
    return ModelCardData(base_model=base_hub_id(info) or None, library_name="transformers" if whole_model else "peft",
                         license=base_license(info) or None, pipeline_tag="text-generation", tags=tags)


def _intro(info: dict[str, Any], merged: bool, repo_id: str) -> list[str]:
    hub_id = base_hub_id(info)
    base = f"`{hub_id}`" if hub_id else f"`{_last_part(str(info.get('model') or '?'))}` (a local model folder)"
    method = METHODS.get(str(info.get("method")), str(info.get("method") or "fine-tuning"))
    if info.get("artifact_kind") == "model":
        what = f"{base} fine-tuned as a whole"
    elif merged:
        what = f"{base} with a {method} adapter merged into its weights"
    else:
        what = f"A {method} adapter for {base}"
    objective = OBJECTIVES.get(str(info.get("objective")), str(info.get("objective") or ""))
    how = f" by {objective}" if objective else ""
    steps = f", {info['steps']} steps" if info.get("steps") else ""
    title = repo_id.split("/")[-1] if repo_id else info.get("name") or info.get("id") or "Tunebench run"
    lines = [f"# {title}", "", f"{what}, trained{how} with Tunebench (run `{info.get('id', '')}`{steps}).", ""]
    return lines + _usage(repo_id, merged or info.get("artifact_kind") == "model")


def _usage(repo_id: str, whole_model: bool) -> list[str]:
    if not repo_id:
        return []
    loader = ("from transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM"
              if whole_model else "from peft import AutoPeftModelForCausalLM\n\nmodel = AutoPeftModelForCausalLM")
    return ["## Use", "", "```python", f'{loader}.from_pretrained("{repo_id}")', "```", ""]


def base_hub_id(info: dict[str, Any]) -> str:
    """The base model's Hub repository id when the run records one: the bundled default, or a
    model `models download` fetched (its folder's marker says ``hub:OWNER/NAME@COMMIT``)."""
    if str(info.get("model") or "").lower() in models.DEFAULT_ALIASES:
        return DEFAULT_HUB_ID
    model_dir = info.get("model_dir")
    marker = workspace.read_json(Path(model_dir) / models.MARKER) if model_dir else None
    source = str((marker or {}).get("source") or "")
    return source.removeprefix("hub:").split("@")[0] if source.startswith("hub:") else ""


def base_license(info: dict[str, Any]) -> str:
    """The licence in the base model's own card (its README's front matter), when it has one."""
    from huggingface_hub import ModelCard

    readme = Path(str(info.get("model_dir") or "")) / CARD_FILE
    if not info.get("model_dir") or not readme.is_file():
        return ""
    try:
        value = ModelCard(untrusted.read_text(readme, limit=1024 * 1024)).data.license
    except (OSError, ValueError) as exc:  # a README that is not a card: no licence known
        log.debug("No licence read from %s: %s", readme, exc)
        return ""
    return value if isinstance(value, str) else ""


def dataset_manifest(ref: str) -> dict[str, Any]:
    """The manifest of the dataset version the run trained on (``name@vN``), or {}."""
    name, _, version = ref.partition("@v")
    if not name or not version.isdigit():
        return {}
    return workspace.read_json(paths.datasets_dir() / name / f"v{version}" / "manifest.json") or {}


def run_settings(run: workspace.RunFolder) -> dict[str, Any]:
    """config.toml's [train] table, local paths cut to their last part."""
    try:
        table = untrusted.toml_loads(untrusted.read_text(run.config_toml)).get("train", {})
    except (OSError, ValueError) as exc:  # untrusted.InputError is a ValueError
        log.warning("The run's settings are not in the card: %s: %s", run.config_toml, exc)
        return {}
    if not isinstance(table, dict):  # a hand-edited file whose [train] is not a table
        return {}
    return {key: _last_part(value) if isinstance(value, str) else value for key, value in table.items()}


def _last_part(value: str) -> str:
    return Path(value).name if Path(value).is_absolute() or "\\" in value else value


def evaluations_of(run: workspace.RunFolder) -> list[tuple[dict[str, Any], str]]:
    """Each evaluation in the workspace that scored this run's adapter (or model), newest first,
    with the label it gave the run."""
    tuned = {run.adapter.resolve(), run.model.resolve()}
    found = []
    for entry in store.list_evaluations():
        summary = store.read_summary(Path(entry["path"])) or {}
        label = next((str(model.get("label", "")) for model in summary.get("models", [])
                      if model.get("adapter") and Path(str(model["adapter"])).resolve() in tuned), "")
        if label:
            found.append((summary, label))
    return found
