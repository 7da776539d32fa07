"""Hostile input, property-based (hypothesis) and hand-picked, against the tokenizer, the fast decoder and every
endpoint of the lab: random Unicode with control characters, NUL and lone surrogates, 100k-character prompts, HTML,
and sampling settings that are extreme, not finite or not numbers at all. The promise: nothing crashes, and each
input gets a sensible result or one clear message (a ValueError from the decoder, a gr.Error from the lab).

Lone surrogates (U+D800-U+DFFF alone) are not characters and have no UTF-8 form. Decision (tokenizer.valid_text,
applied wherever outside text comes in): each becomes U+FFFD, and a surrogate *pair* (UTF-16 halves, as JSON may
carry them) becomes its character; the saved tokenizer itself refuses such text.
"""

import collections
import inspect
import json
import math
import time
import urllib.error
import urllib.request
import uuid

import gradio as gr
import pytest
from gradio_client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE_TEXT, raw_join, serve, tiny_lab, tiny_model
from gpt2mini.corpus import load_corpus
from gpt2mini.generation.sampling import draw
from gpt2mini.generation.stream import TokenStream, stream_text
from gpt2mini.lab import clients as lab_clients
from gpt2mini.lab.ui import build_demo
from gpt2mini.serving import pool
from gpt2mini.tokenizer import build_tokenizer, valid_text


