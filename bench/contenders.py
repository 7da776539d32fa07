"""The two models the benchmarks compare, built alike: GPT-2 mini (any preset) and transformers' GPT2LMHeadModel at
the same size, randomly initialised the same way for the same seed."""


def model_config(n_positions=256, vocab=65):
    return dict(n_layer=4, n_head=4, n_embd=128, n_positions=n_positions, vocab_size=vocab)


def build(kind: str, n_positions: int = 256, device="cpu", seed: int = 0, preset: str = "gpt2"):
    """One of the two models (GPT-2 mini as one of configuration_gpt2mini.PRESETS), randomly initialised the same way
    for the same seed."""
    import torch

    torch.manual_seed(seed)
    if kind == "gpt2mini":
        from configuration_gpt2mini import PRESETS, GPT2MiniConfig
        from modeling_gpt2mini import GPT2MiniForCausalLM

        p = 0.0
        cfg = GPT2MiniConfig(**model_config(n_positions), embd_pdrop=p, attn_pdrop=p, resid_pdrop=p, **PRESETS[preset])
        model = GPT2MiniForCausalLM(cfg)
    elif kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            **model_config(n_positions), embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, bos_token_id=0, eos_token_id=0
        )
        cfg._attn_implementation = "sdpa"
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(kind)
    return model.to(device)
