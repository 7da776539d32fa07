"""The Gradio lab through its API: the app launched on 127.0.0.1 and driven with gradio_client, as a user's script
would. Tiny random models keep it fast; the browser test (test_app_browser.py) uses the shipped ones."""

import copy
import html
import math
import os
import re
import socket
import subprocess
import sys
import time

import gradio as gr
import pytest
import torch
from gradio_client import Client

from configuration_gpt2mini import variant_label
from conftest import ROOT, raw_join, tiny_lab, tiny_model
from gpt2mini.corpus import (
    load_corpus,
    train_val_split,
)
from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.lab import streaming
from gpt2mini.lab.catalog import Entry, Lab, load_lab
from gpt2mini.lab.clients import Refused
from gpt2mini.lab.curves import training_view
from gpt2mini.lab.heads import attention_maps, attention_view, attention_zoom, zoomed_head
from gpt2mini.lab.i18n import reworded, spoken
from gpt2mini.lab.knockouts import parse_parts, passage_comparison, run_knockout
from gpt2mini.lab.limits import CALM_STREAMS, UPDATE_S
from gpt2mini.lab.next_character import next_char, next_char_table
from gpt2mini.lab.story import knocked_out
from gpt2mini.lab.streaming import (
    Piece,
    SideBySide,
    Tick,
    check_settings,
    generate_one,
    generate_panes,
    generation_settings,
    paced,
    prepare_prompt,
    update_every,
    written_html,
)
from gpt2mini.lab.ui import build_demo, launch_options
from gpt2mini.probes import knockout
from gpt2mini.tokenizer import build_tokenizer
from gpt2mini.words import ENGLISH

SETTINGS = [0.8, 40, 0.95]  # temperature, top_k, top_p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab():
    tok = build_tokenizer(load_corpus("shakespeare"))
    variants = {
        "baseline": {},
        "residual_off": {"use_residual": False},
        "attention_off": {"use_attention": False},
    }
    group = {
        name: Entry(name, tiny_model(tok, seed=i, n_positions=256, **kw), tok)
        for i, (name, kw) in enumerate(variants.items())
    }
    from conftest import SAMPLE_TEXT

    other = build_tokenizer(SAMPLE_TEXT)  # a model with a different vocabulary in the same group
    mixed = {
        "shakespeare_chars": group["baseline"],
        "sample_chars": Entry("sample_chars", tiny_model(other, n_positions=64), other),
    }
    lab = Lab({"shakespeare": group, "mixed": mixed})
    lab.passages["shakespeare"] = load_corpus("shakespeare")[-3000:]
    return lab


@pytest.fixture(scope="module")
def client(lab):
    demo = build_demo(lab)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(demo),
    )
    yield Client(url, verbose=False)
    demo.close()


def side_by_side(client, names, prompt="ROMEO:", max_new=40, seed=0, temperature=0.8):
    return client.submit(
        "shakespeare", names, prompt, temperature, 40, 0.95, max_new, 1.0, seed, api_name="/side_by_side"
    )


