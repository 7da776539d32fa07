"""gpt2mini/lab/clients.py: who is still listening to the lab, by the rules the middleware feeds (on a clock of the
test's own); the lab's behaviour with real clients is in tests/test_app.py, tests/test_hostile.py and bench.load's
test."""

from gpt2mini.lab import clients as lab_clients


def watched(clock, session="s", fn_index=5, event_id="e1") -> tuple[lab_clients.Clients, lab_clients.Ticket]:
    clients = lab_clients.Clients(grace=5.0, clock=lambda: clock[0])
    ticket = lab_clients.Ticket(clients, session, fn_index, clock[0])
    clients.joined(ticket, event_id)
    return clients, ticket


def test_a_ticket_is_gone_once_its_session_has_had_no_stream_for_the_grace():
    clock = [100.0]
    clients, ticket = watched(clock)
    clock[0] = 104.0
    assert not ticket.gone() and not clients.listened("s")  # not yet listened to, but within the grace
    clock[0] = 105.5
    assert ticket.gone()  # a join nobody read
    clients.opened("s")
    assert not ticket.gone() and clients.listened("s")
    clock[0] = 500.0
    assert not ticket.gone()  # a stream open: as long as it takes
    clients.closed("s")
    clock[0] = 504.0
    assert not ticket.gone()  # the stream closed 4 s ago
    clock[0] = 505.5
    assert ticket.gone()


def test_cancels_by_event_id_or_by_session_and_event():
    clock = [0.0]
    clients, first = watched(clock, event_id="e1")
    second = lab_clients.Ticket(clients, "s", 5, 0.0)
    clients.joined(second, "e2")
    other = lab_clients.Ticket(clients, "s", 1, 0.0)  # another event of the same session
    clients.joined(other, "e3")
    clients.opened("s")
    clients.cancel(event_id="e2")  # /reset, or /cancel with the id
    assert second.gone() and not first.gone() and not other.gone()
    clients.cancel("s", 5, None)  # /cancel sent before the join returned its id
    assert first.gone() and not other.gone()
    assert not first.wait()  # a cancelled ticket does not start


def test_a_session_that_never_reads_is_refused_after_max_unread_joins():
    clients = lab_clients.Clients(grace=5.0)
    for i in range(lab_clients.MAX_UNREAD_JOINS):
        clients.joined(lab_clients.Ticket(clients, "s", 5, 0.0), f"e{i}")
    assert clients.unread("s") == lab_clients.MAX_UNREAD_JOINS  # ClientWatch answers the next join with HTTP 429
    clients.opened("s")
    assert clients.unread("s") == 0


def test_the_watch_remembers_a_bounded_number_of_sessions_and_events(monkeypatch):
    monkeypatch.setattr(lab_clients, "WATCHED_MAX", 10)
    clients = lab_clients.Clients(grace=5.0)
    clients.opened("reading")
    for i in range(50):
        clients.joined(lab_clients.Ticket(clients, f"s{i}", 5, 0.0), f"e{i}")
    assert len(clients.sessions) <= 10 and len(clients.tickets) <= 10
    assert clients.listened("reading")  # a session with an open stream is kept


def test_an_unwatched_ticket_always_has_a_listener():
    ticket = lab_clients.Ticket.of(None)  # a handler called directly, or a server launched without ui.launch_options
    assert ticket.wait() and not ticket.gone()
