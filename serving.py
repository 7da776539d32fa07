"""Decoding in a process of its own: a `StreamServer` whose stepping thread runs outside the lab's Python lock.

`StreamServer` steps every request of a model in one batched step, on one thread. In the lab that thread shares
Python's lock with Gradio's event loop and the request handlers, and waits for it after each call into torch: under
16 clients it ran about 60% of the time and served half of what it serves alone (docs/performance.md, "Serving a
class"). `ProcessServer` runs the same `StreamServer` in a child process, so its steps wait for no one:

    server = ProcessServer()                 # the process starts on the first request
    for token, likelihood, seconds in server.stream(model, ids, SamplingSettings(seed=1, max_new_tokens=50)):
        ...

- The child gets each model once, its tensors moved to shared memory (`share_memory()`), so the child reads the
  parent's weights, not a copy: an in-place update (an optimizer step, `load_state_dict`, an edit under `no_grad`)
  reaches the next step there as it does in the parent.
- What the child cannot see, it does not serve: before each request the model's parameters (which objects, where
  their memory is, dtype, shape) and its residual switches are compared with what was sent, and the model is sent
  again if any changed. A model the fast step would not run (training mode, hooks, modules `DecodeStep` does not
  know), or one not on the CPU, is served by a `StreamServer` in this process, which runs the modules.
- The same seed gives the same tokens as in this process (a test holds them to `TokenStream`).
- If the child dies, every open request ends with an error naming it, and the next request starts a new child.
"""

import contextlib
import itertools
import multiprocessing
import queue
import sys
import threading

import torch

from generation_gpt2mini import DecodeStep, PoolReader, PoolTicket, SamplingSettings, StreamServer

STOP = None  # what the sending threads are told to stop with


def servable(model) -> bool:
    """Whether the child process can serve `model`: on the CPU, and steppable by `DecodeStep` (not training, no
    hooks, only the modules it knows), so that what the child runs is what this process would."""
    return next(model.parameters()).device.type == "cpu" and DecodeStep(model).usable()


def fingerprint(model) -> tuple:
    """What the child's copy of `model` must still match: each parameter's object, memory, dtype and shape, and
    each block's residual switch (knockouts set it on the module)."""
    params = tuple((id(p), p.data_ptr(), p.dtype, tuple(p.shape)) for p in model.parameters())
    return params, tuple(b.use_residual for b in model.transformer.h)


class ProcessServer:
    """`StreamServer`'s interface (`stream`, `busy`), with the steps in a child process (see the module docstring)."""

    def __init__(self, window: int | None = None, reply_s: float = 120.0, keep_s: float = 10.0, threads: int = 1):
        self.window, self.reply_s, self.keep_s, self.threads = window, reply_s, keep_s, threads
        self.local = StreamServer(window, reply_s, keep_s)  # the models the child cannot serve
        self.lock = threading.Lock()
        self.child: Child | None = None

    def start(self) -> "ProcessServer":
        """Start the child now (a few seconds: it imports torch) rather than on the first request."""
        with self.lock:
            self._running()
        return self

    def _running(self) -> "Child":
        if self.child is None or not self.child.alive():
            self.child = Child(self.window, self.keep_s, self.threads)
        return self.child

    def stream(self, model, ids, settings: SamplingSettings, top: int = 0) -> PoolReader:
        """As `StreamServer.stream`: join `model`'s pool with the prompt `ids`; the reader yields (token,
        likelihood, seconds) for each of `settings.max_new_tokens` tokens."""
        if not servable(model):
            return self.local.stream(model, ids, settings, top)
        with self.lock:
            child = self._running()
            request, ticket = child.join(model, list(ids), settings, top)
        return ChildReader(ticket, self.reply_s, lambda: child.leave(request))

    def busy(self) -> int:
        """Requests being decoded or waiting to join, here and in the child."""
        child = self.child
        return self.local.busy() + (child.busy() if child is not None else 0)

    def close(self) -> None:
        """Stop the child (its requests end with an error)."""
        with self.lock:
            if self.child is not None:
                self.child.stop()
                self.child = None


class ChildReader(PoolReader):
    """A `PoolReader` whose `close()` (or its dropping) also tells the child to take the request out."""

    def __init__(self, ticket: PoolTicket, reply_s: float, leave):
        super().__init__(ticket, reply_s)
        self.leave = leave

    def close(self) -> None:
        if not self.ticket.gone:
            self.ticket.gone = True
            self.leave()

    __del__ = close


