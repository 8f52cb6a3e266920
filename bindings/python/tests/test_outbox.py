"""The durable outbox from Python: a message queued while its server is down stays on disk
(outbox_list), and a resume sends it once the server is up, under the id it was given; a 4xx
keeps it for a named session's resume; damaged entries are moved aside and counted."""

import asyncio
import datetime

import pytest

import emailsession as es

SENDER = "me@example.org"


def message(subject):
    return es.Message(sender=SENDER, to="ada@example.org", subject=subject, text="kept\n")


@pytest.fixture
def outbox(tmp_path):
    """The global outbox in a fresh directory, turned off afterwards."""
    directory = tmp_path / "outbox"
    es.set_outbox(directory)
    yield directory
    es.set_outbox(None)


def entries_on_disk(directory):
    return sorted(p.name for p in directory.glob("*.msg"))


def test_no_outbox_is_an_invalid_argument(smtpd):
    es.set_outbox(None)
    with pytest.raises(es.InvalidArgumentError, match="no outbox"):
        es.outbox_list()
    with pytest.raises(es.InvalidArgumentError):
        es.outbox_corrupt_count()
    server = smtpd()
    with es.Session("no-outbox", None, "127.0.0.1", server.port, asynchronous=True):
        with pytest.raises(es.InvalidArgumentError, match="no outbox"):
            es.outbox_resume("no-outbox")
    with es.Transporter(host="127.0.0.1", port=server.port) as t:
        with pytest.raises(es.InvalidArgumentError, match="no outbox"):
            t.outbox_resume()


def test_an_outbox_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    with pytest.raises(es.Error) as info:
        es.set_outbox(path)
    assert info.value.code == es.EIO
    with pytest.raises(TypeError):
        es.set_outbox(3)


def test_queued_while_down_listed_then_resumed_when_up(outbox, closed_port, smtpd):
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    m = message("while the server was down")

    async def queue():
        with es.Transporter(host="127.0.0.1", port=closed_port,
                            security=es.SECURITY_NONE) as t:
            with pytest.raises(es.ConnectionError):
                await t.send_async(m)

    asyncio.run(queue())
    after = datetime.datetime.now(datetime.timezone.utc)
    [entry] = es.outbox_list()
    assert entry.id == m.id
    assert entry.user == "127.0.0.1"  # a transporter without a user: its host
    assert entry.subject == "while the server was down"
    assert entry.queued.tzinfo is not None and before <= entry.queued <= after
    assert es.outbox_list("someone-else") == []
    assert len(entries_on_disk(outbox)) == 1

    server = smtpd("--port", str(closed_port))  # the same server, up again

    async def resume():
        with es.Transporter(host="127.0.0.1", port=closed_port,
                            security=es.SECURITY_NONE) as t:
            return await t.outbox_resume_async()

    [outcome] = asyncio.run(resume())
    assert isinstance(outcome, es.Result) and outcome.message_id == m.id
    assert outcome.status == 250
    assert es.message_status(m.id) == es.SENT
    assert [mail["Subject"] for _, mail in server.messages()] == ["while the server was down"]
    assert es.outbox_list() == [] and entries_on_disk(outbox) == []


def test_a_transporters_own_outbox_resumed_with_a_callback(tmp_path, closed_port, smtpd):
    es.set_outbox(None)
    own = tmp_path / "own"
    settings = dict(host="127.0.0.1", port=closed_port, security=es.SECURITY_NONE, outbox=own)
    messages = [message(f"own {i}") for i in range(3)]

    async def queue():
        with es.Transporter(**settings) as t:
            assert t.server.outbox == str(own)
            results = await asyncio.gather(*(t.send_async(m) for m in messages),
                                           return_exceptions=True)
        assert all(isinstance(r, es.ConnectionError) for r in results)

    asyncio.run(queue())
    assert len(entries_on_disk(own)) == 3
    with pytest.raises(es.InvalidArgumentError):
        es.outbox_list()  # the global outbox only

    server = smtpd("--port", str(closed_port))
    outcomes = {}
    t = es.Transporter(**settings)
    assert t.outbox_resume(callback=lambda i, outcome: outcomes.setdefault(i, outcome)) == 3
    t.close()  # waits for the queued sends, then runs their callbacks
    assert sorted(outcomes) == sorted(m.id for m in messages)
    assert all(isinstance(o, es.Result) and o.status == 250 for o in outcomes.values())
    assert sorted(mail["Subject"] for _, mail in server.messages()) == ["own 0", "own 1",
                                                                          "own 2"]
    assert entries_on_disk(own) == []
    with es.Transporter(**settings) as again:
        assert again.outbox_resume() == 0  # nothing waits any more


def test_a_session_resumes_what_a_4xx_left(outbox, smtpd):
    busy = smtpd("--data-reply", "451 4.3.0 try again later")
    name = "outbox-session"
    m = message("after a 4xx")

    async def queue():
        with es.Session(name, None, "127.0.0.1", busy.port, asynchronous=True) as s:
            with pytest.raises(es.RefusedError) as info:
                await s.send_async(m)
            assert info.value.status == 451

    asyncio.run(queue())
    assert [e.id for e in es.outbox_list(name)] == [m.id]
    with pytest.raises(es.SessionError):
        es.outbox_resume(name)  # no such session open now

    good = smtpd()  # the session's server may change
    with es.Session(name, None, "127.0.0.1", good.port, asynchronous=True):
        assert es.outbox_resume(name) == 1
    assert es.message_status(m.id) == es.SENT  # the close delivered it
    assert [mail["Subject"] for _, mail in good.messages()] == ["after a 4xx"]
    assert es.outbox_list(name) == []
    with pytest.raises(ValueError, match="exclude"):
        es.outbox_resume(name, resend_unknown=True, drop_unknown=True)


def test_damaged_entries_are_moved_aside_and_counted(outbox):
    assert es.outbox_corrupt_count() == 0
    (outbox / "00000000000000ff.msg").write_bytes(b"not an entry")
    (outbox / ".tmp-00000000000000fe").write_bytes(b"a write a crash cut short")
    assert es.outbox_list() == []
    assert es.outbox_corrupt_count() == 2
    assert entries_on_disk(outbox) == []
    assert len(list((outbox / "corrupt").iterdir())) == 2
