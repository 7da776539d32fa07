"""The lab's side of talking to clients: who is still listening, and refusing in one line.

What is notable:
- Gradio 6 cannot tell a handler that nobody reads its updates (see LISTENING below), so an abandoned request would
  generate for up to two minutes. `ClientWatch`, an ASGI middleware the lab is launched with, watches which sessions
  have an update stream open and which events were cancelled; `listening`, the wrapper of every streaming event,
  generates nothing until its client listens and stops when it is gone.
- `Refused` is how a user mistake is raised: the message the user sees, without a traceback in the server log.
- Joins the lab cannot run (an unknown event, the Stop buttons' events, the wrong number of inputs) are answered in
  one line before Gradio's queue.

app.py imports this module; it imports nothing of the project.
"""

import html
import json
import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gradio as gr

LISTEN_GRACE_S = 5.0  # a streaming event whose client has had no update stream open this long stops (LISTENING)
MAX_UNREAD_JOINS = 64  # joins a session may make while it never opens its update stream; one more is refused
MAX_BODY_BYTES = 8_000_000  # a join or cancel request's body (a 100k-character prompt takes under 1 MB of JSON)
WATCHED_MAX = 4096  # sessions and events ClientWatch remembers (the least recently used idle ones go first)


class Refused(gr.Error):
    """A user mistake: the message the user sees, a gr.Error, without the traceback Gradio would print to the server
    log for any other exception (queueing.py prints one unless a gr.Error says print_exception=False)."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def shown(value, limit: int = 60) -> str:
    """A value from a request, for an error message: repr (so control characters and lone surrogates are escaped),
    cut to `limit` characters, HTML-escaped (Gradio renders an error message as HTML)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return html.escape(text, quote=False)


# ---------------------------------------------------------------------------------------------------------------------
# Clients: who is still listening
#
# LISTENING. What Gradio 6.31 tells a server about a client (gradio/ files; line numbers of 6.31.0):
# - A queued event is a POST /gradio_api/queue/join (or /gradio_api/call/<api>), answered at once with an event id;
#   its updates go to a queue per session (queueing.py:133, Queue.send_message :248) that a second request,
#   GET /gradio_api/queue/data?session_hash=S (or /gradio_api/call/<api>/<id>), streams. gr.Request wraps the join's
#   request, answered by the time the handler runs: its is_disconnected() is True for every event (uvicorn answers
#   http.disconnect once a response is complete, uvicorn/protocols/http/h11_impl.py:531), so it says nothing of the
#   stream.
# - When an open stream's client goes away, Gradio marks the session's running events not alive and drops its
#   waiting ones (routes.py:1829 and :1902 -> Queue.clean_events, queueing.py:617), and stops iterating a generator
#   at its next yield (queueing.py:928). A join whose stream is never opened gets no such signal: the job runs to
#   its end and every update waits, unread, in the session's queue.
# - POST /gradio_api/cancel cancels the running task of (session, fn_index) and takes event_id out of the queue
#   (routes.py:1718-1729). gradio_client's job.cancel() right after submit() sends it before the join has returned
#   (event_id null: nothing to cancel yet), then POST /gradio_api/reset with the id (gradio_client/utils.py:427),
#   which Gradio 6 ignores (routes.py:1462, "No-op").
# So ClientWatch, an ASGI middleware handed to launch() through its documented app_kwargs (launch_options), watches
# those routes: which sessions have a stream open, and every join's Ticket (put in the join request's state, which
# gr.Request reaches), cancelled by /cancel or /reset. `listening`, the wrapper every streaming event goes through,
# waits for its client's stream before generating anything (at most LISTEN_GRACE_S from the join: a join nobody
# reads generates nothing), and stops at the first update after a cancel or once the session has had no stream for
# LISTEN_GRACE_S. A join of a session that has not opened its stream for MAX_UNREAD_JOINS joins is refused (429), so
# what Gradio keeps unread per session is bounded. ClientWatch also refuses, in one line and before Gradio's queue
# (which would print a traceback), joins of an unknown event, of an event with no server function (the Stop buttons:
# they cancel through /gradio_api/cancel) and with the wrong number of inputs.


