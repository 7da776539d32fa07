"""A model repository, assembled from a model folder: the weights, config, tokenizer and training log from the folder
(which holds no code), the two model files from the repository root with an `auto_map` added to the config (so that
`trust_remote_code=True` finds them), and a generated model card; or the same weights as plain GPT-2
(`GPT2LMHeadModel`, no code at all).
"""

import json
import shutil
from pathlib import Path

from configuration_gpt2mini import GPT2MiniConfig
from gpt2mini.checkpoint import CODE_FILES, UsageError, atomic_save
from gpt2mini.hub.card import model_card
from gpt2mini.hub.folder import GPT2_FILES, MODEL_FILES, check_model_folder, check_repo_id
from gpt2mini.paths import ROOT
from modeling_gpt2mini import GPT2MiniForCausalLM

# the Auto classes a Hub user's transformers builds from the repository's copies of the model files
AUTO_CLASSES = {"AutoConfig": GPT2MiniConfig, "AutoModelForCausalLM": GPT2MiniForCausalLM}


def write_new_folder(out: str | Path, write) -> Path:
    """Create the folder `out` (which must not exist) with checkpoint.atomic_save: written beside it, then renamed
    into place, so a failure or Ctrl-C half-way leaves no `out` behind."""
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} already exists: name a new folder (it is written whole, then kept)")
    atomic_save(out, write)
    return out


def repo_files(folder: str | Path) -> list[str]:
    """Every file under `folder`, as sorted repository paths: what an upload sends and what --dry-run lists."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def auto_map() -> dict[str, str]:
    """config.json's `auto_map`: for each Auto class, `module.Class` in the repository's copies of the model files."""
    return {auto: f"{cls.__module__}.{cls.__name__}" for auto, cls in AUTO_CLASSES.items()}


def write_config_with_code(folder: Path, dest: Path) -> None:
    """The folder's config.json with `auto_map` added (an older folder's own one replaced), written as transformers
    writes it, and the model files it names, copied from the repository root (the files this project imports, and
    so the code `check_model_folder` loaded the weights with)."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8")) | {"auto_map": auto_map()}
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in CODE_FILES:
        shutil.copyfile(ROOT / name, dest / name)


def write_model_repo(folder: str | Path, dest: Path, repo_id: str, model=None, tokenizer=None) -> None:
    """Write the model repository for `folder` into the (new, empty) folder `dest`."""
    folder = Path(folder)
    if model is None:
        model, tokenizer = check_model_folder(folder)
    for name in MODEL_FILES:
        if name != "config.json" and (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    write_config_with_code(folder, dest)
    if not (dest / "generation_config.json").exists():
        model.generation_config.save_pretrained(dest)
    (dest / "README.md").write_text(model_card(folder, repo_id, model, tokenizer))


def write_gpt2_repo(folder: str | Path, dest: Path, repo_id: str, model, tokenizer) -> None:
    """Write the model as plain GPT-2 into the (new, empty) folder `dest`: `to_gpt2()`'s save_pretrained, the
    tokenizer, the training log and curve, and its card. No code files."""
    folder = Path(folder)
    as_gpt2(model).save_pretrained(dest)
    for name in GPT2_FILES:
        if (folder / name).is_file() and not (dest / name).exists():
            shutil.copyfile(folder / name, dest / name)
    (dest / "README.md").write_text(model_card(folder, repo_id, model, tokenizer, plain_gpt2=True))


def as_gpt2(model):
    """`model.to_gpt2()`, or a UsageError naming the switch GPT-2 cannot express."""
    try:
        return model.to_gpt2()
    except ValueError as e:
        raise UsageError(f"--as-gpt2: {e}") from None


def assemble_model(folder: str | Path, out: str | Path, repo_id: str, plain_gpt2: bool = False) -> Path:
    """Check `folder`, then write its model repository (as plain GPT-2 if asked) to `out` atomically. Returns `out`."""
    check_repo_id(repo_id)
    model, tokenizer = check_model_folder(folder)
    if plain_gpt2:
        as_gpt2(model)  # refused before anything is written
        return write_new_folder(out, lambda tmp: write_gpt2_repo(folder, tmp, repo_id, model, tokenizer))
    return write_new_folder(out, lambda tmp: write_model_repo(folder, tmp, repo_id, model, tokenizer))
