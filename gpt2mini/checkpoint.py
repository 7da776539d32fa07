"""Run folders: where a model and its training live on disk, written atomically and checked when read.

A run folder is a Hugging Face model folder (`config.json`, `model.safetensors`, the tokenizer) plus what train.py
keeps beside it: the metrics log (`metrics.jsonl`), the loss curve (`loss_curve.png`), and what `--resume` needs
(`trainer_state.json`, `optimizer.safetensors`; no pickle). It holds no code and no `auto_map`: importing `gpt2mini`
registers the model's classes (only the repository publishing assembles carries the two model files).

What is notable:
- `atomic_save` writes the new folder beside the old one and swaps it in with two renames, so a crash, Ctrl-C or
  SIGKILL never leaves a half-written folder; `recover_interrupted_save` undoes what a killed save left behind, and
  leaves alone the folders of a save still in progress.
- `load_model_folder` checks everything before it trusts it (the config's values, complete and finite weights that
  match the config, the SHA-256 train.py recorded, a tokenizer that belongs to the model) and says in one line which
  file is at fault. A folder saved before model folders stopped holding code still loads; its copies of the model
  code are never run.
- Every problem a user can fix is a `UsageError`: one line, exit code 2, nothing written.

train.py, the studies (experiments/), the lab and publish.py all read and write run folders through this module; none
of them imports another to do so.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from configuration_gpt2mini import GPT2MiniConfig
from modeling_gpt2mini import GPT2MiniForCausalLM

MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "loss_curve.png"


# the model's two files, at the repository root: what publishing copies into a model repository
CODE_FILES = ("configuration_gpt2mini.py", "modeling_gpt2mini.py")


# what a save writes; anything else in a checkpoint folder is the user's, and a save moves it into the new folder
SAVED_NAMES = frozenset(
    {"config.json", MODEL_FILE, "generation_config.json", TOKENIZER_FILE, "tokenizer_config.json"}
    | {"special_tokens_map.json", STATE_FILE, OPTIMIZER_FILE, METRICS_FILE, CURVE_FILE}
)


# what saves wrote before model folders stopped holding code (up to commit 17ae234: save_pretrained copied the two
# model files next to the weights). They are not the user's: this project's save wrote them, and rewrote them at every
# save, so no edit of a user's could outlive the next save; their text is the model code of that commit, kept in git.
# A save into such a folder therefore does not carry them into the new folder (nor the `auto_map` in its config.json,
# which the new config.json no longer has); it deletes them with the previous folder, as it always did.
FORMERLY_SAVED_NAMES = frozenset(CODE_FILES)


class UsageError(Exception):
    """A mistake in what the user asked for, or a file they named that cannot be used: one line, exit code 2."""


class SaveError(Exception):
    """A save that failed while it wrote (a full disk, say): one line, exit code 1, the previous checkpoint intact."""


# ---------------------------------------------------------------------------------------------------------------------
# Writing a folder atomically


def _siblings(out_dir: Path, kind: str) -> list[Path]:
    return sorted(out_dir.parent.glob(f".{out_dir.name}.{kind}-*"))


def _alive(path: Path) -> bool:
    """Whether the process that named a `.partial-PID` / `.old-PID` folder is still running (its save is not over)."""
    try:
        pid = int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # this process is not inside a save while it recovers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def recover_interrupted_save(out_dir: Path) -> None:
    """Undo what a save killed half-way may have left: a stray partial folder, or the old folder moved aside.

    Folders of a process that is still running are left alone: its save is in progress, not interrupted."""
    out_dir = Path(out_dir)
    if not out_dir.parent.exists():
        return
    for partial in _siblings(out_dir, "partial"):
        if not _alive(partial):
            shutil.rmtree(partial, ignore_errors=True)
    for old in _siblings(out_dir, "old"):
        if _alive(old):
            continue
        if not out_dir.exists():
            os.replace(old, out_dir)  # killed between the two renames: the previous save comes back
        else:
            retire(old, out_dir)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file beside `path`, then rename it over `path`: a reader sees the old file or the new one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save(out_dir: Path, write: Callable[[Path], None]) -> None:
    """Write a folder with `write(tmp)` next to `out_dir`, then swap it in. Readers never see a half-written folder;
    if anything fails before the swap, the previous folder is untouched and nothing is left beside it.

    Only a new path, an empty folder or a GPT-2 mini checkpoint is replaced (anything else is a UsageError, before
    anything is written), and what the user keeps in a checkpoint folder (files a save does not write) moves into the
    new one: a save never deletes what it (or an earlier version of it) did not write.

    What a kill (even SIGKILL) can leave at each point, and what `recover_interrupted_save` makes of it on the next
    load or save: during `write`, a `.partial-PID` folder (deleted: it holds only what `write` wrote); between the two
    renames, the previous folder as `.old-PID` and no `out_dir` (moved back); after them, a stale `.old-PID` (the
    user's files in it move into `out_dir`, then it is deleted)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(out_dir)
    check_replaceable(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(tmp)
        swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap(new: Path, out_dir: Path) -> None:
    """Put the finished folder `new` in the place of `out_dir` with two renames, then retire the previous one. If a
    rename fails (a mount point cannot be renamed, for one), the previous folder is where it was."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        os.replace(out_dir, old)
    try:
        os.replace(new, out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        raise
    _fsync_dir(out_dir.parent)
    if old.exists():
        retire(old, out_dir)


def retire(old: Path, out_dir: Path) -> None:
    """Delete a replaced checkpoint folder, after moving into `out_dir` every entry a save does not write (nor
    wrote before: FORMERLY_SAVED_NAMES)."""
    for entry in old.iterdir():
        if entry.name not in SAVED_NAMES | FORMERLY_SAVED_NAMES and not (out_dir / entry.name).exists():
            os.replace(entry, out_dir / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(out_dir: Path) -> None:
    """A UsageError unless a save may put a new folder at `out_dir`: a new path, an empty folder, or a checkpoint."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file, not a folder: save into a new or empty folder")
    if not out_dir.is_dir():
        return
    if os.path.ismount(out_dir):
        raise UsageError(
            f"{out_dir} is a mount point, which a save cannot replace: save into a folder inside it, "
            f"e.g. {out_dir / 'run'}"
        )
    entries = sorted(p.name for p in out_dir.iterdir())
    if entries and not is_checkpoint(out_dir):
        listed = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise UsageError(
            f"{out_dir} already holds files that are not a GPT-2 mini checkpoint ({listed}): nothing was written; "
            "save into a new or empty folder"
        )


def is_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a GPT-2 mini model (its config.json says model_type gpt2mini)."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "gpt2mini"
    except (OSError, ValueError, AttributeError):
        return False


def check_save_target(out_dir: Path, need_bytes: int) -> None:
    """Before a run: refuse, in one line, a folder a save would damage or could not write (see `check_replaceable`),
    a place that cannot be written, or a disk without room for one checkpoint of `need_bytes`."""
    out_dir = Path(out_dir)
    recover_interrupted_save(out_dir)
    check_replaceable(out_dir)
    anchor = out_dir.parent
    while not anchor.exists():  # the folders a save would create: judge the first one that exists
        anchor = anchor.parent
    try:
        with tempfile.TemporaryFile(dir=anchor):
            pass
    except OSError as e:
        raise UsageError(f"cannot save to {out_dir}: {anchor} cannot be written ({e.strerror or e})") from None
    free = shutil.disk_usage(anchor).free
    if free < need_bytes:
        raise UsageError(
            f"cannot save to {out_dir}: one checkpoint needs about {need_bytes / 1e6:,.0f} MB and {anchor} has "
            f"{free / 1e6:,.0f} MB free"
        )


@contextlib.contextmanager
def save_lock(out_dir: Path):
    """Held while one process trains into `out_dir`: a second one is refused at once instead of racing it (the last
    writer would win). The lock is a `.NAME.lock` file beside the folder, removed when the run ends."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    path = out_dir.parent / f".{out_dir.name}.lock"
    with open(path, "a+") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UsageError(f"{out_dir} is being trained into by {holder}: wait for it, or save elsewhere") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------------
# Reading and checking a folder


# the largest JSON files a loader reads: a GPT-2 mini tokenizer.json holds one entry per character of its corpus (the
# shipped ones are under 100 KB), the others a few fields; anything larger is refused before it is read or parsed
MAX_JSON_BYTES = {TOKENIZER_FILE: 16_000_000}
MAX_OTHER_JSON_BYTES = 1_000_000


def read_json(path: Path) -> dict:
    """The JSON object in `path`, or a UsageError naming the file (also one too large to be what it claims)."""
    path = Path(path)
    limit = MAX_JSON_BYTES.get(path.name, MAX_OTHER_JSON_BYTES)
    try:
        size = path.stat().st_size
        if size > limit:
            raise UsageError(
                f"{path} is {size / 1e6:,.1f} MB, more than any GPT-2 mini {path.name} (at most "
                f"{limit / 1e6:,.0f} MB): not reading it"
            )
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (a damaged file?)") from None
    except ValueError as e:
        raise UsageError(f"{path} is not valid JSON ({e})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a JSON object")
    return data


def one_line(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(folder: Path, names: tuple[str, ...]) -> None:
    """Compare files with the SHA-256 that train.py recorded in trainer_state.json when it saved them (folders that
    train.py did not write, such as the shipped fp16 models or a Hub download, have no record and are not checked).
    Safetensors has no checksum of its own: without this, a flipped byte inside a tensor would load silently."""
    try:
        recorded = json.loads((folder / STATE_FILE).read_text()).get("sha256") or {}
    except (OSError, ValueError, AttributeError):
        return  # no record (or a damaged state file, which --resume reports by name)
    for name in names:
        want = recorded.get(name) if isinstance(recorded, dict) else None
        if want and (folder / name).is_file() and sha256_of(folder / name) != want:
            raise UsageError(
                f"{folder / name} is damaged: its SHA-256 differs from the one train.py recorded in {STATE_FILE} "
                "when it saved it"
            )


@contextlib.contextmanager
def _quiet_transformers():
    """No load report or progress bar from transformers: a problem becomes our own one-line message instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_config(folder: Path, raw: dict):
    """The folder's GPT2MiniConfig, or a UsageError naming config.json and the field that is wrong."""
    try:
        with _quiet_transformers():
            return GPT2MiniConfig.from_pretrained(folder)
    except Exception as e:  # transformers and huggingface_hub validate with their own exception types
        message = one_line(e)
        if not isinstance(e, ValueError) or message.startswith("Class validation"):
            # transformers' token-id check runs before the config's own validation and cannot name the field;
            # build the config again without the token ids to get the config's own message
            try:
                GPT2MiniConfig(**(raw | {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}))
            except Exception as own:
                message = one_line(own)
        raise UsageError(f"{folder / 'config.json'} has an invalid value: {message}") from None


def _weights_problem(info: dict) -> str | None:
    """What `from_pretrained`'s loading info says is wrong between the weights and the config, in one phrase."""

    def listed(keys) -> str:
        keys = sorted(keys)
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        name, in_file, expected = mismatched[0]
        return f"{name} is {tuple(in_file)} in the file but {tuple(expected)} for the config" + (
            f" (and {len(mismatched) - 1} more tensors differ)" if len(mismatched) > 1 else ""
        )
    if info.get("missing_keys"):
        return f"tensors missing from the file: {listed(info['missing_keys'])}"
    if info.get("unexpected_keys"):
        return f"tensors the config has no place for: {listed(info['unexpected_keys'])}"
    if info.get("error_msgs"):
        return "; ".join(str(m).splitlines()[0] for m in info["error_msgs"])
    return None


def check_sizes(config: GPT2MiniConfig, weights: Path, config_file: Path) -> None:
    """Compare config.json's sizes with the tensor shapes in model.safetensors' header, which is read without loading
    a tensor. A size that does not match is one line naming config.json, before any memory is spent on it (a config
    that says n_embd 20000 or n_layer 100000 would otherwise be allocated first)."""
    try:
        with safe_open(weights, "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise UsageError(f"cannot load {weights}: damaged or truncated ({one_line(e)})") from None
    wte = shapes.get("transformer.wte.weight")
    if wte is None or len(wte) != 2:
        raise UsageError(f"{weights} has no transformer.wte.weight (not a GPT-2 mini model's weights?)")
    found = {"vocab_size": (wte[0], "transformer.wte.weight"), "n_embd": (wte[1], "transformer.wte.weight")}
    for field, name, needed in (
        ("n_positions", "transformer.wpe.weight", config.use_position_embeddings),
        ("inner_dim", "transformer.h.0.mlp.c_fc.weight", config.use_mlp),
    ):
        if needed and name in shapes:
            found[field] = (shapes[name][0], name)
    if "inner_dim" in found and config.mlp_style == "swiglu":  # SwiGLU's c_fc makes gate|up: twice its width
        rows, name = found["inner_dim"]
        found["inner_dim"] = (rows // 2 if rows % 2 == 0 else rows / 2, name)
    layers = {int(m[1]) for k in shapes if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if layers:
        found["n_layer"] = (max(layers) + 1, f"transformer.h.{max(layers)}")
    wrong = [
        f"{k} {getattr(config, k):,}, but {name} " + (f"is {shapes[name]}" if name in shapes else "is its last layer")
        for k, (v, name) in found.items()
        if getattr(config, k) != v
    ]
    if wrong:
        raise UsageError(f"{config_file} does not match {weights}: it says " + "; ".join(wrong))


def load_model_folder(folder: str | Path, device: torch.device | None = None):
    """Model and tokenizer from a saved folder, or a UsageError that names the file at fault.

    Checked: config.json is a GPT-2 mini config with valid values; every JSON file parses; model.safetensors is
    complete (not truncated, a readable header), matches the config tensor for tensor (no missing, extra or
    differently shaped tensors), holds only finite numbers and, in a folder train.py saved, has the SHA-256 it was
    saved with; tokenizer.json loads and belongs to the model (same vocabulary size and special-token ids). The
    model code is this project's: copies of the model files in a folder saved by an earlier version (which also has
    an `auto_map`) are never run, and the config drops its `auto_map`, so a save of this model writes none."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    recover_interrupted_save(folder)
    if not folder.is_dir():
        raise UsageError(f"no model folder at {folder}")
    config_file, weights, tok_file = folder / "config.json", folder / MODEL_FILE, folder / TOKENIZER_FILE
    if not config_file.exists():
        raise UsageError(f"{folder} is not a GPT-2 mini model folder (no config.json)")
    raw = read_json(config_file)
    if raw.get("model_type") != "gpt2mini":
        raise UsageError(f"{config_file} is not a GPT-2 mini config (model_type must be 'gpt2mini')")
    if not weights.exists():
        raise UsageError(f"{folder} has no {MODEL_FILE}")
    if not tok_file.exists():
        raise UsageError(f"{folder} has no {TOKENIZER_FILE} (save the tokenizer next to the model)")
    for name in (TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if (folder / name).exists():
            read_json(folder / name)  # a damaged file is named here, not deep inside a library
    config = load_config(folder, raw)
    check_sizes(config, weights, config_file)  # before a model of config.json's sizes is built
    try:
        with _quiet_transformers():
            model, info = GPT2MiniForCausalLM.from_pretrained(
                folder, config=config, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except SafetensorError as e:
        raise UsageError(f"cannot load {weights}: damaged or truncated ({one_line(e)})") from None
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise UsageError(f"cannot load {weights}: {one_line(e)}") from None
    problem = _weights_problem(info)
    if problem:
        raise UsageError(f"{weights} does not match {config_file}: {problem}")
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise UsageError(f"{weights}: {name} holds NaN or infinite values (a damaged file, or a diverged run)")
    verify_checksums(folder, (MODEL_FILE,))  # what is left: damage that still parses, e.g. one flipped byte
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # the tokenizers library raises its own exception types
        raise UsageError(f"cannot load {tok_file}: {one_line(e)}") from None
    if len(tokenizer) != model.config.vocab_size:
        raise UsageError(
            f"{folder}: tokenizer.json has {len(tokenizer)} tokens but the model's vocabulary is "
            f"{model.config.vocab_size} (config.json): they do not belong together"
        )
    for which in ("bos_token_id", "eos_token_id", "pad_token_id"):
        ours, theirs = getattr(model.config, which, None), getattr(tokenizer, which, None)
        if ours is not None and theirs is not None and ours != theirs:
            raise UsageError(
                f"{folder}: tokenizer.json has {which} {theirs} but config.json has {ours}: they do not belong together"
            )
    return (model.to(device) if device is not None else model), tokenizer


# ---------------------------------------------------------------------------------------------------------------------
# A training run's files


def save_run(out_dir, model, tokenizer, state: dict, metrics: list[dict], resume_tensors: dict) -> None:
    """Save a run folder atomically: the model folder (`save_pretrained` + tokenizer), the state and the tensors
    `--resume` needs (with their SHA-256 recorded in the state file), the metrics log and the loss curve."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar inside ours

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_file(resume_tensors, tmp / OPTIMIZER_FILE)
        # safetensors has no checksum of its own: record one, so that a damaged file is caught when loaded
        sums = {name: sha256_of(tmp / name) for name in (MODEL_FILE, OPTIMIZER_FILE)}
        (tmp / STATE_FILE).write_text(json.dumps(state | {"sha256": sums}, indent=2, ensure_ascii=False))
        with open(tmp / METRICS_FILE, "w") as f:
            for row in metrics:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        plot_losses(metrics, tmp / CURVE_FILE, title=state.get("title", ""))

    try:
        atomic_save(Path(out_dir), write)
    except OSError as e:  # a full disk, a quota, a folder gone read-only: the previous folder is untouched
        raise SaveError(f"cannot save {out_dir}: {e.strerror or e}") from None


def plot_losses(metrics: list[dict], path: Path, title: str = "") -> None:
    """Training loss (per logged step) and evaluated train/validation loss against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    logged = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    if logged:
        ax.plot([m["step"] for m in logged], [m["loss"] for m in logged], lw=0.8, alpha=0.5, label="batch loss")
    if evals:
        ax.plot([m["step"] for m in evals], [m["train_loss"] for m in evals], "o-", ms=3, label="train (eval)")
        ax.plot([m["step"] for m in evals], [m["val_loss"] for m in evals], "o-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / character)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def read_metrics(folder: str | Path) -> list[dict]:
    """The rows of a run folder's metrics log (none if it has no log), or a UsageError naming the line that is not
    a JSON object."""
    path = Path(folder) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (a damaged file?)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise UsageError(f"{path}, line {number}, is not a JSON object (a damaged log?)")
        rows.append(row)
    return rows


def read_state(folder: str | Path) -> dict:
    folder = Path(folder)
    recover_interrupted_save(folder)
    if not (folder / STATE_FILE).exists() or not (folder / OPTIMIZER_FILE).exists():
        raise UsageError(
            f"cannot resume from {folder}: no {STATE_FILE} and {OPTIMIZER_FILE} there (a folder saved "
            "by train.py is needed)"
        )
    state = read_json(folder / STATE_FILE)
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 or not isinstance(state.get("settings"), dict):
        raise UsageError(f"{folder / STATE_FILE} has no valid 'step' and 'settings' (a damaged file?)")
    return state


def load_resume_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """optimizer.safetensors (optimizer moments and RNG states), or a UsageError naming it."""
    path = Path(folder) / OPTIMIZER_FILE
    try:
        tensors = load_file(path)
    except SafetensorError as e:
        raise UsageError(f"cannot load {path}: damaged or truncated ({one_line(e)})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    verify_checksums(Path(folder), (OPTIMIZER_FILE,))
    return tensors
