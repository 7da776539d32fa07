"""bench/speed.py's smoke run: every contender of every section is measured and reported against its peer."""

import json
import subprocess
import sys

import pytest
import torch

from bench import speed as bench
from conftest import ROOT


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "bench.speed", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, [json.loads(line) for line in out.read_text().splitlines()]


def test_every_section_and_contender_is_measured(quick):
    stdout, rows = quick
    train = {r["contender"] for r in rows if r["section"] == "training"}
    assert train == {"GPT2MiniForCausalLM", "GPT2LMHeadModel"}
    gen = [r for r in rows if r["section"] == "generation"]
    settings = {(r["new"], r["batch"]) for r in gen}
    assert settings == {(8, 1), (8, 2), (40, 1), (40, 2)}
    contenders = {r["contender"] for r in gen}
    assert contenders == {
        "TokenStream (fast API)",
        "TokenStream, sampling",
        "GPT2Mini.generate()",
        "GPT2LMHeadModel.generate()",
        "no-cache loop",
    }
    for r in rows:
        if r["section"] in ("training", "generation"):
            assert r["median"] > 0 and len(r["rounds"]) >= 1
    # every contender but the peer carries its per-round ratios to the peer, measured in the same rounds
    for r in gen:
        if r["contender"] != bench.PEER_GENERATE:
            assert len(r["ratios"]) == len(r["rounds"])
            assert r[f"x {bench.PEER_GENERATE}"] > 0
    past = {r["positions"]: r for r in rows if r["section"] == "past the context"}
    assert set(past) == {"learned", "rotary"}  # a stream that re-encodes as it slides, and one that keeps its cache
    for r in past.values():
        assert r["first_context_chars_s"] > 0 and r["fourth_context_chars_s"] > 0 and r["late / early"] > 0
    mem = {r["contender"]: r["peak_mib"] for r in rows if r["section"] == "memory"}
    assert set(mem) == {"train GPT2MiniForCausalLM", "train GPT2LMHeadModel"}
    assert all(v > 0 for v in mem.values())
    # the JSON lines on stdout are the file's lines; then the table and the goals
    printed = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert printed == rows
    assert "| generation |" in stdout and "Goals:" in stdout
    assert "training, eager:" in stdout and "generation, fast API, batch 1" in stdout
    assert "fast API past the context, learned positions" in stdout
    assert "fast API past the context, rotary positions" in stdout


def test_the_contenders_compute_the_same_thing():
    """The generation contenders are only comparable if they produce the same greedy text from the same weights."""
    torch.manual_seed(0)
    from gpt2mini.generation.stream import TokenStream

    ours = bench.build("gpt2mini").eval()
    with torch.no_grad():
        ours.transformer.wte.weight.mul_(8)  # peaked distributions: greedy choices are not float ties
    prompt = torch.randint(0, 65, (1, 8))
    fast = TokenStream(ours, prompt, temperature=0).take(30)[0]
    generated = ours.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0)[0, 8:].tolist()
    assert fast == generated
    peer = bench.build("gpt2").eval()
    converted = type(ours).from_gpt2(peer).eval()
    x = torch.randint(0, 65, (2, 40))
    torch.testing.assert_close(converted(x).logits, peer(x).logits, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--new", "abc"], "comma-separated integers"),
        (["--only", "speed"], "unknown sections"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--context", "512"], "at most 256"),
    ],
)
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
