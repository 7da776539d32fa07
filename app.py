"""GPT-2 mini lab: prompt a trained model, run it next to its broken twins, and look inside.

    python app.py                              # the shipped models in models/, on http://127.0.0.1:7860
    python app.py --model runs/shakespeare     # add your own run (a folder, or a Hub repo id) next to them
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py

This file is the program: its options, the models loaded (gpt2mini/lab/catalog.py), the decoding process started
(gpt2mini/serving/process.py), and the lab built (gpt2mini/lab/ui.py's `build_demo`, which tests and the Space call
too) and launched. Each tab's views live in gpt2mini/lab/ (streaming, next_character, heads, knockouts, curves), its
bounds in limits.py and every sentence it says, in English and Japanese, in gpt2mini/words.py. No network: the models
are read from disk, Gradio's analytics are off, and no theme is fetched.
"""

import argparse
import sys

import torch

from gpt2mini.checkpoint import UsageError
from gpt2mini.lab.catalog import load_lab
from gpt2mini.lab.limits import GENERATING_AT_ONCE, QUEUE_SIZE
from gpt2mini.lab.ui import build_demo, launch_options
from gpt2mini.paths import MODELS_DIR
from gpt2mini.serving.process import ProcessServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The GPT-2 mini lab (Gradio). Host and port: GRADIO_SERVER_NAME, GRADIO_SERVER_PORT."
    )
    parser.add_argument("--models", default=str(MODELS_DIR), help="folder of <corpus>/<variant> model folders")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH_OR_REPO",
        help="also serve this model folder or Hub repo id (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps several streams smooth)")
    parser.add_argument(
        "--queue-size",
        type=int,
        default=QUEUE_SIZE,
        help="requests that may wait while others run; more are told at once that the queue is full",
    )
    parser.add_argument(
        "--generating",
        type=int,
        default=GENERATING_AT_ONCE,
        help="generations that run at once, their streams batched per model (more wait in the queue)",
    )
    parser.add_argument(
        "--decoding",
        choices=("process", "thread"),
        default="process",
        help="where generations are stepped: a process of its own (default; out of the page's Python lock) or a "
        "thread of this one",
    )
    args = parser.parse_args(argv)
    for flag, value in (("--queue-size", args.queue_size), ("--generating", args.generating)):
        if value < 1:
            print(f"error: {flag} must be a positive integer, got {value}", file=sys.stderr)
            return 2
    torch.set_num_threads(max(1, args.threads))
    try:
        lab = load_lab(args.models, args.model)
    except (UsageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lab.generating = args.generating
    if args.decoding == "process":
        lab.decode_with(ProcessServer(threads=max(1, args.threads)).start())  # each model registered with it, now
    demo = build_demo(lab, args.queue_size)
    demo.launch(**launch_options(demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
