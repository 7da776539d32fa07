"""The decode step in ONNX Runtime against `DecodeStep` (TorchScript), on exactly the same work, interleaved.

    python -m bench.onnx                  # batch 1, the baseline design, 128 cached positions, 1 thread
    python -m bench.onnx --cached 255 --rounds 9 --threads 2

One new token of the bench model (bench.speed's: 4 layers, 4 heads, 128 dims, context 256, random weights, the
GPT-2 baseline) over a filled cache. `DecodeStep` writes the token's key and value into a `KVBuffer` and attends
over the cached positions, as `TokenStream` steps. ONNX Runtime runs the same step exported from `OnnxStep` (the
model's own modules; the cache as inputs, (positions, layers, heads, head_dim) so that the cached part is one
contiguous slice; the new key and value as outputs) with all its graph optimizations, through an IO binding to the
cache's memory, and the new key and value are copied into the cache as `DecodeStep` writes them. Both give the same
logits (checked to 1e-4 first). It prints the median time per step of each over `--rounds` rounds of `--steps`
steps, alternating which goes first, and the ratio.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python bench/onnx.py): the project's modules are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn as nn

from bench.contenders import build
from gpt2mini.generation.step import DecodeStep
from gpt2mini.generation.stream import TokenStream


class OnnxStep(nn.Module):
    """One token (1,) at `position` (1,) over cached keys and values (n, layers, heads, head_dim): the baseline
    block's arithmetic, through the model's own modules; returns the (1, V) logits and the token's keys and values
    (layers, heads, head_dim)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        cfg = model.config
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head

    def forward(self, token, position, keys, values):
        t, nh, hd = self.model.transformer, self.n_head, self.head_dim
        x = t.wte(token) + t.wpe(position)  # (1, C)
        new_keys, new_values = [], []
        for i, block in enumerate(t.h):
            q, k, v = block.attn.c_attn(block.ln_1(x)).view(3, nh, hd).unbind(0)  # (nh, hd) each
            cached = torch.einsum("hd,nhd->hn", q, keys[:, i]) * hd**-0.5  # (nh, n)
            own = (q * k).sum(-1, keepdim=True) * hd**-0.5  # (nh, 1): the token's own key
            w = torch.softmax(torch.cat([cached, own], dim=-1), dim=-1)
            y = torch.einsum("hn,nhd->hd", w[:, :-1], values[:, i]) + w[:, -1:] * v
            x = x + block.attn.c_proj(y.reshape(1, nh * hd))
            x = x + block.mlp(block.ln_2(x))
            new_keys.append(k)
            new_values.append(v)
        return self.model.lm_head(t.ln_f(x)), torch.stack(new_keys), torch.stack(new_values)


def session(model, path: Path, threads: int):
    import onnxruntime as ort

    step = OnnxStep(model).eval()
    L, nh, hd = model.config.n_layer, model.config.n_head, model.config.n_embd // model.config.n_head
    example = (torch.tensor([3]), torch.tensor([5]), torch.zeros(5, L, nh, hd), torch.zeros(5, L, nh, hd))
    n = torch.export.Dim("n", min=1, max=model.config.n_positions - 1)
    shapes = {"token": None, "position": None, "keys": {0: n}, "values": {0: n}}
    torch.onnx.export(step, example, path, dynamo=True, dynamic_shapes=shapes, optimize=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="ONNX Runtime's decode step against DecodeStep (see the docstring).")
    p.add_argument("--cached", type=int, default=128, help="positions in the cache before the step (1-255)")
    p.add_argument("--steps", type=int, default=300, help="steps per contender per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if not 1 <= args.cached <= 255 or args.steps < 1 or args.rounds < 1 or args.threads < 1:
        print("bench.onnx: error: --cached 1-255, --steps, --rounds and --threads at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    model = build("gpt2mini").eval()
    cfg = model.config
    # a filled cache: a stream of `cached` tokens (the prompt, then greedy steps)
    stream = TokenStream(model, [list(range(1, 9))], temperature=0)
    stream.take(args.cached - 8)
    cache, n = stream.cache, stream.cache.length
    token, position = torch.tensor([7]), torch.tensor([n])
    fast = DecodeStep(model)
    # the same cache in the ONNX layout: (positions, layers, heads, head_dim), n cached and one free row
    keys = torch.stack([c[0, :, :, 1].transpose(0, 1) for c in cache.qkv], dim=1).contiguous()
    values = torch.stack([c[0, :, :, 2].transpose(0, 1) for c in cache.qkv], dim=1).contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(model, Path(tmp) / "step.onnx", args.threads)
    logits_out = torch.empty(1, cfg.vocab_size)
    binding = sess.io_binding()

    def bind(bind_to, name, tensor):  # ONNX Runtime reads and writes these tensors' memory, no copies
        kind = np.int64 if tensor.dtype == torch.int64 else np.float32
        bind_to(name, "cpu", 0, kind, list(tensor.shape), tensor.data_ptr())

    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    for name, tensor in zip(inputs, (token, position, keys[:n], values[:n]), strict=True):
        bind(binding.bind_input, name, tensor)
    # the logits, and the new key and value straight into the cache's free row, as DecodeStep writes them
    for name, tensor in zip(outputs, (logits_out, keys[n], values[n]), strict=True):
        bind(binding.bind_output, name, tensor)

    def torchscript():
        with torch.inference_mode():
            return fast(token, position, cache)

    def onnxruntime_step():
        sess.run_with_iobinding(binding)
        return logits_out

    want = torchscript().clone()
    got = onnxruntime_step().clone()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    runners = {"DecodeStep (TorchScript)": torchscript, "ONNX Runtime": onnxruntime_step}
    times = {name: [] for name in runners}
    for r in range(args.rounds):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in order:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                runners[name]()
            times[name].append((time.perf_counter() - t0) / args.steps * 1e6)
    ts, ox = (statistics.median(times[k]) for k in runners)
    ratios = [a / b for a, b in zip(times["DecodeStep (TorchScript)"], times["ONNX Runtime"], strict=True)]
    print(f"# bench.onnx: batch 1, {n} cached positions, {args.threads} thread(s), onnxruntime {ort.__version__}")
    print(f"same logits: max difference {float((got - want).abs().max()):.1e}")
    print(f"DecodeStep (TorchScript): {ts:.0f} us per step; ONNX Runtime: {ox:.0f} us per step")
    print(
        f"TorchScript / ONNX Runtime time: {statistics.median(ratios):.2f} (rounds: "
        + ", ".join(f"{q:.2f}" for q in ratios)
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