def test_the_api_lists_every_endpoint(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in (
        "/side_by_side",
        "/generate",
        "/next_character",
        "/attention",
        "/knockout",
        "/choose_corpus",
        "/sample_size",
    ):
        assert name in endpoints


def test_side_by_side_streams_into_several_panes(client):
    job = side_by_side(client, ["baseline", "residual_off", "attention_off"], max_new=60)
    updates = list(job)
    final = job.result()
    assert len(updates) >= 2  # streamed, not one final answer
    filled = [u for u in updates if sum(isinstance(p, str) and "gm-text" in p for p in u[1:4]) == 3]
    assert len(filled) >= 2  # several updates carried text for all three panes
    for pane, label in zip(final[1:4], ("baseline", "residual off", "attention off"), strict=True):
        assert f"<b>{label}</b>" in pane and "chars/s" in pane and "loss on its text" in pane
    assert "ROMEO:" in final[1]


def text_of(pane: str) -> str:
    return pane[pane.index("<pre") :]


def written(pane: str) -> tuple[str, str]:
    """(the text a pane wrote before it departs from the reference, the text after), tags stripped."""
    body = text_of(pane).split('<span class="gm-prompt">')[1].split("</span>", 1)[1]
    same, rest = re.split(r'<span class="gm-(?:split|diff)', body, maxsplit=1)
    return html.unescape(re.sub(r"<[^>]+>", "", same)), html.unescape(re.sub(r"<[^>]+>|^[^>]*>", "", rest))


def test_same_seed_same_text_and_each_pane_marks_where_it_departs_from_the_baseline(client):
    a = side_by_side(client, ["baseline", "baseline"], seed=7).result()
    assert text_of(a[1]) == text_of(a[2]) and "gm-split" not in a[1] + a[2]
    assert "baseline agrees so far" in a[0]
    b = side_by_side(client, ["attention_off", "baseline"], seed=7).result()
    assert "gm-split" in b[1] and "gm-split" not in b[2]  # only the variant is marked, against the baseline
    assert "departs from **baseline**" in b[0] and "departs from baseline here" in b[1]
    place = re.search(r"attention off (from the first character|at character (\d+))", b[0])
    split = 0 if place[2] is None else int(place[2]) - 1
    shared, _ = written(b[1])
    assert len(shared) == split  # the highlight starts where the status says
    baseline_text, after = written(b[2])
    assert shared == baseline_text[:split] and after == ""  # the baseline itself is not highlighted
    again = side_by_side(client, ["attention_off", "baseline"], seed=7).result()
    assert [text_of(p) for p in again[1:3]] == [text_of(p) for p in b[1:3]]
    other = side_by_side(client, ["attention_off", "baseline"], seed=8).result()
    assert [text_of(p) for p in other[1:3]] != [text_of(p) for p in b[1:3]]


def test_the_final_text_is_shaded_by_each_characters_probability_with_its_alternatives(client):
    job = side_by_side(client, ["baseline"], max_new=12, temperature=0)
    updates = [u[1] for u in job if isinstance(u[1], str)]
    final = job.result()
    assert 'class="gm-c"' not in updates[0]  # streaming stays plain; the shades come with the final update
    spans = re.findall(r'<span class="gm-c" style="--s: ([0-9.]+)" title="([^"]*)">', final[1])
    assert len(spans) == 12  # one per character written (every character is in this tokenizer)
    for surprise, title in spans:
        p = float(title.split(": ", 1)[1].split(" ·")[0])
        others = [float(x.rsplit(" ", 1)[1]) for x in title.split("also: ")[1].split(", ")]
        assert abs(float(surprise) - (1 - p)) < 0.011 and len(others) == 3
        assert all(q <= p + 1e-9 for q in others)  # greedy: the drawn character was the most likely
    assert "hover over one to see the alternatives" in final[0]


def test_panes_carry_what_each_variant_is(client):
    final = side_by_side(client, ["baseline", "residual_off"], max_new=5).result()
    assert "GPT-2 as designed" in final[1]
    assert "Each sub-layer&#x27;s output replaces its input" in final[2]


def test_generate_streams_one_model(client):
    job = client.submit("shakespeare", "baseline", "KING:", *SETTINGS, 50, 1.0, 3, api_name="/generate")
    updates = list(job)
    text, status = job.result()
    assert len(updates) >= 2 and text.startswith("KING:") and len(text) > len("KING:")
    assert "chars/s" in status


def test_cancel_stops_a_long_generation(client):
    job = side_by_side(client, ["baseline", "residual_off"], max_new=2000)
    for i, _ in enumerate(job):
        if i == 2:
            break
    job.cancel()
    t0 = time.time()
    while not job.done() and time.time() - t0 < 20:
        time.sleep(0.1)
    assert job.done()
    last = job.outputs()[-1]
    assert "First character after" not in last[0]  # the final update never came
    assert int(last[1].split("<span>")[1].split(" chars")[0]) < 2000
    # the server is free again: a short request comes back promptly
    assert "gm-text" in side_by_side(client, ["baseline"], max_new=5).result()[1]


def test_next_character_gives_bars_per_variant_that_follow_the_temperature(client):
    def chart(temperature, names=("baseline", "attention_off")):
        return client.predict("shakespeare", list(names), "ROMEO:", temperature, 0, 1.0, api_name="/next_character")

    (status, hot, bars), (_, cold, _) = chart(2.0), chart(0.3)
    assert "after the temperature, top-k and top-p" in status  # the explanation stays with the bars
    assert list(hot) == ["baseline", "attention_off"]  # one set of candidates per chosen variant, in order
    rows_hot, rows_cold = [r["probability"] for r in hot["baseline"]], [r["probability"] for r in cold["baseline"]]
    assert len(rows_hot) == 12 and len(cold["attention_off"]) == 12
    assert all(0 < p <= 1 for p in rows_hot) and sum(rows_hot) <= 1.0001  # probabilities
    assert max(rows_cold) > max(rows_hot)  # colder is peakier
    shown = [float(p) for p in re.findall(r'data-p="([0-9.]+)"', bars)]
    assert shown == pytest.approx(rows_hot + [r["probability"] for r in hot["attention_off"]], abs=1e-4)
    assert f"{100 * rows_hot[0]:.1f}%" in bars  # each bar carries its number
    greedy = chart(0.0)[1]["baseline"]
    assert len(greedy) == 1 and greedy[0]["probability"] == 1.0


def test_stepping_through_a_generation_one_character_at_a_time(client, lab):
    def step(prompt, seed=0, temperature=0.0, names=("baseline", "attention_off")):
        return client.predict("shakespeare", list(names), prompt, temperature, 0, 1.0, seed, api_name="/step")

    prompt, said = step("ROMEO:")
    entry = lab.get("shakespeare", "baseline")  # the first chosen variant draws
    ids = entry.tokenizer.encode("ROMEO:", add_special_tokens=False)
    best = int(entry.model(torch.tensor([ids])).logits[0, -1].argmax())
    assert prompt == "ROMEO:" + entry.tokenizer.decode([best]) and said.startswith("baseline drew **")
    assert step(prompt)[0].startswith(prompt) and len(step(prompt)[0]) == len(prompt) + 1
    assert step("ROMEO:", seed=5, temperature=1.5) == step("ROMEO:", seed=5, temperature=1.5)  # same seed, same draw
    drawn = {step("ROMEO:", seed=s, temperature=2.0)[0] for s in range(8)}
    assert len(drawn) > 1  # a hot temperature draws different characters for different seeds
    with pytest.raises(Exception, match="choose at least one variant"):
        step("x", names=())
    assert step("")[0].startswith("\n") and len(step("")[0]) == 2  # the newline an empty prompt is read as stays


def test_attention_maps_entropies_patterns_and_one_head_enlarged(client):
    status, grid, zoom, table = client.predict(
        "shakespeare", "baseline", "ROMEO:\nwhat light", "auto", api_name="/attention"
    )
    assert grid["visible"] and zoom["visible"] and grid["value"] and zoom["value"]
    rows = table["value"]["data"]
    assert len(rows) == 2 * 2  # layers x heads
    assert all(0 <= row[2] <= torch.log(torch.tensor(64.0)).item() for row in rows)
    patterns = ["the previous character", "its own character", "the first position", "the newlines"]
    read = ["spread out", *patterns, "the first position (off the map)"]
    assert all(row[3] in read for row in rows)
    assert "The enlarged head is L" in status
    status, *_ = client.predict("shakespeare", "baseline", "ROMEO:", "L2 H1", api_name="/attention")
    assert "The enlarged head is L2 H1" in status
    status, grid, zoom, table = client.predict("shakespeare", "attention_off", "ROMEO:", "auto", api_name="/attention")
    assert "no attention" in status and not grid["visible"] and not zoom["visible"] and not table["visible"]


def test_the_enlarged_head_is_chosen_by_its_pattern(lab):
    entry = lab.get("shakespeare", "baseline")
    found = attention_maps(entry, entry.tokenizer.encode("ROMEO:\nwhat light", add_special_tokens=False))
    found.patterns = [[None, None], [None, "the previous character"]]
    assert zoomed_head(found, "auto") == (1, 1)  # the one head with a pattern
    found.patterns = [[None, None], [None, None]]
    lowest = min(found.heads(), key=lambda lh: found.entropies[lh[0]][lh[1]])
    assert zoomed_head(found, "auto") == lowest and zoomed_head(found, " L1  H2") == (0, 1)
    with pytest.raises(Refused, match="no head 'L3 H1'"):
        zoomed_head(found, "L3 H1")
    zoom = attention_zoom(found, 0, 0)
    assert list(zoom.layout.xaxis.ticktext) == found.chars  # every character on the axes, repeats included


def test_knockout_reports_loss_and_samples(client):
    none = client.predict("shakespeare", [], [], [], [], "ROMEO:", *SETTINGS, 30, 1.0, 0, api_name="/knockout")
    assert "nothing" in none[0] and none[1] == none[2]  # no knockout equals the intact model
    heads = [f"L{layer} H{h}" for layer in (1, 2) for h in (1, 2)]
    out = client.predict("shakespeare", heads, [], [], [], "ROMEO:", *SETTINGS, 30, 1.0, 0, api_name="/knockout")
    assert "intact" in out[0] and "knocked out" in out[0] and out[1].startswith("ROMEO:")
    assert out[1] != out[2]


def test_a_knocked_out_loss_is_put_against_the_levels_of_the_same_passage(lab):
    from gpt2mini.report.yardsticks import reference_losses

    broken = copy.deepcopy(lab.get("shakespeare", "baseline").model)
    with knockout(broken, residual=[0, 1]):
        (line,) = passage_comparison(lab, "shakespeare", "baseline", broken)
    assert "(4 x 256 characters)" in line and "knocked out" in line
    loss = float(line.split("knocked out **")[1].split("**")[0])
    train = train_val_split(load_corpus("shakespeare"))[0]
    levels = reference_losses(train, lab.passage("shakespeare")[: 4 * 256 + 1])
    assert knocked_out(loss, levels) in line  # a random tiny model: worse than character frequencies
    assert "worse than character frequencies alone" in line
    assert "that is that is" not in line and "learned" not in line  # nothing was trained: parts were switched off
    other = Lab({"mine": lab.groups["shakespeare"]}, {}, {"mine": lab.passage("shakespeare")})
    (bare,) = passage_comparison(other, "mine", "baseline", broken)
    assert "level" not in bare  # not a shipped corpus: no training split to fit the levels on


@pytest.mark.parametrize(
    "args, message",
    [
        ((["baseline"], "ROMEO:", 9.0, 40, 0.95, 40, 1.0, 0), "temperature must be between 0.0 and 2.0, got 9.0"),
        ((["baseline"], "ROMEO:", 0.8, -1, 0.95, 40, 1.0, 0), "top_k must be between 0 and 200, got -1"),
        ((["baseline"], "ROMEO:", 0.8, 40, 0.95, 40, 1.0, -5), "seed must be between"),
        ((["baseline"], "ROMEO:", "hot", 40, 0.95, 40, 1.0, 0), "temperature must be a number, got 'hot'"),
        ((["baseline"], "ROMEO:", 0.8, 40, 0.95, 40, 1.0, "x"), "seed must be a number"),
        ((["baseline"], "ROMEO:", 0.8, 40.5, 0.95, 40, 1.0, 0), "top_k must be a whole number"),
        (([], "ROMEO:", 0.8, 40, 0.95, 40, 1.0, 0), "choose at least one variant"),
        ((["wings_off"], "ROMEO:", 0.8, 40, 0.95, 40, 1.0, 0), "wings_off"),
    ],
)
def test_bad_parameters_get_a_clear_error(client, args, message):
    with pytest.raises(Exception, match=message):
        client.predict("shakespeare", *args, api_name="/side_by_side")


@pytest.mark.parametrize(
    "values, message",
    [
        ((2.5, 40, 0.95, 10, 1.0, 0), "temperature must be between"),
        ((0.8, 201, 0.95, 10, 1.0, 0), "top_k must be between"),
        ((0.8, 40, 0.0, 10, 1.0, 0), "top_p must be between"),
        ((0.8, 40, 0.95, 0, 1.0, 0), "max_new_tokens must be between"),
        ((0.8, 40, 0.95, 10, 0.5, 0), "repetition_penalty must be between"),
        ((0.8, 40, 0.95, 10, 1.0, -1), "seed must be between"),
        ((float("nan"), 40, 0.95, 10, 1.0, 0), "temperature must be between"),
        (("hot", 40, 0.95, 10, 1.0, 0), "temperature must be a number"),
    ],
)
def test_check_settings_names_the_bad_setting(values, message):
    with pytest.raises(gr.Error, match=message):
        generation_settings(*values)


def test_numbers_as_text_and_whole_floats_are_taken():
    settings = generation_settings(0.8, 40.0, "0.95", "10", 1, 3.0)
    assert settings == SamplingSettings(0.8, 40, 0.95, 1.0, 3, max_new_tokens=10)
    assert all(type(v) is int for v in (settings.top_k, settings.max_new_tokens, settings.seed))
    with pytest.raises(gr.Error) as caught:
        generation_settings(0.8, 10**30, 0.95, 10, 1.0, 0)
    assert caught.value.message == f"top_k must be between 0 and 200, got {10**30}"  # the int as sent
    next_char_only = check_settings(temperature="0", top_k=5, top_p=1)  # the rest keep SamplingSettings' defaults
    assert (next_char_only.temperature, next_char_only.top_k, next_char_only.top_p) == (0.0, 5, 1.0)


WHOLE = {"top_k": 1, "max_new_tokens": 3, "seed": 5}  # their places in generation_settings' arguments


@pytest.mark.parametrize(
    "values, name",
    [
        ((0.8, 40.5, 0.95, 10, 1.0, 0), "top_k"),
        ((0.8, 40, 0.95, "10.5", 1.0, 0), "max_new_tokens"),
        ((0.8, 40, 0.95, 10, 1.0, 3.25), "seed"),
    ],
)
def test_a_fraction_for_an_integer_setting_is_one_clear_error(values, name):
    with pytest.raises(gr.Error) as caught:
        generation_settings(*values)
    assert re.fullmatch(rf"{name} must be a whole number.*, got {values[WHOLE[name]]}", caught.value.message)


def test_paced_updates_after_the_first_step_then_at_most_every_interval():
    now, calls = [0.0], []

    def step(i):
        calls.append(i)
        now[0] += 0.03

    ticks = paced(step, 10, every=0.1, clock=lambda: now[0])
    assert next(ticks) == Tick(1) and calls == [0]  # the first character shows at once
    rest = list(ticks)
    assert calls == list(range(10))
    assert rest == [Tick(5), Tick(9), Tick(10, final=True)]  # then every > 0.1 s, and a final update


def test_paced_stops_at_the_time_limit_and_says_so():
    now, calls = [0.0], []

    def step(i):
        calls.append(i)
        now[0] += 50

    ticks = list(paced(step, 10, clock=lambda: now[0]))  # TIME_LIMIT_S: 120 s
    assert calls == [0, 1, 2]  # the step that passed the limit was the last
    assert ticks == [
        Tick(1),
        Tick(2),
        Tick(3, final=True, notice="Stopped after 120 s, the per-request limit."),
    ]
    now[0] = 0.0
    late = list(paced(step, 10, start=-100.0, clock=lambda: now[0]))  # counted from the request's start
    assert late == [Tick(1, final=True, notice="Stopped after 120 s, the per-request limit.")]


@pytest.mark.parametrize("n", [0, 1, 3])
def test_paced_always_ends_with_one_final_update(n):
    ticks = list(paced(lambda i: None, n, clock=lambda: 0.0))
    assert ticks[-1] == Tick(n, final=True) and sum(t.final for t in ticks) == 1
    assert [t.steps for t in ticks[:-1]] == ([1] if n else [])  # no time passes: only the first step's update


def test_every_streaming_event_stops_at_the_time_limit(lab, monkeypatch):
    monkeypatch.setattr(streaming, "TIME_LIMIT_S", 0)
    stopped = "Stopped after 0 s, the per-request limit."
    s = (*SETTINGS, 50, 1.0, 0)
    *_, (text, status) = generate_one(lab, "shakespeare", "baseline", "KING:", *s)
    assert stopped in status and re.search(r"^[01] characters in", status.splitlines()[-1])  # one step
    *_, (status, *panes) = generate_panes(lab, "shakespeare", ["baseline", "residual_off"], "KING:", *s)
    assert stopped in status and "First character after" in status
    assert all(int(p.split("<span>")[1].split(" chars")[0]) <= 1 for p in panes[:2])
    *_, (summary, intact, broken) = run_knockout(lab, "shakespeare", ["L1 H1"], [], [], [], "KING:", *s)
    assert summary.endswith(stopped) and len(intact) <= len("KING:") + 1


def test_picking_a_corpus_sets_every_tabs_guide(client, lab):
    out = client.predict("shakespeare", api_name="/choose_corpus")
    guides = [o["value"] if isinstance(o, dict) else o for o in out[-11:-6]]  # then the Scaling tab's 6 outputs
    assert guides == list(lab.tips("shakespeare").values())
    assert out[-6] == ENGLISH("scaling.missing", corpus="shakespeare")  # this lab ships no scaling grid
    assert guides[0].startswith("**Try:** Press **Generate side by side**")


def test_models_with_different_tokenizers_side_by_side(client):
    client.predict("mixed", api_name="/choose_corpus")  # as in the browser: the variant choices follow the group
    out = client.predict(
        "mixed", ["shakespeare_chars", "sample_chars"], "ROMEO:", *SETTINGS, 20, 1.0, 0, api_name="/side_by_side"
    )
    client.predict("shakespeare", api_name="/choose_corpus")
    assert all(int(p.split("<span>")[1].split(" chars")[0]) >= 15 for p in out[1:3])


def test_knockout_of_parts_the_model_lacks_is_refused(client):
    with pytest.raises(Exception, match="L9"):
        client.predict("shakespeare", ["L9 H1"], [], [], [], "x", *SETTINGS, 5, 1.0, 0, api_name="/knockout")


def test_empty_long_unseen_and_html_prompts(client):
    status = side_by_side(client, ["baseline"], prompt="", max_new=5).result()[0]
    assert "Empty prompt" in status
    status = side_by_side(client, ["baseline"], prompt="x" * 1000, max_new=5).result()[0]
    assert "longer than the model's context" in status
    out = side_by_side(client, ["baseline"], prompt="猫😀", max_new=5).result()
    assert "never saw" in out[0] and "猫😀" in out[1]
    out = side_by_side(client, ["baseline"], prompt="<script>alert(1)</script>", max_new=5).result()
    assert "<script>" not in out[1] and "&lt;script&gt;" in out[1]


@pytest.mark.parametrize("model, message", [("/nonexistent/run", "no such folder"), ("data", "not a GPT-2 mini")])
def test_a_bad_model_argument_is_one_line_and_exit_2(model, message):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--model", model],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_long_prompt_is_cropped_between_characters_and_shown_without_replacement_marks(lab):
    long = "吾輩は猫である。" * 11  # none of these characters is in the Shakespeare vocabulary: 3 bytes each
    entry = lab.get("shakespeare", "baseline")
    ids, notices = prepare_prompt(entry, long)
    shown = entry.tokenizer.decode(ids)
    n = entry.model.config.n_positions
    assert len(ids) <= n and "\ufffd" not in shown and long.endswith(shown) and len(ids) > n - 3
    assert any(f"using its last {len(shown)} characters" in x for x in notices)


def test_a_tiny_temperature_gives_a_real_distribution_in_the_next_character_view(lab):
    entry = lab.get("shakespeare", "baseline")
    ids, _ = prepare_prompt(entry, "ROMEO:")
    table = next_char_table(entry, ids, 1e-40, 0, 1.0)
    assert table["probability"].notna().all() and table["probability"].iloc[0] == 1.0


def test_duplicate_knockout_parts_count_once(lab):
    parts = parse_parts(["L1 H1", "L1 H1", " L1  H1 ", "L2 H1"], ["L2", "L2"], ["L1", " L1"], [], 2, 2)
    assert parts == {"heads": [(0, 0), (1, 0)], "attention": [1], "mlp": [0], "residual": []}
    twice = ["L1 H1", "L1 H1"]
    *_, (summary, _, _) = run_knockout(lab, "shakespeare", twice, [], [], [], "KING:", 0, 0, 1, 5, 1, 0)
    assert "Knocked out of **baseline**: L1 H1." in summary


# ---------------------------------------------------------------------------------------------------------------------
# The real app.py: what a user's mistakes leave in the server's log


def test_user_mistakes_and_raw_stop_joins_leave_no_traceback_in_the_server_log(tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    url = f"http://127.0.0.1:{port}/"
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.5)
        with pytest.raises(Exception, match="choose at least one variant"):  # a gr.Error in a streaming event
            side_by_side(client, [], max_new=5).result()
        with pytest.raises(Exception, match="temperature must be a number"):  # ... and in another
            client.predict("shakespeare", ["baseline"], "x", "hot", 40, 0.95, api_name="/next_character")
        deps = client.config["dependencies"]
        for fn in [d["id"] for d in deps if not d["backend_fn"]]:  # the Stop buttons' events, joined raw
            assert raw_join(url, fn, [])[0] == 400
        status, answer = raw_join(url, "side_by_side", ["shakespeare", ["baseline"], "ROMEO:"])
        assert status == 422 and answer["detail"][0]["message"] == "side_by_side takes 10 inputs, got 3"
        assert "gm-text" in side_by_side(client, ["baseline"], max_new=5).result()[1]  # and it still serves
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = (tmp_path / "server.log").read_text().splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("* ")] == []  # Gradio's start-up lines


