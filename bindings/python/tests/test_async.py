"""asyncio: outcomes come through email_dispatch_fd() watched by the loop, on the loop's
thread; many sends awaited together; the log callback."""

import asyncio
import base64
import subprocess
import sys
import threading

import pytest

import emailsession as es

USER = "me@example.org"
PASSWORD = "s3cret-pw"


def message(i=0, to=("ada@example.org",)):
    return es.Message(sender=USER, to=list(to), subject=f"async {i}", text=f"message {i}\n")


def test_transporter_100_concurrent_sends(smtpd):
    server = smtpd("--pipelining")

    async def main():
        with es.Transporter(host="127.0.0.1", port=server.port,
                            security=es.SECURITY_NONE) as t:
            messages = [message(i) for i in range(100)]
            results = await asyncio.gather(*(t.send_async(m) for m in messages))
        assert [r.message_id for r in results] == [m.id for m in messages]
        assert all(r.status == 250 and r.refused == [] for r in results)

    asyncio.run(main())
    subjects = sorted(mail["Subject"] for _, mail in server.messages())
    assert subjects == sorted(f"async {i}" for i in range(100))


def test_session_concurrent_sends_and_status(smtpd):
    server = smtpd("--auth", f"{USER}:{PASSWORD}")

    async def main():
        with es.Session(USER, PASSWORD, "127.0.0.1", server.port, asynchronous=True) as s:
            messages = [message(i) for i in range(20)]
            results = await asyncio.gather(*(s.send_async(m) for m in messages))
            assert [r.message_id for r in results] == [m.id for m in messages]
            assert all(s.status(m.id) == es.SENT for m in messages)
            queued = s.send(message(99))  # asynchronous send(): queued, outcome by status()
            assert s.status(queued) in (es.PENDING, es.SENT)
        assert es.message_status(queued) == es.SENT  # close delivered it

    asyncio.run(main())
    assert len(server.messages()) == 21


def test_async_failures_raise_from_await(smtpd, closed_port):
    server = smtpd("--reject-rcpt", "nobody")

    async def main():
        with es.Session("async-refused", None, "127.0.0.1", server.port,
                        asynchronous=True) as s:
            ok, refused = await asyncio.gather(
                s.send_async(message(1)),
                s.send_async(message(2, to=["nobody@example.org"])), return_exceptions=True)
        assert ok.status == 250
        assert isinstance(refused, es.RefusedError) and refused.code == es.ERECIPIENTS
        assert refused.refused[0].address == "nobody@example.org"
        with es.Transporter(host="127.0.0.1", port=closed_port) as t:
            with pytest.raises(es.ConnectionError) as info:
                await t.send_async(message(3))
        assert info.value.causes[0].component == "transport"

    asyncio.run(main())


def test_send_async_needs_an_asynchronous_session(smtpd):
    server = smtpd()

    async def main():
        with es.Session("sync-only", None, "127.0.0.1", server.port) as s:
            with pytest.raises(RuntimeError, match="asynchronous=True"):
                await s.send_async(message())

    asyncio.run(main())


def test_refusal_before_queueing_raises_at_once(smtpd):
    server = smtpd()

    async def main():
        with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
            with pytest.raises(es.InvalidArgumentError):
                await t.send_async(es.Message(subject="no sender, no recipient"))
            with pytest.raises(TypeError, match="message must be an emailsession.Message"):
                await t.send_async(None)
            # the table of pending sends is not left holding the refused one
            assert es._dispatch._by_token == {}

    asyncio.run(main())


def test_a_cancelled_await_and_a_second_loop(smtpd):
    server = smtpd()
    t = es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE)

    async def cancel_one():
        task = asyncio.ensure_future(t.send_async(message(1)))
        await asyncio.sleep(0)
        task.cancel()
        # the cancelled message still goes out; its outcome finds a cancelled future
        assert (await t.send_async(message(2))).status == 250

    async def again():
        return await t.send_async(message(3))

    asyncio.run(cancel_one())
    assert asyncio.run(again()).status == 250  # a new loop watches the descriptor too
    t.close()
    assert sorted(m["Subject"] for _, m in server.messages()) == ["async 1", "async 2",
                                                                 "async 3"]


def secrets_in(lines):
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    return [line for line in lines if PASSWORD in line or plain in line]


def test_log_callback_on_the_loop_thread_with_secrets_masked(smtpd):
    server = smtpd("--auth", f"{USER}:{PASSWORD}")
    lines, threads = [], set()

    def on_line(line):
        lines.append(line)
        threads.add(threading.get_ident())

    async def main():
        with es.Transporter(host="127.0.0.1", port=server.port, user=USER, password=PASSWORD,
                            security=es.SECURITY_NONE, authentication_mode="PLAIN") as t:
            await t.send_async(message())

    es.set_log_callback(on_line)
    try:
        asyncio.run(main())
    finally:
        es.set_log_callback(None)
    assert any('AUTH PLAIN ****' in line for line in lines), lines
    assert any("### SMTP Connection closed" in line for line in lines)
    assert secrets_in(lines) == []
    assert threads == {threading.get_ident()}


def test_log_callback_after_synchronous_calls(smtpd):
    server = smtpd("--auth", f"{USER}:{PASSWORD}")
    lines = []
    es.set_log_callback(lines.append)
    try:
        with es.Session(USER, PASSWORD, "127.0.0.1", server.port) as s:
            s.send(message())
            assert any('C > "DATA"' in line for line in lines), lines
    finally:
        es.set_log_callback(None)
    count = len(lines)
    assert any("AUTH" in line and "****" in line for line in lines)
    assert secrets_in(lines) == []
    with es.Session(USER, PASSWORD, "127.0.0.1", server.port) as s:
        s.send(message())
    assert len(lines) == count  # stopped


EXIT_SCRIPT = """
import sys, emailsession as es
session = es.Session("left-open", None, "127.0.0.1", int(sys.argv[1]), asynchronous=True)
transporter = es.Transporter(host="127.0.0.1", port=int(sys.argv[1]),
                             security=es.SECURITY_NONE)
m = es.Message(sender="me@example.org", to="ada@example.org", subject="queued at exit")
transporter.send(m)
session.send(m)
es.set_log_callback(print)
"""


def test_exit_delivers_what_is_queued_and_closes_quietly(smtpd, python_env):
    server = smtpd()
    run = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(server.port)], env=python_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == ""
    assert [m["Subject"] for _, m in server.messages()] == ["queued at exit"] * 2
    # the last log lines reached the callback before the interpreter went
    assert run.stdout.count("### SMTP Connection closed") == 2
