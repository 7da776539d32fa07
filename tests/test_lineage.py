"""experiments/lineage.py on a tiny budget: the lineage on experiments.ablate's trials, BPE at equal compute in bits per
character, the speed table, the report, shipping, bad input."""

import json

import pytest
import torch

from conftest import ROOT
from experiments import ablate, lineage
from gpt2mini.report.records import SWEEP_KEYS, StudyResult, VariantSummary
from gpt2mini.study.ship import write_sweep_summary
from gpt2mini.study.variants import LINEAGE, NAMED
from gpt2mini.training.evaluation import bits_per_char, split_loss

TINY = ["--steps", "6", "--eval_interval", "3", "--eval_iters", "1", "--n_layer", "1", "--n_head", "2"]
TINY += ["--n_embd", "16", "--block_size", "16", "--batch_size", "2", "--warmup", "2"]
SWEEP = ["--lrs", "2e-3,8e-3", "--seeds", "2", "--extend", "0", "--sample_chars", "12"]
BPE = ["--vocabs", "300,400", "--bpe_lrs", "2e-3,8e-3", "--bpe_seeds", "2", "--bpe_extend", "0", "--speed_rounds", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    data = root / "text.txt"
    data.write_text((ROOT / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:6000], encoding="utf-8")
    where = ["--data", str(data), "--out", str(root / "out")]
    # experiments.ablate first: the lineage's GPT-1 and GPT-2 are its post-LN and baseline trials
    ablate_args = [*where, "--variants", "baseline,post_ln", *TINY, *SWEEP, "--ship", str(root / "models")]
    assert ablate.main(ablate_args) == 0
    args = [*where, "--report", str(root / "docs" / "lineage.md"), "--ship", str(root / "models"), *TINY, *SWEEP]
    assert lineage.main([*args, *BPE]) == 0
    return root, args


def test_the_lineage_reuses_ablates_trials_and_leaves_its_results_alone(run, capsys):
    root, args = run
    out = root / "out" / "text"
    assert json.loads((out / "results.json").read_text())["variants"].keys() == {"baseline", "post_ln"}
    result = json.loads((out / "lineage" / "results.json").read_text())
    assert list(result["variants"]) == LINEAGE
    assert [v["label"] for v in result["variants"].values()] == ["2017 Transformer", "GPT-1", "GPT-2", "Llama's recipe"]
    assert lineage.main([*args, *BPE]) == 0  # again: everything is reused
    err = capsys.readouterr().err
    assert "to train" in err and all(" 0 to train" in line for line in err.splitlines() if "to train" in line)


def test_bpe_arms_get_the_character_models_training_flops():
    base = lineage.TrainSettings(steps=1500)
    char_vocab = 323  # Tiny Shakespeare's 65 characters, 2 specials, 256 byte fallbacks
    target = lineage.training_flops(base, char_vocab)
    for vocab in (512, 2048, 8192):
        s = lineage.replace(base, tokenizer="bpe", vocab_size=vocab)
        s.steps = lineage.equal_compute_steps(base, char_vocab, vocab)
        one_step = lineage.training_flops(lineage.replace(s, steps=1, short_fraction=0), vocab)
        assert abs(lineage.training_flops(s, vocab) - target) <= one_step / 2  # as equal as whole steps come
    assert lineage.equal_compute_steps(base, char_vocab, 8192) < 1000  # 8192 x 128 head: dearer tokens
    # the curriculum's short windows cost less attention than full ones: counted at their own context
    full = lineage.replace(base, short_fraction=0)
    assert lineage.training_flops(base, char_vocab) < lineage.training_flops(full, char_vocab)


def test_a_bpe_vocabulary_the_text_cannot_make_is_refused_before_training():
    text = "abc abd abe " * 20
    with pytest.raises(lineage.UsageError, match="--vocabs 5000: the text makes a BPE vocabulary of only"):
        lineage.bpe_vocabulary(lineage.TrainSettings(), text, 5000)


def test_flops_per_token_counts_each_multiplying_weight_six_times_plus_attention():
    from configuration_gpt2mini import GPT2MiniConfig
    from modeling_gpt2mini import GPT2MiniForCausalLM

    cfg = dict(vocab_size=100, n_layer=2, n_head=2, n_embd=16, n_positions=32)
    tied = GPT2MiniForCausalLM(GPT2MiniConfig(**cfg))
    matmul = sum(p.numel() for n, p in tied.named_parameters() if "wpe" not in n)  # the head is wte, tied
    assert tied.flops_per_token() == 6 * matmul + 12 * 2 * 32 * 16
    untied = GPT2MiniForCausalLM(GPT2MiniConfig(**cfg, tie_word_embeddings=False))
    assert untied.flops_per_token(8) == 6 * (matmul + 0) + 12 * 2 * 8 * 16  # the lookup table multiplies nothing
    rope = GPT2MiniForCausalLM(GPT2MiniConfig(**cfg, position_style="rope"))
    assert rope.flops_per_token() == 6 * rope.num_parameters() + 12 * 2 * 32 * 16
    no_attention = GPT2MiniForCausalLM(GPT2MiniConfig(**cfg, use_attention=False))
    assert no_attention.flops_per_token() == 6 * (no_attention.num_parameters() - 32 * 16)


def test_bits_per_character_in_the_report_are_the_models_loss_over_the_held_out_text(run):
    from gpt2mini.checkpoint import load_model_folder
    from gpt2mini.corpus import train_val_split
    from gpt2mini.tokenizer import encode

    root, _ = run
    record = json.loads((root / "docs" / "lineage" / "text_results.json").read_text())
    arms = {a["tokenizer"]: a for a in record["arms"]}
    assert list(arms) == ["characters", "BPE 300", "BPE 400"]
    val = train_val_split((root / "text.txt").read_text(encoding="utf-8"), 0.1)[1]
    bpe = json.loads((root / "out" / "text" / "bpe400" / "results.json").read_text())
    folder = root / "out" / "text" / "bpe400" / bpe["variants"]["baseline"]["best_key"]
    model, tokenizer = load_model_folder(folder, "cpu")
    ids = encode(tokenizer, val)
    with torch.no_grad():
        bits = bits_per_char(split_loss(model, ids, 16), tokenizer, ids, 16)
    assert arms["BPE 400"]["bits"][0] == pytest.approx(bits, abs=1e-3)
    assert arms["BPE 400"]["vocab"] == 400 and arms["characters"]["chars_per_token"] == 1.0
    assert arms["BPE 400"]["chars_per_token"] > arms["BPE 300"]["chars_per_token"] > 1
    assert model.config.vocab_size == 400 and len(arms["BPE 400"]["bits"]) == 2


def test_report_states_the_command_links_its_figures_and_times_every_design(run):
    root, _ = run
    report = (root / "docs" / "lineage.md").read_text()
    assert "python -m experiments.lineage" in report and "--vocabs 300,400" in report
    for line in report.splitlines():
        if line.startswith("!["):
            assert (root / "docs" / line[line.index("(") + 1 : line.index(")")]).exists(), line
    for name in ("2017 Transformer", "GPT-1", "GPT-2", "Llama's recipe"):
        assert report.count(f"| {name} |") == 4  # the designs, the cost, the corpus's table and its sweep
    assert "## Characters against BPE, at equal training compute" in report
    assert "| BPE 400 | 400 |" in report


def test_speed_times_every_design_against_gpt2_in_the_same_rounds():
    base = lineage.TrainSettings(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=2)
    sp = lineage.speed(base, vocab=40, rounds=2, steps=1)
    for what in ("train", "decode"):
        assert sp[f"{what} baseline"]["x GPT-2"] == 1.0
        assert all(sp[f"{what} {n}"]["median"] > 0 for n in LINEAGE)


def test_shipped_presets_load_and_the_lab_sweep_keeps_the_ablations(run):
    from transformers import AutoModelForCausalLM

    root, _ = run
    sweep = json.loads((root / "models" / "text" / "sweep.json").read_text())
    assert set(sweep["variants"]) == {*LINEAGE}  # experiments.ablate's two, then the lineage's four, one protocol
    assert sweep["variants"]["llama"]["command"].startswith("python -m experiments.lineage ")
    for name in lineage.SHIPPED:
        model = AutoModelForCausalLM.from_pretrained(root / "models" / "text" / name)  # the registered classes
        assert model.config.ablations == NAMED[name]


def test_a_sweep_under_another_protocol_replaces_the_lab_summary(tmp_path):
    protocol = dict(corpus="x", prompt="", hardware="", wall_s=0.0, jobs=1, lrs=[1e-3], seeds=1, extend=2)
    protocol |= dict(base_seed=1, steps=5, recipe={"batch_size": 4}, command="c", reference={}, trials=[])
    blank = {k: None for k in SWEEP_KEYS} | {"best_key": None, "parameters": None}
    v = {n: VariantSummary(variant=n, **blank) for n in ("baseline", "llama")}

    def result(name, **other):
        return StudyResult(**(protocol | other), variants={name: v[name]})

    write_sweep_summary(tmp_path / "sweep.json", result("baseline"))
    write_sweep_summary(tmp_path / "sweep.json", result("llama"))
    assert list(json.loads((tmp_path / "sweep.json").read_text())["variants"]) == ["baseline", "llama"]
    for other in ({"steps": 6}, {"recipe": {"batch_size": 8}}, {"extend": 0}):
        write_sweep_summary(tmp_path / "sweep.json", result("baseline"))
        write_sweep_summary(tmp_path / "sweep.json", result("llama", **other))
        assert list(json.loads((tmp_path / "sweep.json").read_text())["variants"]) == ["llama"], other


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--vocabs", "abc"], "--vocabs takes comma-separated integers"),
        (["--vocabs", "100"], "--vocab_size must be at least"),
        (["--bpe_seeds", "0"], "--bpe_seeds must be a positive integer"),
        (["--corpus", "nope"], "unknown corpus nope"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, extra, message):
    args = ["--out", str(tmp_path / "out"), "--report", str(tmp_path / "r.md"), *TINY, *extra]
    assert lineage.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not any(tmp_path.iterdir())
