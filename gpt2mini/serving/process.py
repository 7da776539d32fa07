"""Decoding in a process of its own: a `StreamServer` whose stepping thread runs outside the lab's Python lock.

`StreamServer` steps every request of a model in one batched step, on one thread. In the lab that thread shares
Python's lock with Gradio's event loop and the request handlers, and waits for it after each call into torch: under
16 clients it ran about 60% of the time and served half of what it serves alone (docs/performance.md, "Serving a
class"). `ProcessServer` runs the same `StreamServer` in a child process, so its steps wait for no one:

    server = ProcessServer().start()         # the child imports torch: a few seconds
    server.register("baseline", model)       # its tensors into shared memory, a copy to the child: once
    for token, likelihood, seconds in server.stream("baseline", ids, SamplingSettings(seed=1, max_new_tokens=50)):
        ...

- `register`, `unregister` and `stream` are `StreamServer`'s, with its rules (registry.py): a model is registered
  once, before any thread streams it, and again after any change but an in-place update of its weights; a request
  names it, and finding it costs a dictionary lookup and a few attribute reads (no walk over the model).
- The child gets each registered model once, its tensors in shared memory, so it steps the parent's weights, not a
  copy: an in-place update (an optimizer step, `load_state_dict`, an edit under `no_grad`) reaches its next step.
  Registering a model again sends it again; a request already running ends on the copy it started with.
- A model the fast step would not run as the modules do (training mode, hooks, modules `DecodeStep` does not know),
  one not on the CPU, and one that cannot be shared or pickled (a warning says why) are served by a `StreamServer`
  in this process; which, is decided when it is registered.
- A model no name refers to any more (unregistered, or its name registered with another) is dropped there.
- The same seed gives the same tokens as in this process (a test holds them to `TokenStream`).
- If the child dies, every open request ends with an error that says so, and the next request starts a new child,
  which gets each model again when a request first names it.
"""

import contextlib
import itertools
import multiprocessing
import os
import queue
import shutil
import sys
import threading
import warnings
from multiprocessing.reduction import ForkingPickler

import torch

from gpt2mini.generation.sampling import SamplingSettings
from gpt2mini.generation.step import DecodeStep
from gpt2mini.serving.pool import PoolReader, PoolTicket, StreamServer
from gpt2mini.serving.registry import Registration, Registry, check_name

STOP = None  # what the sending threads are told to stop with


def servable(model) -> bool:
    """Whether the child process can serve `model`: on the CPU, and steppable by `DecodeStep` (not training, no
    hooks, only the modules it knows), so that what the child runs is what this process would."""
    return next(model.parameters()).device.type == "cpu" and DecodeStep(model).usable()


def share(model) -> None:
    """Move `model`'s tensors to shared memory, in place (the Parameter objects stay). Refused, with a RuntimeError,
    where /dev/shm has not twice their size free: a full /dev/shm (Docker gives 64 MB) kills a process that writes
    to it."""
    tensors = [t for t in itertools.chain(model.parameters(), model.buffers()) if not t.is_shared()]
    size = sum(t.untyped_storage().nbytes() for t in tensors)
    if tensors and os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free < 2 * size:
        raise RuntimeError(f"/dev/shm has less than twice the model's {size / 2**20:.0f} MB free")
    if tensors:
        model.share_memory()


