"""Continuous batching: `StreamPool` advances all requests for one model together in one batched `DecodeStep`
(requests join and leave between steps, each row with its own slots, settings and generator); `StreamServer` steps
every model's pool on one thread of its own, and hands each request its tokens through a `PoolReader`. A request
names its model by the name it was registered under (registry.py's rules).
"""

import collections
import math
import queue
import threading
import time
from collections.abc import Sequence

import torch

from gpt2mini.generation.sampling import SamplingSettings, checked_prompts, draw, seeded_generator
from gpt2mini.generation.step import DecodeStep, KVBuffer, OwnSlots
from gpt2mini.serving.registry import Registration, Registry
from modeling_gpt2mini import GPT2MiniForCausalLM


class PoolRow:
    """One request in a `StreamPool`: its settings and generator, every token so far, and where it stands: the
    buffer row it holds (`index`; its next-token logits are the pool's `logits[index]`), the slots of that row in
    use (`length`), its next token's position, how many tokens it may still draw (`left`), how many likeliest
    tokens it reports with each token (`top`) and its share of the steps' time so far (`seconds`: each step's time
    over the rows it served)."""

    def __init__(self, pool: "StreamPool", ids: list[int], settings: SamplingSettings, top: int):
        self.pool, self.settings, self.history, self.top = pool, settings, list(ids), top
        self.generator = seeded_generator(settings.seed, pool.device)
        self.index, self.length, self.position, self.left = -1, 0, 0, settings.max_new_tokens
        self.seconds = 0.0

    @property
    def logits(self) -> torch.Tensor:
        """(1, V): the logits of this row's next token, before any filtering."""
        return self.pool.logits[self.index : self.index + 1]