def synthetic_sweep() -> dict:
    points = {"baseline": [2.2, 1.9, 2.3], "residual_off": [2.4, 3.35, None]}
    variants = {}
    for name, losses in points.items():
        sweep = [
            {"lr": lr, "val_split": v, "diverged": None if v else "nan"}
            for lr, v in zip([1e-3, 2e-3, 4e-3], losses, strict=True)
        ]
        best = min((p for p in sweep if p["val_split"]), key=lambda p: p["val_split"])
        variants[name] = {
            "label": variant_label(name),
            "best_lr": best["lr"],
            "at_edge": False,
            "sweep": sweep,
            "seed_losses": [best["val_split"] - 0.01, best["val_split"], best["val_split"] + 0.01],
            "mean": best["val_split"],
            "std": 0.01,
            "min": best["val_split"] - 0.01,
            "max": best["val_split"] + 0.01,
            "window": [p["lr"] for p in sweep if p["val_split"] and p["val_split"] < 2.49],
        }
    return {
        "corpus": "x",
        "lrs": [1e-3, 2e-3, 4e-3],
        "seeds": 3,
        "base_seed": 1337,
        "steps": 1500,
        "reference": {"unigram": 3.35, "bigram": 2.49},
        "variants": variants,
    }


def test_training_tab_shows_the_sweep_and_each_variant_at_its_best_lr(tmp_path):
    import json
    import shutil

    models = tmp_path / "models"
    for name in ("baseline", "residual_off"):
        shutil.copytree(ROOT / "models" / "shakespeare" / name, models / "x" / name)
        (models / "x" / name / "training.json").write_text(json.dumps({"lr": 2e-3, "seed": 1337}))
    (models / "x" / "sweep.json").write_text(json.dumps(synthetic_sweep()))
    lab = load_lab(models)
    curves, figure, table = training_view(lab, "x")
    loss_axes = curves.axes[0]
    labels = [line.get_label() for line in loss_axes.get_lines()]
    assert labels == ["baseline (lr 0.002)", "residual off (lr 0.002)", "unigram level 3.350", "bigram level 2.490"]
    assert len({line.get_marker() for line in loss_axes.get_lines()[:2]}) == 2  # overlapping lines stay visible
    entropy_axes = curves.axes[2]
    final = [m for m in lab.get("x", "baseline").metrics if "attn_entropy" in m][-1]
    assert list(entropy_axes.get_lines()[0].get_ydata()) == final["attn_entropy"]  # per layer, from the log
    assert figure is not None and figure.axes[0].get_xscale() == "log"
    assert list(table["variant"])[:2] == ["baseline", "residual off"]
    assert list(table["best lr"])[:2] == ["0.002", "0.001"] and list(table["clearly below bigram at lr"])[:2] == [
        "0.001, 0.002, 0.004",
        "0.001",
    ]
    assert table.iloc[-2, 2] == "3.350" and table.iloc[-1, 2] == "2.490"  # the yardsticks
    assert list(table.iloc[:2, 2]) == ["1.900", "2.400"]
    (models / "x" / "sweep.json").unlink()  # models without a sweep: curves only
    curves, figure, table = training_view(load_lab(models), "x")
    assert figure is None and table.empty and len(curves.axes[0].get_lines()) == 2  # no sweep: no yardsticks


