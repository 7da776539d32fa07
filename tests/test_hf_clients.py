"""The model with the Hugging Face clients people train it with: transformers.Trainer (with and without gradient
checkpointing) and PEFT's LoRA (with this model's target modules, which PEFT has no default for)."""

import pytest
import torch

from conftest import sharpen, tiny_model
from gpt2mini.generation.stream import TokenStream
from modeling_gpt2mini import GPT2MiniForCausalLM

LORA_TARGETS = ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]  # as README.md and the model card give them


def windows(n: int = 8, length: int = 24) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 97, (n, length), generator=g)
    return [{"input_ids": r, "labels": r} for r in rows]


def trained_with_trainer(out_dir, gradient_checkpointing: bool) -> GPT2MiniForCausalLM:
    from transformers import Trainer, TrainingArguments

    model = tiny_model(seed=5).train()
    args = TrainingArguments(
        output_dir=str(out_dir),
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        gradient_checkpointing=gradient_checkpointing,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=windows())
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    trainer.save_model(str(out_dir / "final"))
    return model


def test_a_short_trainer_run_saves_and_reloads_with_identical_logits(tmp_path):
    before = tiny_model(seed=5)
    model = trained_with_trainer(tmp_path / "plain", gradient_checkpointing=False).eval()
    x = windows(1)[0]["input_ids"][None]
    with torch.no_grad():
        assert not torch.allclose(model(x).logits, before(x).logits)  # it trained
        reloaded = GPT2MiniForCausalLM.from_pretrained(tmp_path / "plain" / "final").eval()
        torch.testing.assert_close(reloaded(x).logits, model(x).logits, atol=0, rtol=0)


def test_the_trainer_with_gradient_checkpointing_trains_the_same_weights(tmp_path):
    plain = trained_with_trainer(tmp_path / "plain", gradient_checkpointing=False)
    checkpointed = trained_with_trainer(tmp_path / "checkpointed", gradient_checkpointing=True)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=1e-4, msg=name)


@pytest.fixture()
def lora():
    from peft import LoraConfig, get_peft_model

    base = sharpen(tiny_model(seed=2))
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS, init_lora_weights=False)
    return get_peft_model(base, config)  # non-zero adapters from the start, so that they change the output


def test_lora_trains_only_the_adapters_and_merges_to_the_same_model(lora):
    x = windows(1)[0]["input_ids"][None]
    wrapped = [n for n, _ in lora.named_modules() if n.endswith(("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"))]
    assert len(wrapped) == 4 * 2  # every projection of both layers
    lora.train()
    lora(input_ids=x, labels=x).loss.backward()
    with_grad = {n for n, p in lora.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    lora.eval()
    with torch.no_grad():
        adapted = lora(input_ids=x).logits
        plain = sharpen(tiny_model(seed=2))(x).logits
        assert not torch.allclose(adapted, plain, atol=1e-3)
        merged = lora.merge_and_unload()
        assert type(merged) is GPT2MiniForCausalLM
        torch.testing.assert_close(merged(x).logits, adapted, atol=1e-5, rtol=0)


def test_the_fast_decoder_steps_a_lora_model_through_its_modules(lora):
    model = lora.eval().get_base_model()  # GPT2MiniForCausalLM with LoRA layers inside
    x = windows(1)[0]["input_ids"][None, :10]
    fast, slow = TokenStream(model, x, temperature=0), TokenStream(model, x, temperature=0, fast=False)
    assert not fast.fast.usable()  # modules it does not compute exactly: the modules are stepped
    fast.take(8), slow.take(8)
    assert fast.history == slow.history
    torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=0)