class Child:
    """One decoding process and the two threads that talk to it: one sends (models, joins, leaves: in order,
    from a queue, so that a reader's `close` from any thread, or from the garbage collector, never waits), one
    receives the tokens and hands them to their requests' queues."""

    def __init__(self, window: int | None, keep_s: float, threads: int):
        ctx = multiprocessing.get_context("spawn")  # fork would copy the lab's threads' locks mid-use
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child_end, window, keep_s, threads), name="decoder", daemon=True)
        with main_unnamed():
            self.process.start()
        child_end.close()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.tickets: dict[int, PoolTicket] = {}  # request id: its ticket, until its last token or error
        self.sent: dict[int, tuple] = {}  # id(model): the fingerprint the child has (the model kept alive below)
        self.models: dict[int, object] = {}
        self.ids = itertools.count()
        self.dead: BaseException | None = None
        threading.Thread(target=self._send, name="decoder-send", daemon=True).start()
        threading.Thread(target=self._receive, name="decoder-receive", daemon=True).start()

    def alive(self) -> bool:
        return self.dead is None and self.process.is_alive()

    def busy(self) -> int:
        return len(self.tickets)

    def join(self, model, ids: list[int], settings: SamplingSettings, top: int) -> tuple[int, PoolTicket]:
        """Send `model` if the child lacks it as it is now, then the request: its id, and the ticket that gets its
        tokens."""
        key, now = id(model), fingerprint(model)
        if self.sent.get(key) != now:
            model.share_memory()  # in place: the parameters stay the same objects, their memory becomes shared
            now = fingerprint(model)  # the memory moved
            self.outbox.put(("model", key, model))
            self.sent[key], self.models[key] = now, model
        request = next(self.ids)
        ticket = PoolTicket(model, ids, settings, top)
        self.tickets[request] = ticket
        self.outbox.put(("join", request, key, ids, settings, top))
        return request, ticket

    def leave(self, request: int) -> None:
        """The reader of `request` stopped: the child takes it out, if it has not ended already."""
        if self.tickets.pop(request, None) is not None:
            self.outbox.put(("leave", request))

    def stop(self) -> None:
        self.outbox.put(STOP)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()

    def _send(self) -> None:
        while (message := self.outbox.get()) is not STOP:
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # the child is gone: _receive ends the requests
                return
        self.conn.close()

    def _receive(self) -> None:
        try:
            while True:
                for request, items, done in self.conn.recv():
                    ticket = self.tickets.pop(request) if done else self.tickets.get(request)
                    if ticket is not None:
                        ticket.tokens.put(items)
        except (EOFError, OSError) as e:
            self.dead = RuntimeError(f"the decoding process stopped (exit code {self.process.exitcode}): {e!r}")
        for ticket in list(self.tickets.values()):
            ticket.tokens.put(self.dead)
        self.tickets.clear()


class Outbox:
    """In the child: a request's token queue (`PoolTicket.tokens`), whose lists go to the parent with its id."""

    def __init__(self, request: int, tokens: int, out: queue.SimpleQueue, tickets: dict):
        self.request, self.left, self.out, self.tickets = request, tokens, out, tickets

    def put(self, items) -> None:
        if isinstance(items, BaseException):
            items, self.left = portable(items), 0
        else:
            self.left -= len(items)
        if self.left == 0:  # its last list: the request is over
            self.tickets.pop(self.request, None)
        self.out.put((self.request, items, self.left == 0))


@contextlib.contextmanager
def main_unnamed():
    """While a child is spawned, the parent's `__main__` shows no file or module name, so the child does not import
    it again (the lab's app.py would bring Gradio into the decoding process): `serve` needs only this module."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


def portable(error: BaseException) -> BaseException:
    """`error` if it survives pickling, else a RuntimeError with its text."""
    try:
        multiprocessing.reduction.ForkingPickler.dumps(error)
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def serve(conn, window: int | None, keep_s: float, threads: int) -> None:  # long: the child's whole life, one loop
    """The child process: a `StreamServer` fed from `conn` (models, joins, leaves); the tokens go back on it, all
    that is ready in one message."""
    torch.set_num_threads(threads)
    server = StreamServer(window, reply_s=float("inf"), keep_s=keep_s)
    out: queue.SimpleQueue = queue.SimpleQueue()
    models, tickets = {}, {}

    def send_back() -> None:
        while (first := out.get()) is not STOP:
            batch = [first]
            while not out.empty():
                batch.append(out.get())
            conn.send(batch)

    threading.Thread(target=send_back, name="decoder-send-back", daemon=True).start()
    try:
        while True:
            message = conn.recv()
            if message[0] == "model":
                models[message[1]] = message[2]
            elif message[0] == "join":
                _, request, key, ids, settings, top = message
                outbox = Outbox(request, settings.max_new_tokens, out, tickets)
                tickets[request] = PoolTicket(models[key], ids, settings, top, outbox)
                server.submit(tickets[request])
            elif message[0] == "leave" and (ticket := tickets.pop(message[1], None)) is not None:
                ticket.gone = True
    except EOFError:  # the parent closed its end
        out.put(STOP)
