"""LM Studio: the GGUF file placed where LM Studio finds it, ``<models dir>/<publisher>/<model>/
<file>.gguf`` (LM Studio lists models by publisher and model folder, and ignores a file put
straight in the models folder). LM Studio reads the chat template from the GGUF's own metadata
(``tokenizer.chat_template``), which the GGUF export always writes."""

from __future__ import annotations

from pathlib import Path

from engine.core import names

PUBLISHER = "tunebench"


def default_models_dir() -> Path:
    """LM Studio's default models folder (its "My Models" setting can move it)."""
    return Path.home() / ".lmstudio" / "models"


def model_name(run_name: str) -> str:
    """A folder name LM Studio shows as the model: the run's name with anything but letters,
    digits, dot, dash and underscore turned into a dash."""
    return names.slug(run_name, "model")


def target(models_dir: Path, run_name: str, outtype: str) -> Path:
    name = model_name(run_name)
    return models_dir / PUBLISHER / name / f"{name}-{outtype}.gguf"
