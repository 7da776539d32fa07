"""What a model folder holds and says about itself, for publishing: the files a repository takes from it, the run's
recorded state, a valid repo id, and the installed version of a requirement.
"""

import json
from pathlib import Path

from gpt2mini.checkpoint import (
    CURVE_FILE,
    METRICS_FILE,
    STATE_FILE,
    UsageError,
    load_model_folder,
)
from gpt2mini.paths import ROOT

# what a model repository takes from the model folder (True: required; False: copied when the folder has it); its
# code (checkpoint.CODE_FILES) comes from the repository root instead, with the `auto_map` written into its config.json
MODEL_FILES = {
    "config.json": True,
    "model.safetensors": True,
    "generation_config.json": False,  # written from the model if the folder lacks it
    "tokenizer.json": True,
    "tokenizer_config.json": True,
    "special_tokens_map.json": False,
    METRICS_FILE: False,
    CURVE_FILE: False,
}


# what a repository of the weights as plain GPT-2 takes from the folder (config.json, model.safetensors and
# generation_config.json are written by GPT2LMHeadModel.save_pretrained instead; no code)
WRITTEN_BY_GPT2 = ("config.json", "model.safetensors", "generation_config.json")


GPT2_FILES = [*WRITTEN_BY_GPT2, *(name for name in MODEL_FILES if name not in WRITTEN_BY_GPT2)]


def check_repo_id(repo_id: str) -> str:
    """`owner/name`, valid for the Hub, or a UsageError (the model card's snippet needs the full id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UsageError(f"{repo_id!r} is not a valid Hub repo id: {str(e).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise UsageError(f"the repo id must be owner/name (your user or organisation, then the name), got {repo_id!r}")
    return repo_id


def check_model_folder(folder: str | Path):
    """The folder's model and tokenizer, or a UsageError saying why it cannot be published as it is."""
    folder = Path(folder)
    model, tokenizer = load_model_folder(folder)  # not a folder, not GPT-2 mini, no weights, no tokenizer ...
    for name, required in MODEL_FILES.items():
        if required and not (folder / name).is_file():
            raise UsageError(f"{folder} has no {name}: re-save it with this project's save_pretrained")
    return model, tokenizer


def run_state(folder: Path) -> dict:
    """trainer_state.json of a train.py run folder, or else the training.json experiments.ablate ships with a model (its
    settings, step and command); {} for a folder with neither."""
    for name in (STATE_FILE, "training.json"):
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
    return {}


def requirement(name: str) -> str:
    """The version range requirements.txt gives `name` (e.g. "transformers>=5.24,<6")."""
    from packaging.requirements import Requirement

    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and Requirement(line).name == name:
            return line
    return name