class StreamPool:
    """The streams of one model, one row each, advanced together by one batched `DecodeStep` per `step()`: rows join
    and leave between steps (continuous batching, as vLLM and TGI serve language models).

    Each row draws its own token with its own settings and generator (`draw`, as `TokenStream` does for one prompt;
    rows with equal settings in one call), so the same seed gives the same text whoever else is in the pool; a test
    holds every row to a `TokenStream` of its own. Rows sit at different lengths: each writes its own slot of the
    shared `KVBuffer`, and the buffer's bias shows each row its own slots only. Past the context a row slides alone,
    as `TokenStream` slides. The rows in use are the buffer's first ones (a row that leaves is replaced by the last),
    so a step reads no empty row. The buffer, with the rows' logits and seen tokens, doubles when it is full
    (`reserve` makes room for several joins at once) and is kept when the pool empties, for the rows that come next
    (requests that start together end together); `free()` gives it back. Where `DecodeStep` cannot run (hooks,
    training mode, modules it does not know) each row goes through the model's own forward instead. A step makes a
    few calls into torch per row and the rest per pool: each call lets other Python threads in, which under load is
    what a step waits for (process.py's `ProcessServer` steps in a process of its own).
    """

    def __init__(self, model: GPT2MiniForCausalLM, window: int | None = None):
        cfg = model.config
        self.model, self.config, self.rows = model, cfg, []
        # read once: the buffer is sized by them (a transformers config's attributes are slow to read, ~1 us each)
        self.n_positions, self.n_head, self.vocab_size = cfg.n_positions, cfg.n_head, cfg.vocab_size
        self.window = window if window is not None else self.n_positions * 3 // 4
        if not 0 < self.window < self.n_positions:
            raise ValueError(f"window must be between 1 and {self.n_positions - 1}, got {self.window}")
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.shape = StreamPool._shape(model)  # what the buffer is made for (`fits`)
        self.fast = DecodeStep(model)
        self.relative = cfg.use_position_embeddings and cfg.position_style == "rope"
        self.cache: KVBuffer | None = None
        self.parts: dict[int, tuple[KVBuffer, torch.Tensor]] = {}  # n: the buffer's first n rows, their (row, head)s
        self.logits = torch.empty(0, self.vocab_size, device=self.device)  # (rows held, V), float
        self.seen = torch.empty(0, self.vocab_size, dtype=torch.bool, device=self.device)

    def fits(self) -> bool:
        """Whether the model still needs the buffer this pool was made with (device, dtype, cache geometry), so that
        an emptied pool may serve it again."""
        return self.shape == StreamPool._shape(self.model)

    @staticmethod
    def _shape(model: GPT2MiniForCausalLM) -> tuple:
        cfg, param = model.config, next(model.parameters())
        geometry = (cfg.n_layer, cfg.n_head, cfg.n_positions, cfg.n_embd, cfg.vocab_size)
        return geometry, cfg.use_position_embeddings, cfg.position_style, param.device, param.dtype

    def join(self, ids: Sequence[int], settings: SamplingSettings, top: int = 0) -> PoolRow:
        """A new row for the prompt `ids` (its last n_positions tokens), drawing `settings.max_new_tokens` tokens,
        each reported with its log-probability and the `top` likeliest tokens (see `step`)."""
        (ids,) = checked_prompts([ids], self.vocab_size)
        row = PoolRow(self, ids, settings, top)
        self.reserve(len(self.rows) + 1)
        row.index = len(self.rows)
        self.rows.append(row)
        try:
            self.seen[row.index] = False
            self.seen[row.index, torch.tensor(ids, device=self.device)] = True
            self.logits[row.index] = self._prefill(row, ids[-self.n_positions :])[0]
        except BaseException:  # a prompt that did not go in leaves nothing behind
            self.leave(row)
            raise
        row.position = row.length
        return row

    def leave(self, row: PoolRow) -> None:
        """Take `row` out (its buffer row goes to the last row in use, moved there)."""
        if row not in self.rows:
            return
        last = self.rows.pop()
        if last is not row:
            self._move(last, row.index)
            self.rows[row.index] = last
        row.index = -1

    def free(self) -> None:
        """Give back the buffer of an empty pool (the next join allocates one again)."""
        if self.rows:
            raise RuntimeError(f"a pool with {len(self.rows)} rows keeps its buffer")
        self.cache, self.parts = None, {}
        self.logits, self.seen = self.logits[:0].clone(), self.seen[:0].clone()

    @torch.inference_mode()
    def step(self) -> list[tuple[PoolRow, int, tuple | None]]:
        """Draw one token for every row and feed it back; return (row, token, likelihood) for each, the likelihood
        for rows that asked for it (`top` > 0): (the token's log-probability, the `top` likeliest tokens, their
        log-probabilities). A row that has drawn its last token leaves the pool."""
        start, served = time.perf_counter(), list(self.rows)
        tokens = self._draw(served)
        likely = self._likelihoods(served, tokens)
        drawn = []
        for row, token, said in zip(served, tokens, likely, strict=True):
            row.history.append(token)
            row.left -= 1
            drawn.append((row, token, said))
        for row in [r for r in served if r.left == 0]:
            self.leave(row)
        for row in self.rows:
            if row.length == self.n_positions:
                self._slide(row)
        if self.rows:
            self._advance()
        share = (time.perf_counter() - start) / max(len(served), 1)
        for row in served:
            row.seconds += share
        return drawn

    def _draw(self, rows: list[PoolRow]) -> list[int]:
        """Each row's next token: rows with the same settings (but seeds) in one `draw`, each with its generator."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            s = r.settings
            groups.setdefault((s.temperature, s.top_k, s.top_p, s.repetition_penalty), []).append(i)
        n = len(rows)
        if len(groups) == 1:  # one draw over the pool's own rows (the seen tokens are marked in place)
            return draw(self.logits[:n], rows[0].settings, [r.generator for r in rows], self.seen[:n]).tolist()
        tokens = [0] * n
        for members in groups.values():
            at = torch.tensor(members, device=self.device)
            seen = self.seen[at]
            picked = draw(self.logits[at], rows[members[0]].settings, [rows[i].generator for i in members], seen)
            self.seen[at] = seen
            for i, token in zip(members, picked.tolist(), strict=True):
                tokens[i] = token
        return tokens

    def _likelihoods(self, rows: list[PoolRow], tokens: list[int]) -> list[tuple | None]:
        """For the rows that asked (`top`), computed for all rows at once: (log-probability of the token drawn, the
        likeliest tokens, their log-probabilities), from the logits before any filtering."""
        k = max((r.top for r in rows), default=0)
        if k == 0:
            return [None] * len(rows)
        logp = torch.log_softmax(self.logits[: len(rows)], dim=-1)
        chosen = logp.gather(1, torch.tensor(tokens, device=self.device)[:, None])[:, 0].tolist()
        best = logp.topk(min(k, self.vocab_size), dim=-1)
        ids, values = best.indices.tolist(), best.values.tolist()
        return [(chosen[i], ids[i][: r.top], values[i][: r.top]) if r.top else None for i, r in enumerate(rows)]

    def _advance(self) -> None:
        """Every row's newest token through the model at the row's own slot and position: the next logits."""
        rows, n = self.rows, len(self.rows)
        tokens = torch.tensor([r.history[-1] for r in rows], device=self.device)
        positions = torch.tensor([r.position for r in rows], device=self.device)
        if self.fast.usable():
            part, heads = self._part(n)
            slots = [r.length for r in rows]
            own = OwnSlots(heads, torch.tensor(slots, device=self.device).repeat_interleave(self.n_head), max(slots))
            part.bias[heads, 0, own.slots] = 0  # each row sees its new slot
            self.logits[:n] = self.fast(tokens, positions, part, own)
            for r in rows:
                r.length += 1
        else:  # the modules, one row at a time (`_forward` counts the slot): what hooks, training mode and unknown
            # modules need
            for i, r in enumerate(rows):
                self.logits[i] = self._forward(r, tokens[i : i + 1, None], positions[i : i + 1, None])[0]
        for r in rows:
            r.position += 1

    def _part(self, n: int) -> tuple[KVBuffer, torch.Tensor]:
        """The buffer's first n rows as a buffer of their own, and their (row, head) indices: made once per n and
        buffer (a step makes no views; every call into torch lets other threads in), dropped with the buffer."""
        if n not in self.parts:
            self.parts[n] = (self.cache.part(0, n), torch.arange(n * self.n_head, device=self.device))
        return self.parts[n]

    def _forward(self, row: PoolRow, ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`ids` (1, t) through the model over `row`'s own part of the buffer from its slot `length`; (1, V) logits."""
        part = self.cache.part(row.index, row.index + 1)
        part.length = row.length
        out = self.model(input_ids=ids, position_ids=position_ids, cache=part, use_cache=True, logits_to_keep=1)
        end = row.length + ids.shape[1]
        self.cache.bias[row.index * self.n_head : (row.index + 1) * self.n_head, :, row.length : end] = 0
        row.length = end
        return out.logits[:, -1, :].float()

    @torch.inference_mode()
    def _prefill(self, row: PoolRow, ids: list[int]) -> torch.Tensor:
        """Fill `row`'s part of the buffer from slot 0 with `ids`; the rest of it is hidden. Returns the next logits."""
        nh = self.n_head
        self.cache.bias[row.index * nh : (row.index + 1) * nh] = torch.finfo(self.dtype).min
        row.length = 0
        return self._forward(row, torch.tensor([ids], device=self.device))

    def _slide(self, row: PoolRow) -> None:
        """A row whose part of the buffer is full keeps its last `window` tokens, as `TokenStream` does: with rotary
        positions their cache as it is, moved to the front; otherwise re-encoded at positions 0.. (all but the
        newest token, which the step then feeds)."""
        if self.relative:
            nh, w, start = self.n_head, self.window, row.length - self.window
            for c in self.cache.qkv:
                c[row.index, :, :w] = c[row.index, :, start : row.length].clone()
            self.cache.bias[row.index * nh : (row.index + 1) * nh, :, w:] = torch.finfo(self.dtype).min
            row.length = w
        else:
            self._prefill(row, row.history[-self.window : -1])
            row.position = row.length

    def reserve(self, rows: int) -> None:
        """A buffer that holds `rows` rows: allocated for the first, doubled (rows copied over) until it does."""
        have = 0 if self.cache is None else self.cache.qkv[0].shape[0]
        if rows <= have:
            return
        size = max(1, have)
        while size < rows:
            size *= 2
        bigger = KVBuffer(self.config, size, self.device, self.dtype)
        if self.cache is not None:
            for old, new in zip(self.cache.qkv, bigger.qkv, strict=True):
                new[:have] = old
            bigger.bias[: self.cache.bias.shape[0]] = self.cache.bias
        self.cache, self.parts = bigger, {}
        logits, seen = self.logits, self.seen
        self.logits = torch.zeros(size, self.vocab_size, device=self.device)
        self.seen = torch.zeros(size, self.vocab_size, dtype=torch.bool, device=self.device)
        self.logits[:have], self.seen[:have] = logits[:have], seen[:have]

    def _move(self, row: PoolRow, index: int) -> None:
        """Copy `row`'s part of the buffer, its logits and seen tokens to row `index`, and let it live there."""
        nh = self.n_head
        for c in self.cache.qkv:
            c[index] = c[row.index]
        self.cache.bias[index * nh : (index + 1) * nh] = self.cache.bias[row.index * nh : (row.index + 1) * nh]
        self.logits[index], self.seen[index] = self.logits[row.index], self.seen[row.index]
        row.index = index


