"""GPT-2 mini lab: prompt a trained model, run it next to its broken twins, and look inside.

    python app.py                              # the shipped models in models/, on http://127.0.0.1:7860
    python app.py --model runs/shakespeare     # add your own run (a folder, or a Hub repo id) next to them
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py

What is notable:
- Side by side: the chosen variants stream at once from one event (round-robin, one character each in turn), with
  the same seed, so they agree until their distributions part; each pane is highlighted from where it departs from
  the baseline, says what the variant is and where its measured loss stands (lab_story, yardsticks), and, once the
  run ends, shades each character by how likely its model found it.
- Next character: the top candidates after temperature, top-k and top-p as labelled bars, one forward pass, redrawn
  as the sliders (in the sidebar, beside every tab) move; a step button draws one character at a time.
- Attention: every layer's and head's attention over the prompt's last 64 characters, each head named by what it
  mostly reads (probes.head_pattern), one head enlarged with its characters.
- Knockout: switch off heads, attention or MLP layers, or residual connections of the trained baseline at inference
  time (on a private copy, so other users are not affected) and compare loss and samples with the intact model.
- Every request is checked by the handlers themselves (RAW_INPUTS): `check_settings` only turns the request's values
  into numbers, and generation_gpt2mini.SamplingSettings, with the sliders' LIMITS, is the one validation of them.
- The three streaming events (side by side, generate, knockout) step and pace through one generator, `paced`: an
  update after the first character, then at most every UPDATE_S, a stop at TIME_LIMIT_S, and always a final update.
- No network: the models are read from disk, Gradio's analytics are off, and no theme is fetched.
`build_demo(lab)` builds the Blocks for tests and Spaces (one function per tab, each wiring its own events);
`python app.py` launches it.
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
        lab.server = ProcessServer(threads=max(1, args.threads)).start()
        lab.server.share(lab.models())  # now, before any request thread uses them
    demo = build_demo(lab, args.queue_size)
    demo.launch(**launch_options(demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