@dataclass
class Session:
    """What ClientWatch knows of one session: its open update streams, since when it has had none, and the joins it
    made since it last had one."""

    streams: int = 0
    idle_since: float = 0.0
    unread: int = 0


@dataclass(eq=False)
class Ticket:
    """One queued event as ClientWatch sees it; a Ticket without `clients` (a handler called directly, or a server
    launched without launch_options) always has a listener."""

    clients: "Clients | None" = None
    session: str | None = None
    fn_index: int | None = None
    joined: float = 0.0
    event_id: str | None = None
    cancelled: bool = False

    KEY = "gpt2mini_ticket"  # its key in the join request's state

    @classmethod
    def of(cls, request) -> "Ticket":
        """The ticket ClientWatch gave the join behind `request` (a gr.Request), or an unwatched one."""
        state = getattr(getattr(request, "request", None), "state", None)
        ticket = getattr(state, cls.KEY, None)
        return ticket if isinstance(ticket, Ticket) else cls()

    def gone(self) -> bool:
        """Cancelled, or no stream of its session open for LISTEN_GRACE_S (counted from the join at the earliest)."""
        return self.cancelled or (self.clients is not None and self.clients.gone(self))

    def wait(self, poll: float = 0.02) -> bool:
        """Wait until the session has a stream open (True), or the ticket is gone (False)."""
        while self.clients is not None and not self.clients.listened(self.session):
            if self.gone():
                return False
            time.sleep(poll)
        return not self.cancelled


