"""Exported graphs compute what the eager model computes, padding included: torch.export with dynamic batch and
length, ONNX (the dynamo exporter) run in ONNX Runtime, and the legacy TorchScript tracer. The masks are built
without branching on the values of the attention mask, so one graph serves every padding pattern."""

import pytest
import torch

from conftest import sharpen, tiny_model

IDS = torch.tensor([[0, 0, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8, 9], [0, 0, 0, 0, 0, 8, 9]])
MASK = (torch.arange(7)[None] >= torch.tensor([[2], [0], [5]])).long()


class Logits(torch.nn.Module):
    """The model as a function of (input_ids, attention_mask) alone, as exporters see it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


@pytest.fixture(scope="module")
def model():
    return Logits(sharpen(tiny_model(pad_token_id=0))).eval()


def example():
    """An unpadded example of another shape: the graph must not keep its batch, its length or its (absent) padding."""
    return torch.tensor([[3, 4, 5, 6, 7]]).repeat(2, 1), torch.ones(2, 5, dtype=torch.long)


def dynamic():
    batch, length = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("length", min=2, max=64)
    return {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}


def test_torch_export_with_a_mask_equals_eager_on_a_left_padded_batch(model):
    program = torch.export.export(model, example(), dynamic_shapes=dynamic())
    with torch.no_grad():
        torch.testing.assert_close(program.module()(IDS, MASK), model(IDS, MASK), atol=1e-5, rtol=0)
        torch.testing.assert_close(program.module()(IDS[1:], MASK[1:]), model(IDS[1:], MASK[1:]), atol=1e-5, rtol=0)


def test_onnx_in_onnx_runtime_equals_eager_on_a_left_padded_batch(model, tmp_path):
    import onnxruntime

    torch.onnx.export(model, example(), tmp_path / "model.onnx", dynamo=True, dynamic_shapes=dynamic())
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx", providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    (logits,) = session.run(None, {"input_ids": IDS.numpy(), "attention_mask": MASK.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(IDS, MASK), atol=1e-4, rtol=0)


def test_the_legacy_tracer_keeps_the_padding_it_did_not_see(model):
    # traced with no padding at all; the old mask code branched on attention_mask.all() and the trace kept that branch
    with torch.no_grad():
        traced = torch.jit.trace(model, (IDS[1:], torch.ones_like(IDS[1:])), check_trace=False)
        torch.testing.assert_close(traced(IDS, MASK), model(IDS, MASK), atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", ["transformer-2017", "llama"])  # between them, every lineage switch
def test_the_lineage_exports_to_onnx_and_equals_eager(preset, tmp_path):
    import onnxruntime

    from configuration_gpt2mini import PRESETS

    model = Logits(sharpen(tiny_model(pad_token_id=0, **PRESETS[preset]))).eval()
    program = torch.export.export(model, example(), dynamic_shapes=dynamic())
    torch.onnx.export(model, example(), tmp_path / "model.onnx", dynamo=True, dynamic_shapes=dynamic())
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx", providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input_ids": IDS.numpy(), "attention_mask": MASK.numpy()})
    with torch.no_grad():
        eager = model(IDS, MASK)
        torch.testing.assert_close(program.module()(IDS, MASK), eager, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.from_numpy(logits), eager, atol=1e-4, rtol=0)