class ProcessServer:
    """`StreamServer`'s interface (`register`, `unregister`, `stream`, `busy`), with the steps in a child process (see
    the module docstring)."""

    def __init__(self, window: int | None = None, reply_s: float = 120.0, keep_s: float = 10.0, threads: int = 1):
        # the models the child cannot serve; it checks the settings and holds them for the child too
        self.local = StreamServer(window, reply_s, keep_s)
        self.threads = threads
        self.lock = threading.Lock()  # registrations, joins and the child: one at a time, so that they stay in order
        self.child: Child | None = None
        self.registry = Registry()
        self.keys = itertools.count()  # what the child knows each registration's copy by

    def start(self) -> "ProcessServer":
        """Start the child now (a few seconds: it imports torch) rather than on the first request."""
        with self.lock:
            self._running()
        return self

    def register(self, name: str, model) -> None:
        """As `StreamServer.register` (registry.py's rules), before any thread streams `model`: a model the child can
        serve (`servable`) has its tensors moved to shared memory and a copy sent to the child now; one it cannot is
        served in this process (with a warning where it could not be shared or pickled)."""
        check_name(name)  # before anything is shared or sent
        with self.lock:
            child_can = servable(model) and self._shared(name, model)
            registration = Registration(model)  # after sharing, which moves the tensors' memory
            gone = self.registry.bind(name, registration)
            if child_can:
                registration.key = next(self.keys)
                self._send(self._running(), name, registration)
            for old in gone:
                self._drop(old)

    def unregister(self, name: str) -> None:
        """As `StreamServer.unregister`: a model no name refers to any more is dropped in the child too."""
        with self.lock:
            self._drop(self.registry.unbind(name))

    def stream(self, name: str, ids, settings: SamplingSettings, top: int = 0) -> PoolReader:
        """As `StreamServer.stream`: join the pool of the model registered as `name` with the prompt `ids`; the reader
        yields (token, likelihood, seconds) for each of `settings.max_new_tokens` tokens."""
        ids = list(ids)
        with self.lock:
            registration = self.registry.lookup(name)
            if registration.key is not None:
                child = self._running()
                if registration.key in child.sent or self._send(child, name, registration):
                    request, ticket = child.join(registration, ids, settings, top)
                    return ChildReader(ticket, self.local.reply_s, lambda: child.leave(request))
        return self.local.stream_model(registration.model, ids, settings, top)

    def _shared(self, name: str, model) -> bool:
        """Whether `model`'s tensors are in shared memory now (moved there if need be)."""
        try:
            share(model)
            return True
        except Exception as e:
            warnings.warn(f"serving {name!r} in this process: it cannot go to the decoding process ({e})", stacklevel=3)
            return False

    def _send(self, child: "Child", name: str, registration: Registration) -> bool:
        """Send the registered model to `child`; where it cannot be pickled it is served in this process from now on
        (False)."""
        try:
            child.send_model(registration.key, registration.model)
            return True
        except Exception as e:
            warnings.warn(f"serving {name!r} in this process: it cannot go to the decoding process ({e})", stacklevel=3)
            registration.key = None
            return False

    def _drop(self, registration: Registration | None) -> None:
        """A registration no name refers to: the child lets its copy go (its running requests end first)."""
        if registration is not None and registration.key is not None and self.child is not None:
            self.child.drop(registration.key)

    def _running(self) -> "Child":
        if self.child is None or not self.child.alive():
            if self.child is not None:
                self.child.stop()
            self.child = Child(self.local.window, self.local.keep_s, self.threads)
        return self.child

    def busy(self) -> int:
        """Requests being decoded or waiting to join, here and in the child."""
        child = self.child
        return self.local.busy() + (child.busy() if child is not None else 0)

    def close(self) -> None:
        """Stop the child (its open requests end with an error)."""
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
    """One decoding process and the two threads that talk to it: one sends (models, joins, leaves, in order, from a
    queue, so that a reader's `close` from any thread, or from the garbage collector, never waits), one receives
    the tokens, hands them to their requests' queues, and alone closes the connection."""

    def __init__(self, window: int | None, keep_s: float, threads: int):
        ctx = multiprocessing.get_context("spawn")  # fork would copy the lab's threads' locks mid-use
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child_end, window, keep_s, threads), name="decoder", daemon=True)
        with main_unnamed():
            self.process.start()
        child_end.close()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.tickets: dict[int, PoolTicket] = {}  # request id: its ticket, until its last token or error
        self.sent: set[int] = set()  # the keys of the registrations whose copies the child has
        self.ids = itertools.count()
        self.dead: BaseException | None = None
        threading.Thread(target=self._send, name="decoder-send", daemon=True).start()
        threading.Thread(target=self._receive, name="decoder-receive", daemon=True).start()

    def alive(self) -> bool:
        return self.dead is None and self.process.is_alive()

    def busy(self) -> int:
        return len(self.tickets)

    def send_model(self, key: int, model) -> None:
        """Pickle `model` here, now (its tensors as handles to their shared memory), and queue it as `key`."""
        pickled = ForkingPickler.dumps(model)
        self.sent.add(key)
        self.outbox.put(("model", key, bytes(pickled)))

    def drop(self, key: int) -> None:
        """The child lets the copy `key` go (a pool that holds it keeps it until its requests end)."""
        if key in self.sent:
            self.sent.discard(key)
            self.outbox.put(("drop", key))

    def join(self, registration: Registration, ids: list[int], settings: SamplingSettings, top: int):
        """Queue a request for the registered model's copy (sent already): its id, and the ticket that gets its
        tokens."""
        request = next(self.ids)
        ticket = PoolTicket(registration.model, ids, settings, top)
        self.tickets[request] = ticket
        self.outbox.put(("join", request, registration.key, ids, settings, top))
        if self.dead is not None:  # died while joining: _receive may have told the others already
            self._fail(request)
        return request, ticket

    def leave(self, request: int) -> None:
        """The reader of `request` stopped: the child takes it out, if it has not ended already."""
        if self.tickets.pop(request, None) is not None:
            self.outbox.put(("leave", request))

    def stop(self) -> None:
        """Tell the child to stop and wait for it (5 s, then it is killed)."""
        self.outbox.put(STOP)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)

    def _fail(self, request: int) -> None:
        ticket = self.tickets.pop(request, None)
        if ticket is not None:
            ticket.tokens.put(self.dead)

    def _send(self) -> None:
        while True:
            message = self.outbox.get()
            try:
                self.conn.send(("stop",) if message is STOP else message)
            except (OSError, ValueError):  # the child is gone: _receive ends the requests
                return
            if message is STOP:
                return

    def _deliver(self, request: int, items, done: bool) -> None:
        """Hand `items` to `request`'s reader (gone already if its reader stopped). A method, so that no variable of
        the receiving loop keeps the last ticket, and with it its model, alive."""
        ticket = self.tickets.pop(request, None) if done else self.tickets.get(request)
        if ticket is not None:
            ticket.tokens.put(items)

    def _receive(self) -> None:
        try:
            while True:
                for request, items, done in self.conn.recv():
                    self._deliver(request, items, done)
        except BaseException as e:  # the child stopped (EOFError), or a message broke: either way, it is over
            reason = e
        self.process.join(timeout=1)
        self.dead = RuntimeError(f"the decoding process stopped (exit code {self.process.exitcode}): {reason!r}")
        for request in list(self.tickets):
            self._fail(request)
        self.conn.close()


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
    """`error` if it survives pickling there and back, else a RuntimeError with its text."""
    try:
        ForkingPickler.loads(ForkingPickler.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def serve(conn, window: int | None, keep_s: float, threads: int) -> None:
    """The child process: a `StreamServer` fed from `conn` (models, joins, leaves, drops, stop); the tokens go back
    on it, all that is ready in one message. A model that does not load here ends each request for it with why."""
    torch.set_num_threads(threads)
    server = StreamServer(window, reply_s=threading.TIMEOUT_MAX, keep_s=keep_s)
    out: queue.SimpleQueue = queue.SimpleQueue()
    models: dict[int, object] = {}  # a registration's key: its copy of the model, or why it did not load
    tickets: dict[int, PoolTicket] = {}

    def send_back() -> None:
        while (first := out.get()) is not STOP:
            batch = [first]
            while not out.empty():
                batch.append(out.get())
            conn.send(batch)

    sender = threading.Thread(target=send_back, name="decoder-send-back", daemon=True)
    sender.start()
    with contextlib.suppress(EOFError):  # EOFError: the parent closed its end
        while (message := conn.recv())[0] != "stop":
            handle(message, server, models, tickets, out)
    out.put(STOP)
    sender.join(timeout=5)


def handle(message: tuple, server: StreamServer, models: dict, tickets: dict, out: queue.SimpleQueue) -> None:
    """One message from the parent, in the child."""
    kind = message[0]
    if kind == "model":
        try:
            models[message[1]] = ForkingPickler.loads(message[2])
        except Exception as e:
            models[message[1]] = portable(RuntimeError(f"the model did not load in the decoding process: {e!r}"))
    elif kind == "join":
        _, request, key, ids, settings, top = message
        model = models.get(key, RuntimeError("the decoding process has no such model"))
        if isinstance(model, BaseException):
            out.put((request, model, True))
            return
        tickets[request] = PoolTicket(model, ids, settings, top, Outbox(request, settings.max_new_tokens, out, tickets))
        server.submit(tickets[request])
    elif kind == "leave" and (ticket := tickets.pop(message[1], None)) is not None:
        ticket.gone = True
    elif kind == "drop":
        models.pop(message[1], None)