class Clients:
    """The sessions with an update stream open, and the queued events' Tickets by id: fed by ClientWatch on the
    server's event loop, read from the handlers' threads (hence the lock). At most WATCHED_MAX of each."""

    def __init__(self, grace: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.grace = LISTEN_GRACE_S if grace is None else grace
        self.clock = clock
        self.lock = threading.Lock()
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.tickets: OrderedDict[str, Ticket] = OrderedDict()

    def _session(self, key: str) -> Session:
        """The session `key`, made the most recently used (the lock held)."""
        if key not in self.sessions:
            self.sessions[key] = Session(idle_since=self.clock())
            idle = [k for k, s in self.sessions.items() if not s.streams]
            for old in idle[: max(0, len(self.sessions) - WATCHED_MAX)]:
                del self.sessions[old]
        self.sessions.move_to_end(key)
        return self.sessions[key]

    def opened(self, key: str) -> None:
        with self.lock:
            session = self._session(key)
            session.streams += 1
            session.unread = 0

    def closed(self, key: str) -> None:
        with self.lock:
            session = self.sessions.get(key)
            if session is not None and session.streams:
                session.streams -= 1
                session.idle_since = self.clock()

    def listened(self, key: str | None) -> bool:
        with self.lock:
            session = self.sessions.get(key) if key is not None else None
            return session is not None and session.streams > 0

    def gone(self, ticket: Ticket) -> bool:
        with self.lock:
            session = self.sessions.get(ticket.session) if ticket.session is not None else None
            if session is not None and session.streams:
                return False
            since = max(ticket.joined, session.idle_since if session is not None else ticket.joined)
        return self.clock() - since > self.grace

    def unread(self, key: str) -> int:
        """The joins `key` made since it last had a stream open (0 while one is)."""
        with self.lock:
            session = self.sessions.get(key)
            return 0 if session is None or session.streams else session.unread

    def joined(self, ticket: Ticket, event_id: str) -> None:
        """The join behind `ticket` was queued as `event_id` (a join without a session hash is its own session)."""
        with self.lock:
            ticket.event_id = event_id
            ticket.session = ticket.session or event_id
            self.tickets[event_id] = ticket
            while len(self.tickets) > WATCHED_MAX:
                self.tickets.popitem(last=False)
            session = self._session(ticket.session)
            if not session.streams:
                session.unread += 1

    def session_of(self, event_id: str) -> str:
        with self.lock:
            ticket = self.tickets.get(event_id)
            return ticket.session if ticket is not None and ticket.session else event_id

    def cancel(self, session=None, fn_index=None, event_id=None) -> None:
        """/cancel or /reset: the event `event_id`; without one (sent before the join returned), every queued event of
        `session` and `fn_index`, as Gradio's own /cancel cancels every running task of the pair."""
        with self.lock:
            if isinstance(event_id, str) and event_id in self.tickets:
                self.tickets[event_id].cancelled = True
            elif event_id is None and session is not None:
                for ticket in self.tickets.values():
                    if ticket.session == session and ticket.fn_index == fn_index:
                        ticket.cancelled = True

    def done(self, ticket: Ticket) -> None:
        with self.lock:
            if ticket.event_id is not None:
                self.tickets.pop(ticket.event_id, None)


def listening(handler: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """The function of a streaming event: `handler(*inputs)`'s updates, while its client listens (LISTENING). A
    cancelled request ends quietly; one nobody read ends with a message, for a client that opens its stream late.
    Gradio passes the gr.Request first (the API's parameter names stay param_0..., as for `lambda *a`)."""

    def event(request: gr.Request, *inputs):
        ticket = Ticket.of(request)
        try:
            if ticket.wait():
                updates = handler(*inputs)
                try:
                    for update in updates:
                        if ticket.gone():
                            break
                        yield update
                    else:
                        return
                finally:
                    updates.close()
            if not ticket.cancelled:
                raise Refused(f"stopped: no client read this request's updates for {LISTEN_GRACE_S:g} s")
        finally:
            if ticket.clients is not None:
                ticket.clients.done(ticket)

    return event


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _read_body(receive) -> bytes | None:
    """The request's body, or None past MAX_BODY_BYTES (read no further: a join is a prompt and a few numbers)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            return None
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """`receive` for the app behind ClientWatch, which has read the request's body already."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def received():
        return pending.pop() if pending else await receive()

    return received


async def _answer(send, status: int, message: str) -> None:
    """An error answer in Gradio's own shapes: {"detail": message}, or for HTTP 422 the list its validators answer
    with, which gradio_client shows (it shows no detail of another 4xx)."""
    detail = [{"__type__": "validate", "is_valid": False, "message": message, "parameter_name": "inputs"}]
    body = json.dumps({"detail": detail if status == 422 else message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


CALL = re.compile(r"call/(?:v2/)?([^/]+)")  # POST: a join through the REST API
CALL_STREAM = re.compile(r"call/(?:v2/)?[^/]+/([^/]+)")  # GET: its stream, by event id


class ClientWatch:
    """ASGI middleware in front of Gradio's routes (LISTENING): the joins (their Tickets, and the one-line refusals),
    the update streams (which sessions listen), and /cancel and /reset (which Tickets are cancelled)."""

    def __init__(self, app, blocks: gr.Blocks, clients: Clients | None = None):
        self.app, self.blocks = app, blocks
        self.clients = clients or Clients()
        self._events: dict | None = None

    async def __call__(self, scope, receive, send):
        route = scope["path"].split("/gradio_api/", 1)[-1].rstrip("/") if scope["type"] == "http" else ""
        method = scope.get("method")
        if method == "POST" and (route == "queue/join" or CALL.fullmatch(route)):
            return await self.join(scope, receive, send, route)
        if method == "GET" and (route == "queue/data" or CALL_STREAM.fullmatch(route)):
            return await self.stream(scope, receive, send, route)
        if method == "POST" and route in ("cancel", "reset"):
            body = await _read_body(receive)
            if body is None:
                return await _answer(send, 413, f"a request body over {MAX_BODY_BYTES / 1e6:g} MB")
            fields = _json(body)
            if isinstance(fields, dict):
                self.clients.cancel(fields.get("session_hash"), fields.get("fn_index"), fields.get("event_id"))
            return await self.app(scope, _replay(body, receive), send)
        return await self.app(scope, receive, send)

    def events(self) -> dict:
        """fn_index -> (name, number of inputs, has a server function), and api_name -> fn_index, from the config
        the clients get."""
        if self._events is None:
            deps = self.blocks.config["dependencies"]

            def name(d: dict) -> str:
                return d["api_name"] if d.get("api_visibility") == "public" else f"event {d['id']}"

            by_index = {d["id"]: (name(d), len(d["inputs"]), d["backend_fn"]) for d in deps}
            self._events = {"index": by_index, "name": {d["api_name"]: d["id"] for d in deps if d.get("api_name")}}
        return self._events

    def problem(self, request: dict, api: str | None) -> tuple[int, str] | None:
        """Why a join cannot run, as (HTTP status, one line), or None."""
        events = self.events()
        fn_index = events["name"].get(api) if api is not None else request.get("fn_index")
        if type(fn_index) is not int or fn_index not in events["index"]:
            what = f"named {shown(api)}" if api is not None else shown(request.get("fn_index"))
            return 404, f"no event {what} in this app (its API: /gradio_api/info)"
        name, n_inputs, backend = events["index"][fn_index]
        if not backend:
            return 400, f"{name} runs in the browser only (to stop a generation: POST /gradio_api/cancel)"
        data = request.get("data")
        if isinstance(data, list) and len(data) != n_inputs:
            return 422, f"{name} takes {n_inputs} input{'s' * (n_inputs != 1)}, got {len(data)}"
        session = request.get("session_hash")
        if isinstance(session, str) and self.clients.unread(session) >= MAX_UNREAD_JOINS:
            return 429, (
                f"this session made {MAX_UNREAD_JOINS} requests without reading one: open its stream "
                "(/gradio_api/queue/data) before sending more"
            )
        return None

    async def join(self, scope, receive, send, route: str) -> None:
        body = await _read_body(receive)
        if body is None:
            return await _answer(send, 413, f"a request body over {MAX_BODY_BYTES / 1e6:g} MB")
        request = _json(body)
        if not isinstance(request, dict):  # Gradio answers that itself (HTTP 422)
            return await self.app(scope, _replay(body, receive), send)
        api = None if route == "queue/join" else CALL.fullmatch(route)[1]
        problem = self.problem(request, api)
        if problem is not None:
            return await _answer(send, *problem)
        session = request.get("session_hash")
        fn_index = request.get("fn_index") if api is None else self.events()["name"][api]
        ticket = Ticket(self.clients, session if isinstance(session, str) else None, fn_index, self.clients.clock())
        scope.setdefault("state", {})[Ticket.KEY] = ticket
        status, chunks = [0], []

        async def sent(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and status[0] == 200:
                chunks.append(message.get("body", b""))
                answer = None if message.get("more_body") else _json(b"".join(chunks))
                if isinstance(answer, dict) and isinstance(answer.get("event_id"), str):
                    self.clients.joined(ticket, answer["event_id"])
            await send(message)

        await self.app(scope, _replay(body, receive), sent)

    async def stream(self, scope, receive, send, route: str) -> None:
        if route == "queue/data":
            key = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [""])[0]
        else:
            key = self.clients.session_of(CALL_STREAM.fullmatch(route)[1])
        if not key:
            return await self.app(scope, receive, send)
        self.clients.opened(key)
        open_ = [True]

        def close() -> None:
            if open_[0]:
                open_[0] = False
                self.clients.closed(key)

        async def received():
            message = await receive()
            if message["type"] == "http.disconnect":
                close()
            return message

        try:
            await self.app(scope, received, send)
        finally:
            close()