def fuzz(examples: int):
    """hypothesis settings: bounded, no deadline (2 shared cores)."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
    )


SPECIAL = ["\x00", "\r", "\n", "\t", "\x1b", "\x7f", "\u200b", "\u202e", "\ufeff", "\ufffd", "<", ">", "&"]
CHARS = st.one_of(
    st.characters(),  # any code point but surrogates
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(categories=["Cc"]),  # control characters, NUL included
    st.sampled_from(SPECIAL),
)
TEXT = st.text(CHARS, max_size=200)


@pytest.fixture(scope="module")
def shakespeare_tok():
    return build_tokenizer(load_corpus("shakespeare"))


# ---------------------------------------------------------------------------------------------------------------------
# The tokenizer


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@fuzz(200)
@given(TEXT)
def test_any_string_becomes_valid_text_that_round_trips(text):
    tok = _SMALL
    clean = valid_text(text)
    assert not has_surrogate(clean)
    clean.encode("utf-8")  # has a UTF-8 form
    assert tok.decode(tok.encode(clean, add_special_tokens=False)) == clean
    if not has_surrogate(text):
        assert clean == text  # valid text is left exactly as it is
    else:
        lone = sum(1 for c in text if has_surrogate(c))
        assert clean.count("\ufffd") - text.count("\ufffd") <= lone


_SMALL = build_tokenizer("abc 吾輩\n")


@fuzz(200)
@given(st.text(st.characters(min_codepoint=0x10000), min_size=1, max_size=20))
def test_utf16_halves_come_back_as_their_character(text):
    units = text.encode("utf-16-le")
    halves = "".join(chr(int.from_bytes(units[i : i + 2], "little")) for i in range(0, len(units), 2))
    assert has_surrogate(halves) and len(halves) == 2 * len(text)
    assert valid_text(halves) == text


def test_lone_surrogates_become_the_replacement_character(shakespeare_tok):
    assert valid_text("\ud800") == "\ufffd"
    assert valid_text("a\udfffb") == "a\ufffdb"
    assert valid_text("\ude00\ud83d") == "\ufffd\ufffd"  # the halves in the wrong order are not a pair
    assert valid_text("\ud83d\ude00") == "😀"
    assert valid_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\ufffd"  # a non-UTF-8 argv byte
    # the saved tokenizer (plain tokenizers library, no custom code) refuses them; valid_text is the way in
    with pytest.raises(TypeError):
        shakespeare_tok.encode("\ud800", add_special_tokens=False)


@pytest.mark.parametrize(
    "text",
    [
        "\x00" * 50,
        "".join(map(chr, range(32))) + "\x7f",
        "\ufeffBOM \u202eRTL override\u202c \u200bzero width",
        "<script>alert(1)</script><img src=x onerror=alert(2)>&amp;",
        "ROMEO:" * 20_000,  # 120k characters
        "吾輩😀" * 30_000,
    ],
)
def test_hand_picked_text_round_trips(shakespeare_tok, text):
    ids = shakespeare_tok.encode(text, add_special_tokens=False)
    assert shakespeare_tok.decode(ids) == text


# ---------------------------------------------------------------------------------------------------------------------
# The fast decoder (TokenStream, stream_text)


@pytest.fixture(scope="module")
def small():
    tok = build_tokenizer(SAMPLE_TEXT)
    return tiny_model(tok, n_positions=32), tok


@fuzz(60)
@given(
    prompts=st.lists(st.lists(st.integers(0, 314), min_size=1, max_size=70), min_size=1, max_size=3),
    temperature=st.one_of(st.just(0.0), st.floats(1e-3, 5.0)),
    top_k=st.integers(0, 400),
    top_p=st.floats(1e-3, 1.0),
    repetition_penalty=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**63 - 1),
    steps=st.integers(1, 40),
)
def test_any_valid_settings_give_tokens_of_the_vocabulary(
    small, prompts, temperature, top_k, top_p, repetition_penalty, seed, steps
):
    model, tok = small
    assert model.config.vocab_size == 315
    kw = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, seed=seed)
    out = TokenStream(model, prompts, **kw).take(steps)  # past the 32-position context too: the window slides
    assert len(out) == len(prompts) and all(len(row) == steps for row in out)
    assert all(0 <= t < 315 for row in out for t in row)
    assert TokenStream(model, prompts, **kw).take(steps) == out  # the same seed, the same tokens


@fuzz(40)
@given(
    st.sampled_from(["temperature", "top_p", "repetition_penalty", "top_k", "window"]).flatmap(
        lambda name: st.tuples(
            st.just(name),
            {
                "temperature": st.floats(max_value=-1e-9, allow_nan=False),
                "top_p": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0 + 1e-9), st.just(math.nan)),
                "repetition_penalty": st.floats(max_value=0.0, allow_nan=False),
                "top_k": st.integers(max_value=-1),
                "window": st.one_of(st.integers(max_value=0), st.integers(min_value=32)),
            }[name],
        )
    )
)
def test_invalid_settings_are_a_value_error_naming_them(small, case):
    model, _ = small
    name, value = case
    with pytest.raises(ValueError, match=name):
        TokenStream(model, [[1, 2, 3]], **{name: value})


def test_empty_prompts_are_a_value_error(small):
    model, _ = small
    for prompts in ([], [[]], [[1], []]):
        with pytest.raises(ValueError, match="at least one token"):
            TokenStream(model, prompts)


# The fast decoder refuses what it cannot sample from, with the setting or the id named.


def test_nan_temperature_is_a_value_error(small):
    with pytest.raises(ValueError, match="temperature"):
        TokenStream(small[0], [[1, 2]], temperature=math.nan)


def test_nan_repetition_penalty_is_a_value_error(small):
    with pytest.raises(ValueError, match="repetition_penalty"):
        TokenStream(small[0], [[1, 2]], repetition_penalty=math.nan)


@pytest.mark.parametrize("token", [-1, 315, 10**6])
def test_an_id_outside_the_vocabulary_is_a_value_error(small, token):
    with pytest.raises(ValueError, match="vocabulary"):
        TokenStream(small[0], [[1, token]])


def test_stream_text_takes_lone_surrogates(small):
    model, tok = small
    assert "".join(stream_text(model, tok, "a\ud800", max_new_tokens=3, seed=0))


@fuzz(40)
@given(prompt=st.one_of(TEXT, st.just("a" * 100_000)), steps=st.integers(0, 30), seed=st.integers(0, 1000))
def test_stream_text_continues_any_text(small, prompt, steps, seed):
    model, tok = small
    pieces = list(stream_text(model, tok, valid_text(prompt), max_new_tokens=steps, seed=seed, temperature=0.9))
    assert len(pieces) <= steps and all(isinstance(p, str) and p for p in pieces)
    "".join(pieces).encode("utf-8")  # nothing the lab could not send on


# ---------------------------------------------------------------------------------------------------------------------
# Every endpoint of the lab, called as the server calls it (the registered handler, with the request's raw values)

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**80), 2**80),
    st.floats(),  # NaN and infinities included
    TEXT,
)
ANYTHING = st.recursive(  # what JSON can carry
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=8,
)
HUGE = st.sampled_from(["x" * 100_000, "<b>" * 40_000, "\ud800" * 50_000, "\x00" * 100_000])


VARIANTS = ["baseline", "residual_off", "attention_off"]
VALID = {  # every value in range, so every request must get a result
    "corpus": st.just("shakespeare"),
    "names": st.lists(st.sampled_from(VARIANTS), min_size=1, max_size=4) | st.sampled_from(VARIANTS),
    "name": st.sampled_from(VARIANTS),
    "prompt": st.one_of(TEXT, HUGE),
    "heads": st.lists(st.sampled_from(["L1 H1", "L1 H2", "L2 H2"]), max_size=2),  # what the tiny baseline has
    "layers": st.lists(st.sampled_from(["L1", "L2"]), max_size=2),
    "head": st.sampled_from(["auto", "L1 H1", "L2 H2"]),  # the head to enlarge
    "sampling": [  # temperature, top_k, top_p, max_new (kept short: only slower if long), repetition_penalty, seed
        st.floats(0, 2),
        st.integers(0, 200),
        st.floats(0.01, 1),
        st.integers(1, 12),
        st.floats(1, 2),
        st.integers(0, 2**31 - 1),
    ],
}


def endpoints(value) -> dict[str, list]:
    """Each endpoint's parameters, each drawn from `value(valid strategy)`."""
    corpus, names, name, prompt = (value(VALID[k]) for k in ("corpus", "names", "name", "prompt"))
    heads, layers = value(VALID["heads"]), value(VALID["layers"])
    sampling = [value(s) for s in VALID["sampling"]]
    return {
        "choose_corpus": [corpus],
        "side_by_side": [corpus, names, prompt, *sampling],
        "generate": [corpus, name, prompt, *sampling],
        "next_character": [corpus, names, prompt, *sampling[:3]],
        "step": [corpus, names, prompt, *sampling[:3], sampling[5]],
        "attention": [corpus, name, prompt, value(VALID["head"])],
        "knockout": [corpus, heads, layers, layers, layers, prompt, *sampling],
    }