def test_a_character_split_over_byte_tokens_is_one_shaded_piece_with_its_whole_probability():
    from types import SimpleNamespace

    tok = build_tokenizer("ab")
    run = SideBySide.__new__(SideBySide)
    run.pieces, run.held = [[]], [None]
    logp = torch.full((tok.vocab_size if hasattr(tok, "vocab_size") else len(tok),), -20.0)
    first, second = 0, 1
    logp[first], logp[second] = math.log(0.5), math.log(0.9)
    best = logp.topk(4)
    top, top_logp = best.indices.tolist(), best.values.tolist()
    run.record(0, "", first, float(logp[first]), top, top_logp)  # a byte held back
    run.record(0, "猫", second, float(logp[second]), top, top_logp)  # the byte that completes the character
    (piece,) = run.pieces[0]
    assert piece.text == "猫" and piece.p == pytest.approx(0.45) and piece.top == []
    assert piece.tooltip(tok) == "猫: 0.45"  # no alternatives: they would be other bytes
    pieces = [Piece("ab", 0.5, 3, [], None), Piece("c", 0.9, 4, [], None)]
    body = written_html("abc", 1, "baseline", pieces, SimpleNamespace(decode=lambda ids: "x"))
    before, after = body.split('class="gm-split"')
    assert ">a</span>" in before and ">b</span>" in after  # a piece that straddles the departure is split there