class PoolTicket:
    """One request to a `StreamServer`: what it asked for, and the queue its tokens come back on, a list at a time:
    its first token at once, then what was drawn every DELIVER_S (each reader wakes a few times a second, not once
    per token: many threads woken per step would keep the stepping thread waiting for Python's lock)."""

    def __init__(self, model, ids: list[int], settings: SamplingSettings, top: int, tokens=None):
        self.model, self.ids, self.settings, self.top = model, ids, settings, top
        # lists of (token, likelihood, seconds), or an error: a queue, or anything with its `put` (process.py's
        # `Outbox`)
        self.tokens = queue.SimpleQueue() if tokens is None else tokens
        self.drawn: list[tuple] = []  # not yet delivered
        self.delivered = -math.inf  # when the last list went
        self.gone = False  # set by the reader that stops early: the row leaves at the next step
        self.row: PoolRow | None = None

    def add(self, item: tuple, last: bool) -> None:
        """Keep a drawn token; deliver what is kept if it is the first, the last or DELIVER_S has passed."""
        self.drawn.append(item)
        now = time.monotonic()
        if last or now - self.delivered >= DELIVER_S:
            self.tokens.put(self.drawn)
            self.drawn, self.delivered = [], now


class PoolReader:
    """The tokens of one request to a `StreamServer` as they are drawn: an iterator of (token, likelihood, seconds)
    that ends after `max_new_tokens`; an error of the decoding thread is raised here. `close()` (or dropping the
    reader) takes the request out of its pool at the next step."""

    def __init__(self, ticket: PoolTicket, reply_s: float):
        self.ticket, self.reply_s, self.ready, self.given = ticket, reply_s, collections.deque(), 0

    def __iter__(self) -> "PoolReader":
        return self

    def __next__(self) -> tuple:
        if self.given == self.ticket.settings.max_new_tokens:
            self.close()
            raise StopIteration
        if not self.ready:
            try:
                items = self.ticket.tokens.get(timeout=self.reply_s)
            except queue.Empty:
                self.close()
                raise RuntimeError(f"no token came from the decoding thread in {self.reply_s:g} s") from None
            if isinstance(items, BaseException):
                self.close()
                raise items
            self.ready.extend(items)
        self.given += 1
        return self.ready.popleft()

    def close(self) -> None:
        self.ticket.gone = True

    __del__ = close