def valid_or_anything(valid):
    """In range most of the time, so that whole requests are often valid; else anything JSON can carry, or values
    just beside the range. (A number is never a valid long generation: that would only be slow.)"""

    def not_long(v):
        try:
            return not (12 < float(v) <= 2000)
        except (TypeError, ValueError, OverflowError):
            return True

    return st.one_of(valid, valid, valid, ANYTHING.filter(not_long))


ENDPOINTS = endpoints(valid_or_anything)
VALID_ENDPOINTS = endpoints(lambda valid: valid)


@pytest.fixture(scope="module")
def handlers():
    demo = build_demo(tiny_lab(n_positions=64))
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ENDPOINTS}
    assert set(fns) == set(ENDPOINTS)
    assert all(fn.preprocess is False for fn in fns.values())  # the handlers see what the request sent
    return fns


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)


def call(fn, args):
    """Run a handler to the end (generators too); return its last output. The streaming events take the gr.Request
    first (lab_clients.listening), which Gradio passes; None here (no client to watch)."""
    takes_request = "request" in inspect.signature(fn.fn).parameters
    out = fn.fn(None, *args) if takes_request else fn.fn(*args)
    if hasattr(out, "__next__"):
        *_, out = out  # the last update
    return out


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_any_request_gets_a_result_or_one_clear_message(handlers, endpoint):
    @fuzz(40)
    @given(st.tuples(*ENDPOINTS[endpoint]))
    def check(args):
        try:
            out = call(handlers[endpoint], args)
        except gr.Error as e:
            message = str(e)
            assert message and "\n" not in message and len(message) < 400, message
            assert "<" not in message  # rendered as HTML by Gradio: whatever came in is escaped
            return
        for text in strings_in(out if isinstance(out, list | tuple) else [out]):
            text.encode("utf-8")  # the server can send it (no lone surrogate echoed back)

    check()


@pytest.mark.parametrize("endpoint", list(VALID_ENDPOINTS))
def test_any_valid_request_gets_a_result(handlers, endpoint):
    @fuzz(15)
    @given(st.tuples(*VALID_ENDPOINTS[endpoint]))
    def check(args):
        out = call(handlers[endpoint], args)  # no gr.Error: every value is in range
        texts = list(strings_in(out if isinstance(out, list | tuple) else [out]))
        for text in texts:
            text.encode("utf-8")
        if endpoint in ("generate", "side_by_side", "knockout"):
            assert any(texts), out  # text came back

    check()


def test_html_in_names_is_escaped_in_the_message(handlers):
    with pytest.raises(gr.Error) as caught:
        call(handlers["generate"], ["shakespeare", "<img src=x onerror=alert(1)>", "x", 0.8, 40, 0.95, 5, 1.0, 0])
    assert "&lt;img src=x onerror=alert(1)&gt;" in str(caught.value) and "<img" not in str(caught.value)