def test_every_fixed_word_on_the_page_follows_the_language():
    demo = build_demo(tiny_lab())
    worded = {id(block) for block, _ in reworded(demo)}
    for block in demo.blocks.values():
        kind = type(block).__name__
        if kind in ("Tab", "Button", "Slider", "Accordion", "Sidebar", "CheckboxGroup", "Plot", "Dataframe"):
            assert id(block) in worded or block.label is None and kind == "Dataframe", (kind, block.label)
    keys = [keys for _, keys in reworded(demo)]
    assert {"label": "tab.next-character"} in keys and {"value": "compare"} in keys
    ja = [spoken("ja")(key) for k in keys for key in k.values()]
    assert "次の文字" in ja and "並べて生成" in ja
    with pytest.raises(Refused, match="no language 'de'"):
        spoken("de")


def test_the_lineage_presets_run_in_every_tab_with_their_names(tmp_path):
    from configuration_gpt2mini import PRESETS
    from gpt2mini.corpus import load_corpus
    from gpt2mini.words import Words

    lab = tiny_lab()
    tok = lab.get("shakespeare", "baseline").tokenizer
    for i, name in enumerate(("transformer-2017", "llama")):
        lab.add("shakespeare", Entry(name, tiny_model(tok, seed=9 + i, **PRESETS[name]), tok))  # and registered
    names = ["baseline", "transformer-2017", "llama"]
    *_, last = generate_panes(lab, "shakespeare", names, "ROMEO:", 0.8, 40, 0.95, 20, 1.0, 0, "ja")
    assert "Llama のレシピ" in last[3] and "2017 年の Transformer" in last[2]  # its name, in the page's language
    assert "回転位置埋め込み" in last[3]  # and what it is, from its config
    status, data, _ = next_char(lab, "shakespeare", names, "ROMEO:", 0.8, 40, 0.95)
    assert set(data) == set(names)
    status, grid, zoom, table = attention_view(lab, "shakespeare", "llama", load_corpus("shakespeare")[:300])
    assert grid.visible and zoom.visible  # RoPE's attention, drawn like GPT-2's
    assert Words("en").variant("llama") == "Llama's recipe"


def test_with_a_class_decoding_the_pages_update_less_often():
    from types import SimpleNamespace

    def every(n):
        return update_every(SimpleNamespace(busy=lambda: n))

    assert every(0) == every(CALM_STREAMS) == UPDATE_S
    assert every(2 * CALM_STREAMS) == pytest.approx(2 * UPDATE_S)
    assert every(4 * CALM_STREAMS) == pytest.approx(4 * UPDATE_S)
