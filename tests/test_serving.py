"""serving.ProcessServer: the lab's decoding in a process of its own, held to the same requests served here."""

import gc
import itertools
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import UPDATES, sharpen, tiny_model
from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.generation.stream import TokenStream
from gpt2mini.serving.pool import StreamServer
from gpt2mini.serving.process import ProcessServer, portable


@pytest.fixture(scope="module")
def server():
    server = ProcessServer(window=40).start()
    yield server
    server.close()


def ids(n, seed=1, vocab=97):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def alone(model, prompt, settings):
    """What a TokenStream of its own in this process draws for `prompt`: the reference."""
    return TokenStream(model, [prompt], window=40, **settings.stream_options()).take(settings.max_new_tokens)[0]


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (Linux /proc: utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read(server, model, prompt, settings, top=0):
    return list(server.stream(model, prompt, settings, top))


REQUESTS = [  # (prompt length, settings, top): sampled and greedy, filtered, penalized, some with likelihoods
    (5, SamplingSettings(temperature=0.8, top_k=20, seed=1, max_new_tokens=90), 4),
    (9, SamplingSettings(temperature=0, max_new_tokens=70), 0),
    (3, SamplingSettings(temperature=1.2, top_p=0.9, seed=2, max_new_tokens=60), 0),
    (12, SamplingSettings(temperature=0.7, repetition_penalty=1.3, seed=3, max_new_tokens=80), 2),
]


def test_requests_at_once_get_what_this_process_gives_them(server):
    """Threads asking at once, past the context: each gets the tokens and likelihoods a StreamServer here gives,
    and the tokens of a TokenStream of its own."""
    m = sharpen(tiny_model())
    got = {}

    def ask(k):
        n, settings, top = REQUESTS[k]
        got[k] = read(server, m, ids(n, seed=k), settings, top)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(REQUESTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    here = StreamServer(window=40)
    for k, (n, settings, top) in enumerate(REQUESTS):
        want = read(here, m, ids(n, seed=k), settings, top)
        assert [t for t, _, _ in got[k]] == [t for t, _, _ in want] == alone(m, ids(n, seed=k), settings)
        for (_, likely, _), (_, expected, _) in zip(got[k], want, strict=True):
            assert (likely is None) == (expected is None) == (top == 0)
            if likely is not None:
                assert likely[1] == expected[1]  # the same likeliest tokens, their log-probabilities to 1e-5
                torch.testing.assert_close(torch.tensor(likely[2]), torch.tensor(expected[2]), atol=1e-5, rtol=0)
    assert server.busy() == 0


def test_what_changes_in_the_model_reaches_the_process(server):
    """An in-place update (shared memory), a replaced parameter and a residual switch turned off (the model sent
    again): each next request gets the tokens and log-probabilities that this process gives for the model as it is
    then, and each change changed them."""
    m = sharpen(tiny_model())
    here, sampled, prompt = (
        StreamServer(window=40),
        SamplingSettings(temperature=1.0, seed=4, max_new_tokens=40),
        ids(6),
    )

    def both():
        got, want = read(server, m, prompt, sampled, top=3), read(here, m, prompt, sampled, top=3)
        assert [t for t, _, _ in got] == [t for t, _, _ in want] == alone(m, prompt, sampled)
        logp = torch.tensor([likely[0] for _, likely, _ in got])
        torch.testing.assert_close(logp, torch.tensor([likely[0] for _, likely, _ in want]), atol=1e-5, rtol=0)
        return logp

    seen = [both()]
    with torch.no_grad():
        m.transformer.h[1].mlp.c_fc.weight.mul_(-3)
    seen.append(both())
    c_proj = m.transformer.h[0].attn.c_proj
    c_proj.weight = torch.nn.Parameter(torch.randn_like(c_proj.weight))
    seen.append(both())
    m.transformer.h[1].use_residual = False
    seen.append(both())
    for before, after in itertools.pairwise(seen):
        assert not torch.allclose(before, after, atol=1e-3)  # each change changed what was drawn, or how likely


def test_a_model_with_hooks_is_served_here(server):
    """A forward hook only the modules run: the request stays in this process and its tokens follow the hook."""
    m = sharpen(tiny_model())
    m.transformer.h[0].mlp.register_forward_hook(lambda module, args, out: out * 0)
    greedy = SamplingSettings(temperature=0, max_new_tokens=30)
    prompt = ids(5, seed=3)
    assert [t for t, _, _ in read(server, m, prompt, greedy)] == alone(m, prompt, greedy)
    assert id(m) not in server.child.sent  # never sent to the process


def test_a_reader_that_stops_takes_its_request_out(server):
    m = sharpen(tiny_model())
    reader = server.stream(m, ids(4), SamplingSettings(temperature=1.0, seed=1, max_new_tokens=100_000))
    assert len([next(reader) for _ in range(5)]) == 5
    reader.close()
    assert server.busy() == 0
    time.sleep(0.3)  # the leave reaches the process
    before = cpu_seconds(server.child.process.pid)
    time.sleep(1.0)
    assert cpu_seconds(server.child.process.pid) - before < 0.2  # it stopped decoding (it used a core before)
    greedy = SamplingSettings(temperature=0, max_new_tokens=20)
    assert [t for t, _, _ in read(server, m, ids(4), greedy)] == alone(m, ids(4), greedy)  # the process goes on


def test_errors_reach_the_reader_and_a_dead_process_is_replaced(server):
    """A prompt the process refuses raises in the reader; a process that dies ends its requests with an error
    that says so, and the next request starts a new one."""
    m = sharpen(tiny_model())
    with pytest.raises(ValueError, match="token"):
        read(server, m, [10_000], SamplingSettings(max_new_tokens=3))
    reader = server.stream(m, ids(4), SamplingSettings(temperature=1.0, seed=1, max_new_tokens=100_000))
    next(reader)
    server.child.process.kill()
    with pytest.raises(RuntimeError, match="the decoding process stopped"):
        for _ in range(100_000):
            next(reader)
    deadline = time.monotonic() + 10
    while server.child.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    greedy = SamplingSettings(temperature=0, max_new_tokens=20)
    assert [t for t, _, _ in read(server, m, ids(4), greedy)] == alone(m, ids(4), greedy)


def test_an_error_that_cannot_travel_travels_as_its_text():
    class Odd(Exception):
        def __init__(self):
            super().__init__("odd")
            self.f = lambda: None  # cannot be pickled

    sent = portable(Odd())
    assert type(sent) is RuntimeError and "Odd: odd" in str(sent)
    assert type(portable(ValueError("plain"))) is ValueError


def test_a_request_closed_as_it_ends_leaves_the_process_serving(server):
    """Readers closed at once, so that the child often ends a request the parent has already let go: the answers
    that still come for it are dropped, and the process goes on serving."""
    m = sharpen(tiny_model())
    greedy = SamplingSettings(temperature=0, max_new_tokens=3)
    for k in range(30):
        server.stream(m, ids(4, seed=k), greedy).close()
    assert [t for t, _, _ in read(server, m, ids(4), greedy)] == alone(m, ids(4), greedy)
    assert server.busy() == 0


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this cannot be pickled")


def refuse_to_load():
    raise RuntimeError("this does not load here")


class Unloadable:
    def __reduce__(self):
        return refuse_to_load, ()


def test_a_model_that_cannot_travel_is_served_here_and_one_that_does_not_load_says_why(server):
    m = sharpen(tiny_model())
    m.note = Unpicklable()
    greedy = SamplingSettings(temperature=0, max_new_tokens=20)
    with pytest.warns(UserWarning, match="cannot go to the decoding process"):
        assert [t for t, _, _ in read(server, m, ids(5), greedy)] == alone(m, ids(5), greedy)
    assert id(m) not in server.child.sent
    m.note = Unloadable()
    with pytest.raises(RuntimeError, match="did not load in the decoding process.*does not load here"):
        read(server, m, ids(5), greedy)
    assert server.child.alive()  # the other models' requests go on


def test_a_model_collected_here_is_let_go_there(server):
    m = sharpen(tiny_model())
    read(server, m, ids(4), SamplingSettings(temperature=0, max_new_tokens=5))
    key = id(m)
    assert key in server.child.sent
    del m
    gc.collect()
    assert key not in server.child.sent  # and "drop" went to the child


def test_settings_that_would_break_the_stepping_thread_are_refused():
    for bad in ({"keep_s": float("inf")}, {"keep_s": 0}, {"reply_s": float("nan")}, {"reply_s": -1}):
        with pytest.raises(ValueError, match="positive number of seconds"):
            StreamServer(**bad)
        with pytest.raises(ValueError, match="positive number of seconds"):
            ProcessServer(**bad)


@pytest.mark.parametrize("update", UPDATES.values(), ids=UPDATES.keys())
def test_after_each_kind_of_change_the_next_request_gets_the_model_as_it_is(server, update):
    """The changes the fast decoder is held to (optimizer steps, loads, replaced parameters and modules, a dtype):
    the next request to the process equals the modules' own greedy decoding of the changed model."""
    m = sharpen(tiny_model())
    x, greedy = ids(7), SamplingSettings(temperature=0, max_new_tokens=12)
    reference = TokenStream(m, [x], temperature=0, fast=False).take(12)[0]
    assert [t for t, _, _ in read(server, m, x, greedy)] == reference
    m.train()
    update(m)
    m.eval()
    assert [t for t, _, _ in read(server, m, x, greedy)] == TokenStream(m, [x], temperature=0, fast=False).take(12)[0]