@pytest.mark.parametrize(
    "endpoint, args, phrase",
    [
        ("generate", ["shakespeare", "baseline", "x", 10**400, 40, 0.95, 5, 1.0, 0], "temperature must be between"),
        ("generate", ["shakespeare", "baseline", "x", 0.8, 40, 0.95, 5, 1.0, "1e999"], "seed must be between"),
        ("generate", ["shakespeare", "baseline", "x", 0.8, 40, 0.95, 5, 1.0, 1j], "seed must be a number"),
        ("generate", ["shakespeare", "baseline", ["x"], 0.8, 40, 0.95, 5, 1.0, 0], "the prompt must be text"),
        ("generate", [{"a": 1}, "baseline", "x", 0.8, 40, 0.95, 5, 1.0, 0], "no models trained on"),
        ("generate", ["shakespeare", ["baseline"], "x", 0.8, 40, 0.95, 5, 1.0, 0], "no model"),
        ("side_by_side", ["shakespeare", [["baseline"]], "x", 0.8, 40, 0.95, 5, 1.0, 0], "no model"),
        ("side_by_side", ["shakespeare", VARIANTS * 3, "x", 0.8, 40, 0.95, 5, 1.0, 0], "at most 8"),
        ("next_character", ["shakespeare", 7, "x", 0.8, 40, 0.95], "variants must be a list"),
        ("knockout", ["shakespeare", ["L1 H²"], [], [], [], "x", 0.8, 40, 0.95, 5, 1.0, 0], "written like"),
        ("knockout", ["shakespeare", [], ["L" + "9" * 5000], [], [], "x", 0.8, 40, 0.95, 5, 1.0, 0], "no layer"),
        ("knockout", ["shakespeare", [], [], {"L1": 1}, [], "x", 0.8, 40, 0.95, 5, 1.0, 0], "must be a list"),
    ],
)
def test_hand_picked_requests_get_one_clear_message(handlers, endpoint, args, phrase):
    with pytest.raises(gr.Error, match=phrase):
        call(handlers[endpoint], args)


