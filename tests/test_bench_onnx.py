"""bench/onnx.py: the decode step in ONNX Runtime against DecodeStep, on the same work."""

import pytest
import torch

from bench import onnx as bench_onnx
from bench.contenders import build
from gpt2mini.generation.step import DecodeStep
from gpt2mini.generation.stream import TokenStream


def test_the_exported_step_computes_what_decode_step_computes():
    """OnnxStep in torch, on the cache of a stream: the same logits, and the key and value DecodeStep writes."""
    model = build("gpt2mini").eval()
    stream = TokenStream(model, [list(range(1, 9))], temperature=0)
    stream.take(30)
    cache, n = stream.cache, stream.cache.length
    keys = torch.stack([c[0, :, :n, 1].transpose(0, 1) for c in cache.qkv], dim=1)
    values = torch.stack([c[0, :, :n, 2].transpose(0, 1) for c in cache.qkv], dim=1)
    token, position = torch.tensor([7]), torch.tensor([n])
    with torch.inference_mode():
        logits, k, v = bench_onnx.OnnxStep(model)(token, position, keys, values)
        want = DecodeStep(model)(token, position, cache)
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)
    written = torch.stack([c[0, :, n, 1] for c in cache.qkv])
    torch.testing.assert_close(k, written, atol=1e-6, rtol=0)


def test_it_checks_the_logits_then_times_both(capsys):
    pytest.importorskip("onnxruntime")
    assert bench_onnx.main(["--cached", "16", "--steps", "3", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "same logits" in out and "ONNX Runtime:" in out and "TorchScript / ONNX Runtime time" in out


def test_a_bad_setting_is_one_line(capsys):
    assert bench_onnx.main(["--cached", "300"]) == 2
    assert "--cached 1-255" in capsys.readouterr().err
