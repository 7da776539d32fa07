"""GPT-2 mini's library. Importing it (any of its modules) registers the model with transformers' Auto classes.

A model folder holds weights, config, tokenizer and training records, and no code: `AutoConfig`,
`AutoModelForCausalLM` and `pipeline` build this project's classes for `model_type: gpt2mini` once this package is
imported, without `trust_remote_code`. With the classes registered here, transformers prefers them even where a
folder (an older save) or a published repository carries its own copies and `trust_remote_code=True` is passed:
they are not transformers' own classes, so they count as explicit local code. The repository that publishing
assembles (`gpt2mini.hub.repo`) carries the two model files and an `auto_map`, for a Hub user with no project code.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from configuration_gpt2mini import GPT2MiniConfig
from modeling_gpt2mini import GPT2MiniForCausalLM


def register_auto_classes() -> None:
    """`AutoConfig` and `AutoModelForCausalLM` build GPT2MiniConfig and GPT2MiniForCausalLM for `gpt2mini`. Calling
    it again (or after another registration of the same name) registers the same classes again: no error."""
    AutoConfig.register(GPT2MiniConfig.model_type, GPT2MiniConfig, exist_ok=True)
    AutoModelForCausalLM.register(GPT2MiniConfig, GPT2MiniForCausalLM, exist_ok=True)


register_auto_classes()