DELIVER_S = 0.03  # how often a StreamServer hands a request the tokens drawn for it (its first one at once)


class StreamServer:
    """Every model's `StreamPool`, stepped in turn on one thread of its own while any has a row: a lab's requests
    join their model's pool and read their tokens from a queue (`stream`), so one batched step serves every user of
    a model at once. The thread waits when nothing is asked and starts again on the next request; an error in a
    pool's step ends each of its requests with that error, raised in the thread that reads it. A pool that empties
    is kept `keep_s` seconds with its buffer for the requests that come next (a class's requests come in waves),
    then dropped with its model. Its models are registered by name (`register`; registry.py's rules); a request
    names one (`stream`)."""

    def __init__(self, window: int | None = None, reply_s: float = 120.0, keep_s: float = 10.0):
        for name, value in (("reply_s", reply_s), ("keep_s", keep_s)):
            if not 0 < value <= threading.TIMEOUT_MAX:
                raise ValueError(f"{name} must be a positive number of seconds up to {threading.TIMEOUT_MAX:g}")
        self.window, self.reply_s, self.keep_s = window, reply_s, keep_s
        self.registry = Registry()
        self.pools: dict[int, StreamPool] = {}  # id(model): a pool holds its model, so ids stay
        self.idle: dict[int, float] = {}  # id(model): since when its pool has had no request (time.monotonic())
        self.tickets: dict[int, list[PoolTicket]] = {}  # id(model): the tickets in its pool
        self.waiting: list[PoolTicket] = []
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None

    def register(self, name: str, model) -> None:
        """Serve `model` as `name` from the next request on: once, and again after any change to it but an in-place
        update of its weights (registry.py's rules). A name registered again with another model serves that one to
        the requests that come after; those running end on the model they started with."""
        self.registry.bind(name, Registration(model))

    def unregister(self, name: str) -> None:
        """Forget `name` (its running requests end as they would); a model no name refers to is no longer held."""
        self.registry.unbind(name)

    def stream(self, name: str, ids: Sequence[int], settings: SamplingSettings, top: int = 0) -> "PoolReader":
        """Join the pool of the model registered as `name` now with the prompt `ids`; the reader yields (token,
        likelihood, the row's `seconds`) for each of `settings.max_new_tokens` tokens (the likelihood as
        `StreamPool.step` gives it, with the `top` likeliest tokens; None for top 0). Closing the reader early takes
        the request out. A name not registered is a `NotRegistered` error, a model changed since it was registered
        in a way that is noticed a `ChangedSinceRegistered` error (registry.py), raised here."""
        return self.stream_model(self.registry.lookup(name).model, ids, settings, top)

    def stream_model(self, model, ids: Sequence[int], settings: SamplingSettings, top: int = 0) -> "PoolReader":
        """`stream` for a model itself, registered or not (`ProcessServer`'s models that are served in this process
        come here)."""
        ticket = PoolTicket(model, list(ids), settings, top)
        self.submit(ticket)
        return PoolReader(ticket, self.reply_s)

    def submit(self, ticket: PoolTicket) -> None:
        """Queue `ticket` to join its model's pool at the next step; its tokens go to `ticket.tokens`, and setting
        `ticket.gone` takes it out."""
        with self.wake:
            self.waiting.append(ticket)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="stream-server", daemon=True)
                self.thread.start()
            self.wake.notify()

    def busy(self) -> int:
        """Requests being decoded or waiting to join."""
        with self.wake:
            return len(self.waiting) + sum(len(t) for t in self.tickets.values())

    def _run(self) -> None:
        while True:
            with self.wake:
                self._drop_idle_pools()
                while not self.waiting and not self.tickets:
                    self.wake.wait(timeout=self.keep_s if self.idle else None)
                    self._drop_idle_pools()
                joining, self.waiting = self.waiting, []
            self._admit(joining)
            del joining  # while this thread waits, no ticket (nor its model) is kept alive by it
            for key in list(self.tickets):
                self._step(key)

    def _drop_idle_pools(self) -> None:
        """Drop the pools (their buffers, their models) that have had no request for `keep_s` seconds."""
        now = time.monotonic()
        for key in [k for k, since in self.idle.items() if now - since >= self.keep_s]:
            del self.pools[key], self.idle[key]

    def _admit(self, joining: list[PoolTicket]) -> None:
        """Each ticket joins its model's pool (made if need be), whose buffer first grows for all that join it."""
        for ticket in joining:
            self._renew_if_stale(id(ticket.model))
        for key, count in collections.Counter(id(t.model) for t in joining).items():
            if key in self.pools:
                try:
                    self.pools[key].reserve(len(self.pools[key].rows) + count)
                except Exception:  # each join then grows the buffer itself, and a failure is its request's error
                    pass
        for ticket in joining:
            self._join(ticket)

    def _renew_if_stale(self, key: int) -> None:
        """An idle pool whose model changed since it was made (device, dtype, cache geometry, positions) is dropped,
        so that its buffer does not outlive what it was made for (its `DecodeStep` looks again at a model whose
        modules or parameters were replaced by itself)."""
        if key in self.idle and not self.pools[key].fits():
            del self.pools[key], self.idle[key]

    def _join(self, ticket: PoolTicket) -> None:
        key = id(ticket.model)
        try:
            if key not in self.pools:
                self.pools[key] = StreamPool(ticket.model, self.window)
            ticket.row = self.pools[key].join(ticket.ids, ticket.settings, ticket.top)
        except Exception as e:  # a prompt the pool refuses: that request's error, raised where it is read
            if key not in self.tickets and key not in self.idle:  # a pool made for it alone does not keep the model
                del self.pools[key]
            ticket.tokens.put(e)
            return
        self.idle.pop(key, None)
        with self.wake:
            self.tickets.setdefault(key, []).append(ticket)

    def _step(self, key: int) -> None:
        """One step of a model's pool: the requests whose readers left go first; the tokens go to their queues."""
        pool = self.pools[key]
        for ticket in [t for t in self.tickets[key] if t.gone]:
            pool.leave(ticket.row)
        try:
            drawn = pool.step() if pool.rows else []
        except Exception as e:  # every request of this pool ends with it: none gets a wrong token silently
            for ticket in self.tickets[key]:
                ticket.tokens.put(e)
            pool.rows = []
            drawn = []
        by_row = {id(t.row): t for t in self.tickets[key]}
        for row, token, likely in drawn:
            by_row[id(row)].add((token, likely, row.seconds), last=row.left == 0)  # every row has its ticket
        with self.wake:
            self.tickets[key] = [t for t in self.tickets[key] if t.row in pool.rows]
            if not self.tickets[key]:  # kept keep_s seconds for the next requests (`_drop_idle_pools`)
                del self.tickets[key]
                self.idle[key] = time.monotonic()
