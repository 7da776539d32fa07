"""Publish GPT-2 mini on the Hugging Face Hub: a trained model as a model repository, or the lab as a Gradio Space.

    python publish.py runs/shakespeare --repo-id you/gpt2mini-shakespeare             # assemble and upload
    python publish.py models/wagahai/baseline --repo-id you/gpt2mini-wagahai --dry-run  # list what would be sent
    python publish.py runs/shakespeare --repo-id you/gpt2mini-shakespeare --out repo   # also keep the folder
    python publish.py runs/shakespeare --repo-id you/gpt2-shakespeare --as-gpt2        # the weights as plain GPT-2
    python publish.py --space you/gpt2mini-lab                                        # the lab as a Space
    python train.py --push-to-hub you/gpt2mini-shakespeare                             # train, then the same upload

This file is the program: its options, and the calls into gpt2mini/hub/, which does the work: the repository is
assembled from the model folder (weights, config, tokenizer, training log) and this repository's two model files
with `auto_map` (repo.py), with a model card generated from the folder's files (card.py, the data's provenance in
provenance.py), or the lab as a Space (space.py), then sent in one commit (upload.py); --dry-run lists
that same set of files and contacts nobody. A mistake (not a GPT-2 mini folder, a missing tokenizer, a bad repo id,
not logged in, offline) is one line on stderr and exit code 2, before anything is sent or written; a failure on the
Hub's side is one line and exit code 1.
"""

import argparse
import sys

from gpt2mini.checkpoint import UsageError
from gpt2mini.hub.upload import PublishError, publish_model, publish_space
from gpt2mini.paths import MODELS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Publish a GPT-2 mini model folder as a Hugging Face model repository, or the lab as a Space.",
    )
    p.add_argument(
        "model_dir", nargs="?", metavar="MODEL_DIR", help="a model folder saved by train.py or a study (experiments/)"
    )
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
