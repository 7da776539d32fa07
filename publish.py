"""Publish GPT-2 mini on the Hugging Face Hub: a trained model as a model repository, or the lab as a Gradio Space.

    python publish.py runs/shakespeare --repo-id you/gpt2mini-shakespeare             # assemble and upload
    python publish.py models/wagahai/baseline --repo-id you/gpt2mini-wagahai --dry-run  # list what would be sent
    python publish.py runs/shakespeare --repo-id you/gpt2mini-shakespeare --out repo   # also keep the folder
    python publish.py --space you/gpt2mini-lab                                        # the lab as a Space
    python train.py --push-to-hub you/gpt2mini-shakespeare                             # train, then the same upload

What is notable:
- The model repository is assembled from the model folder alone: the files `save_pretrained` wrote (config.json with
  `auto_map`, model.safetensors, generation_config.json, the tokenizer, the two model files), the training log and
  loss curve, and a README.md model card generated from them (architecture next to GPT-2 small, the ablation
  switches, data and recipe, the measured validation loss, a usage snippet, limitations). The resume state
  (trainer_state.json, optimizer.safetensors) stays behind: it is for `train.py --resume`, not for Hub users.
- The card is a Markdown template, `MODEL_CARD` (the Space's is `SPACE_CARD`): read it to see the card's shape. Small
  functions fill its placeholders from the folder's files (config.json, metrics.jsonl, trainer_state.json with the
  settings and the `command` train.py recorded, the tokenizer), the shipped corpora and data/PROVENANCE.md, and the
  switch registry (`configuration_gpt2mini.SWITCHES`); nothing in it is written for one particular model.
- The Space holds app.py and exactly the project modules it imports (found by reading the imports), the models/
  tree, the corpus files the Knockout tab reads, a requirements.txt pinned to the versions installed here (CPU
  torch), and a README.md with the Space front matter (`sdk: gradio`, `sdk_version` = the installed Gradio).
- One upload path for both: `create_repo(exist_ok=True)`, then a single `create_commit` with one
  `CommitOperationAdd` per file of the assembled folder; `--dry-run` prints that same list and contacts nobody.
- A mistake (not a GPT-2 mini folder, a missing tokenizer, a bad repo id, not logged in, offline) is one line on
  stderr and exit code 2, before anything is sent or written; a failure on the Hub's side is one line and exit 1.
"""

import argparse
import sys

from gpt2mini.checkpoint import (
    UsageError,
)
from gpt2mini.hub.upload import PublishError, publish_model, publish_space
from gpt2mini.paths import MODELS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Publish a GPT-2 mini model folder as a Hugging Face model repository, or the lab as a Space.",
    )
    p.add_argument("model_dir", nargs="?", metavar="MODEL_DIR", help="a model folder saved by train.py or ablate.py")
    p.add_argument("--repo-id", "--repo_id", dest="repo_id", metavar="OWNER/NAME", help="the model repository")
    p.add_argument("--space", metavar="OWNER/NAME", help="publish the lab (app.py and models/) as this Gradio Space")
    p.add_argument("--models", default=str(MODELS_DIR), help="with --space: the <corpus>/<variant> models to ship")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the `hf auth login` cache)")
    p.add_argument("--revision", metavar="BRANCH", help="commit to this branch (created if missing; default: main)")
    p.add_argument("--message", "-m", help="commit message")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="list the files; send nothing")
    p.add_argument("--out", metavar="DIR", help="also keep the assembled folder here (a new folder)")
    p.add_argument(
        "--as-gpt2",
        "--as_gpt2",
        dest="as_gpt2",
        action="store_true",
        help="publish the model as plain GPT-2 (GPT2LMHeadModel, model_type gpt2, no custom code); baseline only",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    options = dict(
        token=args.token,
        private=args.private,
        revision=args.revision,
        message=args.message,
        dry_run=args.dry_run,
        out=args.out,
    )
    try:
        if args.space:
            if args.model_dir or args.repo_id or args.as_gpt2:
                raise UsageError("--space publishes the lab; publish a model folder in a separate command")
            publish_space(args.space, models_dir=args.models, **options)
        else:
            if not args.model_dir or not args.repo_id:
                raise UsageError("give a model folder and --repo-id OWNER/NAME (or --space OWNER/NAME for the lab)")
            publish_model(args.model_dir, args.repo_id, plain_gpt2=args.as_gpt2, **options)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