def test_a_100k_character_prompt_costs_what_a_short_one_does(handlers):
    timings = {}
    for n in (10, 100_000):
        start = time.perf_counter()
        status, *panes = call(
            handlers["side_by_side"], ["shakespeare", VARIANTS, "ab" * (n // 2), 0, 0, 1, 5, 1, 0, "en"]
        )
        timings[n] = time.perf_counter() - start
        assert all("gm-text" in p for p in panes[:3])
    assert "longer than the model's context" in status
    assert timings[100_000] < timings[10] + 1.0, timings


# ---------------------------------------------------------------------------------------------------------------------
# A few through the running server: gradio_client, and the raw REST API for what gradio_client cannot send


@pytest.fixture(scope="module")
def server():
    with serve(build_demo(tiny_lab(n_positions=64))) as url:
        yield url, Client(url, verbose=False)


def rest_call(url: str, api_name: str, data: list) -> list:
    """POST the request as curl would (JSON with \\u escapes, so lone surrogates travel), read the event stream;
    return ("complete"|"error", the last data)."""
    body = json.dumps({"data": data}, ensure_ascii=True).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/gradio_api/call/{api_name}", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    kind, last = None, None
    with urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/call/{api_name}/{event_id}", timeout=60) as stream:
        for raw in stream:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                last = json.loads(line[len("data: ") :])
    return kind, last


def test_lone_surrogates_over_the_wire_get_a_result_and_a_notice(server):
    url, _ = server
    kind, (text, status) = rest_call(
        url, "generate", ["shakespeare", "baseline", "ROMEO\ud800:\udc00", 0, 0, 1, 5, 1, 0, "en"]
    )
    assert kind == "complete" and text.startswith("ROMEO\ufffd:\ufffd") and "U+FFFD" in status
    kind, data = rest_call(url, "side_by_side", ["shakespeare", ["baseline"], "\ud83d\ude00", 0, 0, 1, 5, 1, 0, "ja"])
    assert kind == "complete" and "😀" in data[1]  # a surrogate pair is the character it encodes
    assert "各文字は" in data[0] and "ベースライン" in data[1]  # asked in Japanese, answered in Japanese


def test_hostile_requests_through_the_client_then_the_server_still_serves(server):
    url, client = server
    s = (0.8, 40, 0.95, 5, 1.0, 0)
    cases = [  # (api, args, a phrase of the message, or None for a result)
        ("/generate", ("shakespeare", "baseline", "\x00\x01\x1b[2J\x7f", *s), None),
        ("/generate", ("shakespeare", "baseline", "<script>alert(1)</script>", *s), None),
        ("/attention", ("shakespeare", "baseline", "x" * 100_000, "auto"), None),
        ("/attention", ("shakespeare", "baseline", "x", "L9 H1"), "no head"),
        ("/attention", ("shakespeare", "baseline", "x", "auto", "fr"), "no language 'fr'; choose from en, ja"),
        ("/next_character", ("shakespeare", ["baseline"], "é" * 100_000, 1e-9, 200, 0.01), None),
        ("/generate", ("shakespeare", "baseline", "x", "hot", 40, 0.95, 5, 1.0, 0), "temperature must be a number"),
        ("/generate", ("shakespeare", "baseline", "x", None, 40, 0.95, 5, 1.0, 0), "temperature must be a number"),
        ("/generate", ("shakespeare", "baseline", "x", 0.8, 40, 0.95, 5, 1.0, [1]), "seed must be a number"),
        ("/generate", ("shakespeare", "baseline", "x", 0.8, 10**30, 0.95, 5, 1.0, 0), "top_k must be between"),
        ("/generate", ("shakespeare", "baseline", "x", 0.8, 40, 0.95, 10**6, 1.0, 0), "max_new_tokens must be between"),
        ("/generate", ("shakespeare", "baseline", "x", 0.8, 40, "0.5", 5, 1.0, 0), None),  # a number as text
        ("/side_by_side", ("shakespeare", "baseline", "x", *s), None),  # one name for a list of names
        ("/side_by_side", ("shakespeare", 42, "x", *s), "variants must be a list"),
        ("/side_by_side", (["shakespeare"], ["baseline"], "x", *s), "no models trained on"),
        ("/knockout", ("shakespeare", ["L1 H²"], [], [], [], "x", *s), "written like"),
        ("/knockout", ("shakespeare", [], ["L" + "9" * 5000], [], [], "x", *s), "no layer"),
        ("/choose_corpus", ({"corpus": "shakespeare"},), "no models trained on"),
    ]
    for api, args, phrase in cases:
        if phrase is None:
            out = client.predict(*args, api_name=api)
            assert out is not None, api
        else:
            with pytest.raises(Exception, match=phrase):
                client.predict(*args, api_name=api)
    # nothing broke: a normal request is answered as before
    text, status = client.predict("shakespeare", "baseline", "ROMEO:", 0, 0, 1, 10, 1, 0, api_name="/generate")
    assert text.startswith("ROMEO:") and "characters in" in status


# ---------------------------------------------------------------------------------------------------------------------
# Clients that never read, go away or cancel (gpt2mini/lab/clients.py's LISTENING): the server stops working for them


@pytest.fixture()
def steps(monkeypatch):
    """Every token the app draws, counted by the request's max_new_tokens, each made 5 ms slower: a 2000-character
    request would keep the decoding thread busy for over 10 s if nothing stopped it."""
    counts = collections.Counter()
    real = draw

    def counted(logits, settings, generator, seen):
        counts[settings.max_new_tokens] += 1
        time.sleep(0.005)
        return real(logits, settings, generator, seen)

    monkeypatch.setattr(pool, "draw", counted)
    return counts


LONG = ["shakespeare", ["baseline", "residual_off"], "ROMEO:", 0.8, 40, 0.95, 2000, 1.0, 0, "en"]  # 2 panes, 2000 steps


def probe_s(client) -> float:
    """Seconds until a short generation comes back."""
    start = time.monotonic()
    text, status = client.predict("shakespeare", "baseline", "KING:", 0, 0, 1, 5, 1, 0, api_name="/generate")
    assert "characters in" in status
    return time.monotonic() - start


def test_joins_nobody_reads_generate_nothing_and_free_their_slots(server, steps):
    url, client = server
    sessions = [uuid.uuid4().hex for _ in range(4)]
    for session in sessions:  # every slot taken by a request whose stream is never opened
        status, answer = raw_join(url, "side_by_side", LONG, session)
        assert status == 200 and "event_id" in answer
    joined = time.monotonic()
    took = probe_s(client)
    assert took < lab_clients.LISTEN_GRACE_S + 4  # unchecked: over 10 s, as long as an unread request runs
    time.sleep(max(1.0, joined + lab_clients.LISTEN_GRACE_S + 1 - time.monotonic()))  # past the wait for a reader
    assert steps[2000] == 0  # not one step for a request nobody reads
    assert steps[5] == 5
    # what the server kept for a session that opens its stream late: a few small messages, and why it did not run
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={sessions[0]}", timeout=30) as stream:
        messages = [json.loads(line[5:]) for line in stream if line.startswith(b"data:")]
    kinds = [m["msg"] for m in messages]
    assert kinds[-2:] == ["process_completed", "close_stream"] and set(kinds[:-2]) <= {"estimation", "process_starts"}
    assert len(kinds) < 10 and "no client read this request" in messages[-2]["output"]["error"]


def test_a_cancel_right_after_submit_stops_the_job(server, steps):
    url, _ = server
    client = Client(url, verbose=False)  # one session, as a script submitting and cancelling would have
    jobs = []
    for seed in range(6):
        job = client.submit(*LONG[:-2], seed, "en", api_name="/side_by_side")
        job.cancel()  # before the join has returned: gradio_client sends /cancel without an event id, then /reset
        jobs.append(job)
    took = probe_s(Client(url, verbose=False))
    assert took < 5  # unchecked: over 10 s behind the cancelled jobs
    before = steps[2000]
    time.sleep(1.0)
    assert steps[2000] == before < 4 * 2 * 2000 // 10  # nothing runs on, and little ran at all
    assert all(job.done() for job in jobs)


def test_wrong_joins_get_one_line_naming_the_problem(server):
    url, client = server
    with urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=30) as response:
        deps = json.loads(response.read())["dependencies"]
    in_browser = [d["id"] for d in deps if not d["backend_fn"]]  # per Stop: 2 to cancel, note, clear; load; take back
    assert len(in_browser) == 3 * 4 + 2  # 3 Stops: side by side, generate, scaling
    for fn in in_browser:
        assert raw_join(url, fn, []) == (
            400,
            {"detail": f"event {fn} runs in the browser only (to stop a generation: POST /gradio_api/cancel)"},
        )
    wrong = {"__type__": "validate", "is_valid": False, "parameter_name": "inputs"}  # Gradio's validator answer
    assert raw_join(url, "side_by_side", LONG[:3]) == (
        422,
        {"detail": [{**wrong, "message": "side_by_side takes 10 inputs, got 3"}]},
    )
    assert raw_join(url, "knockout", ["shakespeare", *[[]] * 4, "x", 0, 0, 1, 5, 1, 0, "en", 0])[1] == {
        "detail": [{**wrong, "message": "knockout takes 13 inputs, got 14"}]
    }
    with pytest.raises(Exception, match="side_by_side takes 10 inputs, got 11"):  # gradio_client sends what it is given
        client.predict(*LONG, 7, api_name="/side_by_side")
    assert raw_join(url, 999, [])[0] == 404 and "no event 999" in raw_join(url, 999, [])[1]["detail"]
    body = json.dumps({"data": ["shakespeare"]}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/gradio_api/call/generate", body, {"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    answer = json.loads(caught.value.read())["detail"][0]["message"]
    assert caught.value.code == 422 and answer == "generate takes 10 inputs, got 1"


def test_a_session_that_never_reads_is_refused_until_it_does(server, monkeypatch):
    url, _ = server
    monkeypatch.setattr(lab_clients, "MAX_UNREAD_JOINS", 2)
    session, short = uuid.uuid4().hex, ["shakespeare", "baseline", "KING:", 0, 0, 1, 5, 1, 0, "en"]
    assert [raw_join(url, "generate", short, session)[0] for _ in range(2)] == [200, 200]
    status, answer = raw_join(url, "generate", short, session)
    assert status == 429 and "made 2 requests without reading one" in answer["detail"]
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=30) as stream:
        done = [json.loads(line[5:]) for line in stream if b'"process_completed"' in line]
    assert len(done) == 2 and all(m["success"] for m in done)  # read in time: both ran
    assert raw_join(url, "generate", short, session)[0] == 200


def test_an_oversized_join_is_refused_unread(server):
    import urllib.error

    url, _ = server
    body = b'{"data": ["' + b"a" * (lab_clients.MAX_BODY_BYTES + 10) + b'"], "fn_index": 0}'
    request = urllib.request.Request(
        f"{url.rstrip('/')}/gradio_api/queue/join", body, {"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413 and b"over 8 MB" in caught.value.read()
