"""serving.ProcessServer: the lab's decoding in a process of its own, held to the same requests served here; and
the rules both servers keep for their models' names (serving/registry.py)."""

import gc
import itertools
import os
import threading
import time
import weakref
from pathlib import Path

import pytest
import torch

from conftest import UPDATES, sharpen, tiny_model
from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.generation.stream import TokenStream
from gpt2mini.serving.pool import StreamServer
from gpt2mini.serving.process import ProcessServer, portable
from gpt2mini.serving.registry import ChangedSinceRegistered, NotRegistered


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


def read(server, name, prompt, settings, top=0):
    return list(server.stream(name, prompt, settings, top))


def registered(server, model, name=None):
    """`model` registered with `server` under a name of its own (or `name`); returns the name."""
    name = name or f"model-{id(model):x}"
    server.register(name, model)
    return name


def tokens(server, name, prompt, settings, top=0):
    return [t for t, _, _ in read(server, name, prompt, settings, top)]


def modules_greedy(model, prompt, n=12):
    """The modules' own greedy decoding (no fast step): what a served model must give."""
    return TokenStream(model, [prompt], temperature=0, fast=False).take(n)[0]


@pytest.fixture(scope="module", params=["process", "thread"])
def either(request, server):
    """Both servers, held to the same rules: the ProcessServer of this module, and a StreamServer here."""
    return server if request.param == "process" else StreamServer(window=40)


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
    here = StreamServer(window=40)
    name = registered(server, m)
    here.register(name, m)
    got = {}

    def ask(k):
        n, settings, top = REQUESTS[k]
        got[k] = read(server, name, ids(n, seed=k), settings, top)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(REQUESTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for k, (n, settings, top) in enumerate(REQUESTS):
        want = read(here, name, ids(n, seed=k), settings, top)
        assert [t for t, _, _ in got[k]] == [t for t, _, _ in want] == alone(m, ids(n, seed=k), settings)
        for (_, likely, _), (_, expected, _) in zip(got[k], want, strict=True):
            assert (likely is None) == (expected is None) == (top == 0)
            if likely is not None:
                assert likely[1] == expected[1]  # the same likeliest tokens, their log-probabilities to 1e-5
                torch.testing.assert_close(torch.tensor(likely[2]), torch.tensor(expected[2]), atol=1e-5, rtol=0)
    assert server.busy() == 0


def test_what_changes_in_the_model_reaches_the_process(server):
    """An in-place update reaches the next request as it is (shared memory); a replaced parameter is refused until
    the model is registered again; a residual switch turned off reaches it once registered again. Each
    next request gets the tokens and log-probabilities that this process gives for the model as it is then, and
    each change changed them."""
    m = sharpen(tiny_model())
    here, sampled, prompt = (
        StreamServer(window=40),
        SamplingSettings(temperature=1.0, seed=4, max_new_tokens=40),
        ids(6),
    )
    name = registered(server, m)
    here.register(name, m)

    def both():
        got, want = read(server, name, prompt, sampled, top=3), read(here, name, prompt, sampled, top=3)
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
    for s in (server, here):
        with pytest.raises(ChangedSinceRegistered, match=r"transformer\.h\.0\.attn\.c_proj\.weight was assigned"):
            s.stream(name, prompt, sampled)
        s.register(name, m)
    seen.append(both())
    m.transformer.h[1].use_residual = False
    for s in (server, here):
        s.register(name, m)
    seen.append(both())
    for before, after in itertools.pairwise(seen):
        assert not torch.allclose(before, after, atol=1e-3)  # each change changed what was drawn, or how likely


def test_a_model_with_hooks_is_served_here(server):
    """A forward hook only the modules run: the model is never sent, its requests stay in this process and their
    tokens follow the hook; a hook added after registration is refused until the model is registered again."""
    m = sharpen(tiny_model())
    handle = m.transformer.h[0].mlp.register_forward_hook(lambda module, args, out: out * 0)
    greedy = SamplingSettings(temperature=0, max_new_tokens=30)
    prompt = ids(5, seed=3)
    name = registered(server, m)
    assert server.registry.names[name].key is None  # never sent to the process
    assert tokens(server, name, prompt, greedy) == alone(m, prompt, greedy)
    handle.remove()
    with pytest.raises(ChangedSinceRegistered, match="forward hooks were removed"):
        server.stream(name, prompt, greedy)
    server.register(name, m)
    assert server.registry.names[name].key in server.child.sent  # now it can go
    m.transformer.h[1].attn.register_forward_pre_hook(lambda module, args: None)
    with pytest.raises(ChangedSinceRegistered, match="forward hooks were added"):
        server.stream(name, prompt, greedy)


def test_models_the_process_cannot_step_as_the_modules_do_are_served_here(server):
    """Training mode and a module DecodeStep does not know: each registered model is decoded in this process by its
    modules; a model put in training mode after it was registered is refused until it is registered again."""
    greedy = SamplingSettings(temperature=0, max_new_tokens=20)

    class Unknown(torch.nn.Linear):  # a subclass: the fast step does not take it for a Linear
        pass

    m = sharpen(tiny_model())
    old = m.transformer.h[0].mlp.c_fc
    m.transformer.h[0].mlp.c_fc = new = Unknown(old.in_features, old.out_features)
    new.load_state_dict(old.state_dict())
    name = registered(server, m)
    assert server.registry.names[name].key is None
    assert tokens(server, name, ids(5), greedy) == modules_greedy(m, ids(5), 20)
    trained = sharpen(tiny_model()).train()  # no dropout in the tiny config: training mode decodes alike
    name = registered(server, trained)
    assert server.registry.names[name].key is None
    assert tokens(server, name, ids(5), greedy) == modules_greedy(trained, ids(5), 20)
    trained.eval()
    with pytest.raises(ChangedSinceRegistered, match="in eval mode now"):
        server.stream(name, ids(5), greedy)
    server.register(name, trained)
    assert server.registry.names[name].key in server.child.sent
    trained.train()
    with pytest.raises(ChangedSinceRegistered, match="in training mode now"):
        server.stream(name, ids(5), greedy)


def test_a_reader_that_stops_takes_its_request_out(server):
    m = sharpen(tiny_model())
    name = registered(server, m)
    reader = server.stream(name, ids(4), SamplingSettings(temperature=1.0, seed=1, max_new_tokens=100_000))
    assert len([next(reader) for _ in range(5)]) == 5
    reader.close()
    assert server.busy() == 0
    time.sleep(0.3)  # the leave reaches the process
    before = cpu_seconds(server.child.process.pid)
    time.sleep(1.0)
    assert cpu_seconds(server.child.process.pid) - before < 0.2  # it stopped decoding (it used a core before)
    greedy = SamplingSettings(temperature=0, max_new_tokens=20)
    assert tokens(server, name, ids(4), greedy) == alone(m, ids(4), greedy)  # the process goes on


def test_errors_reach_the_reader_and_a_dead_process_is_replaced(server):
    """A prompt the process refuses raises in the reader; a process that dies ends its requests with an error
    that says so, and the next request starts a new one, which gets the registered model then."""
    m = sharpen(tiny_model())
    name = registered(server, m)
    with pytest.raises(ValueError, match="token"):
        read(server, name, [10_000], SamplingSettings(max_new_tokens=3))
    reader = server.stream(name, ids(4), SamplingSettings(temperature=1.0, seed=1, max_new_tokens=100_000))
    next(reader)
    server.child.process.kill()
    with pytest.raises(RuntimeError, match="the decoding process stopped"):
        for _ in range(100_000):
            next(reader)
    deadline = time.monotonic() + 10
    while server.child.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    greedy = SamplingSettings(temperature=0, max_new_tokens=20)
    assert tokens(server, name, ids(4), greedy) == alone(m, ids(4), greedy)
    assert server.child.sent == {server.registry.names[name].key}  # the new process has what was asked of it


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
    name = registered(server, m)
    greedy = SamplingSettings(temperature=0, max_new_tokens=3)
    for k in range(30):
        server.stream(name, ids(4, seed=k), greedy).close()
    assert tokens(server, name, ids(4), greedy) == alone(m, ids(4), greedy)
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
    with pytest.warns(UserWarning, match="'unpicklable' in this process: it cannot go to the decoding process"):
        server.register("unpicklable", m)
    assert server.registry.names["unpicklable"].key is None
    assert tokens(server, "unpicklable", ids(5), greedy) == alone(m, ids(5), greedy)
    m.note = Unloadable()
    server.register("unloadable", m)
    for _ in range(2):  # every request for it, and only those
        with pytest.raises(RuntimeError, match="did not load in the decoding process.*does not load here"):
            read(server, "unloadable", ids(5), greedy)
    assert server.child.alive()  # the other models' requests go on
    fine = sharpen(tiny_model(seed=3))
    assert tokens(server, registered(server, fine), ids(5), greedy) == alone(fine, ids(5), greedy)


def test_an_unregistered_model_is_let_go_in_both_processes(server):
    m = sharpen(tiny_model())
    name = registered(server, m)
    read(server, name, ids(4), SamplingSettings(temperature=0, max_new_tokens=5))
    key, gone = server.registry.names[name].key, weakref.ref(m)
    assert key in server.child.sent
    server.unregister(name)
    assert key not in server.child.sent  # and "drop" went to the child
    with pytest.raises(NotRegistered, match=f"no model is registered as '{name}'"):
        server.stream(name, ids(4), SamplingSettings(max_new_tokens=3))
    del m
    gc.collect()
    assert gone() is None  # nothing here holds it any more


def test_settings_that_would_break_the_stepping_thread_are_refused():
    for bad in ({"keep_s": float("inf")}, {"keep_s": 0}, {"reply_s": float("nan")}, {"reply_s": -1}):
        with pytest.raises(ValueError, match="positive number of seconds"):
            StreamServer(**bad)
        with pytest.raises(ValueError, match="positive number of seconds"):
            ProcessServer(**bad)


# Every way a weight can change (conftest's UPDATES): those in place reach the next request as they are; every other
# one is noticed, refused until the model is registered again, and reaches the next request once it is. None is
# served stale.
IN_PLACE = {"AdamW fused", "AdamW foreach", "AdamW for-loop", "SGD", "load_state_dict", "copy_ under no_grad"}


def test_every_kind_of_change_is_either_in_place_or_noticed():
    assert IN_PLACE < set(UPDATES)


def served_greedy(server, name, prompt, n=12):
    """A greedy request's tokens, and the log-probability the server gave each."""
    got = read(server, name, prompt, SamplingSettings(temperature=0, max_new_tokens=n), top=1)
    return [t for t, _, _ in got], torch.tensor([likely[0] for _, likely, _ in got], dtype=torch.float64)


def modules_logp(model, prompt, drawn) -> torch.Tensor:
    """The log-probability of each drawn token under the model's own forward over the whole text: what a request
    served from the model as it is must report."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + drawn])).logits[0, len(prompt) - 1 : -1].double()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(drawn)[:, None])[:, 0]


@pytest.mark.parametrize("update", UPDATES, ids=UPDATES.keys())
def test_after_each_kind_of_change_the_next_request_gets_the_model_as_it_is(either, update):
    """The changes the fast decoder is held to (optimizer steps, loads, replaced parameters and modules, a dtype):
    the next request, to the process or to a StreamServer here, gets the tokens of the modules' own greedy decoding
    of the changed model, and its log-probabilities, at once for an in-place update, after registering it again for
    the rest (refused before). Each change but the dtype changed the log-probabilities."""
    m = sharpen(tiny_model())
    x = ids(7)
    name = registered(either, m)
    drawn, before = served_greedy(either, name, x)
    assert drawn == modules_greedy(m, x)
    m.train()
    UPDATES[update](m)
    m.eval()
    if update not in IN_PLACE:
        with pytest.raises(ChangedSinceRegistered, match=f"registered as '{name}' changed since it was registered"):
            either.stream(name, x, SamplingSettings(max_new_tokens=1))
        either.register(name, m)
    drawn, after = served_greedy(either, name, x)
    assert drawn == modules_greedy(m, x)
    torch.testing.assert_close(after, modules_logp(m, x, drawn), atol=1e-4, rtol=0)
    assert update == ".to(dtype)" or not torch.allclose(before, after, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# Names: what can go wrong between a name and its model, on both servers alike


def test_a_name_never_registered_is_one_clear_error(either):
    registered(either, sharpen(tiny_model()), "known")
    greedy = SamplingSettings(temperature=0, max_new_tokens=3)
    with pytest.raises(NotRegistered, match=r"no model is registered as 'unknown' \(registered: .*'known'"):
        either.stream("unknown", [1, 2], greedy)
    with pytest.raises(NotRegistered, match="by the name it was registered under, got a GPT2MiniForCausalLM"):
        either.stream(tiny_model(), [1, 2], greedy)  # the model itself, as before names
    with pytest.raises(NotRegistered, match="'unknown'"):
        either.unregister("unknown")
    with pytest.raises(TypeError, match="under a name"):
        either.register("", tiny_model())


def test_a_name_registered_again_serves_its_new_model_while_the_old_ones_requests_finish(either):
    old, new = sharpen(tiny_model(seed=1)), sharpen(tiny_model(seed=2))
    long, short = (SamplingSettings(temperature=0, max_new_tokens=n) for n in (200, 12))
    either.register("variant", old)
    running = either.stream("variant", ids(5), long)
    first = [next(running)[0] for _ in range(3)]
    was = either.registry.names["variant"].key
    either.register("variant", new)
    assert tokens(either, "variant", ids(5), short) == modules_greedy(new, ids(5))
    assert first + [t for t, _, _ in running] == alone(old, ids(5), long)  # the old one's request, on the old one
    assert tokens(either, "variant", ids(5), short) == modules_greedy(new, ids(5))
    if isinstance(either, ProcessServer):
        assert was is not None and was not in either.child.sent  # the old copy was let go once no name had it


def test_two_names_for_one_model_are_one_registration(either):
    """Both names serve it, from one copy in the process; registering it again under one renews both; unregistering
    one leaves the other serving."""
    m = sharpen(tiny_model())
    either.register("first", m)
    either.register("second", m)
    names = either.registry.names
    assert names["first"] is names["second"]
    x, greedy = ids(6), SamplingSettings(temperature=0, max_new_tokens=12)
    assert tokens(either, "first", x, greedy) == tokens(either, "second", x, greedy) == modules_greedy(m, x)
    UPDATES["a replaced module"](m)
    for name in ("first", "second"):
        with pytest.raises(ChangedSinceRegistered):
            either.stream(name, x, greedy)
    either.register("second", m)
    assert names["first"] is names["second"]
    assert tokens(either, "first", x, greedy) == modules_greedy(m, x)
    either.unregister("first")
    assert tokens(either, "second", x, greedy) == modules_greedy(m, x)
    if isinstance(either, ProcessServer):
        assert names["second"].key in either.child.sent


def test_a_request_walks_no_module_or_tensor_of_its_model(server, monkeypatch):
    """Once registered, a request to the process looks at none of the model's modules and tensors here."""
    m = sharpen(tiny_model())
    name = registered(server, m)
    greedy = SamplingSettings(temperature=0, max_new_tokens=12)
    want = tokens(server, name, ids(5), greedy)

    def walked(*args, **kwargs):
        raise AssertionError("a request walked the model")

    for method in ("modules", "named_modules", "parameters", "named_parameters", "buffers", "children"):
        monkeypatch.setattr(torch.nn.Module, method, walked)
    assert tokens(server, name, ids(5), greedy) == want


def test_the_lab_registers_each_model_once_and_names_it_in_every_request(monkeypatch):
    """The lab's models, registered when it is made and when it changes server (app.py --decoding process); an
    entry in two groups (or two labs) is one name; its requests name the entry's model, and the knockout tab, which
    steps a private copy with hooks on its own thread, never asks the server."""
    from conftest import tiny_lab
    from gpt2mini.lab.catalog import Lab
    from gpt2mini.lab.knockouts import run_knockout
    from gpt2mini.lab.streaming import generate_one, generate_panes

    lab = tiny_lab()
    entries = list(lab.group("shakespeare").values())
    assert sorted(lab.server.registry.names) == sorted(e.served_as for e in entries)
    other = Lab({"mine": lab.groups["shakespeare"], "again": {"b": entries[0]}})
    assert sorted(other.server.registry.names) == sorted(lab.server.registry.names)
    asked = []
    real = StreamServer.stream

    def stream(self, name, *args, **kwargs):
        asked.append(name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(StreamServer, "stream", stream)
    monkeypatch.setattr(StreamServer, "register", lambda *a: pytest.fail("registered again while serving"))
    *_, last = generate_panes(lab, "shakespeare", ["baseline", "residual_off"], "ROMEO:", 0.8, 40, 0.95, 20, 1.0, 0)
    *_, (text, status) = generate_one(lab, "shakespeare", "attention_off", "ROMEO:", 0.8, 40, 0.95, 20, 1.0, 0)
    assert asked == [entries[0].served_as, entries[1].served_as, entries[2].served_as]
    for _ in run_knockout(lab, "shakespeare", ["L1 H1"], [], [], [], "ROMEO:", 0.8, 40, 0.95, 20, 1.0, 0):
        pass
    assert len(asked) == 3  # the knockout tab never went through the server
    assert not any(m._forward_hooks or m._forward_pre_hooks for e in entries for m in e.model.modules())


def test_a_setting_changed_in_place_is_refused_until_registered_again(either):
    """A block's switch flipped on a served model (as `gpt2mini.probes.knockout(model, residual=[0])` does): the
    decoding process's copy would not see it, so the next request is refused, naming it, until the model is
    registered again; then it gets the modules' own greedy tokens."""
    m = sharpen(tiny_model())
    x = ids(7)
    name = registered(either, m)
    served_greedy(either, name, x)
    m.transformer.h[0].use_residual = False
    with pytest.raises(ChangedSinceRegistered, match="'use_residual' changed"):
        either.stream(name, x, SamplingSettings(max_new_tokens=1))
    either.register(name, m)
    drawn, _ = served_greedy(either, name, x)
    assert drawn == modules_greedy(m, x)
