"""Reading messages: Message.from_mime and the read properties, and POP3 (POP3Transporter,
POP3Session) against a private Dovecot (tests/servers/dovecot_mail.py) on 127.0.0.1."""

import asyncio
import datetime
import os
import pathlib
import subprocess
from typing import NamedTuple

import pytest

import emailsession as es

from conftest import PYTHON3, SERVERS


def fixture(n):
    """A fixture message (CRLF line ends); the third has an attachment."""
    head = (f"From: Ada <ada@example.org>\r\nTo: Bob <bob@example.org>, carol@example.org\r\n"
            f"Subject: =?UTF-8?B?{['SsO8cmc=', 'U2Vjb25k', 'VGhpcmQ='][n - 1]}?=\r\n"
            f"Date: Tue, 1 Dec 2026 10:0{n}:00 +0000\r\nMessage-ID: <m{n}@example.org>\r\n"
            f"MIME-Version: 1.0\r\n")
    if n != 3:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                f"body {n}\r\n").encode()
    return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nbody 3\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\n"
            "Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.bin\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n").encode()


SUBJECTS = ["Jürg", "Second", "Third"]


class Box(NamedTuple):
    pop3: int
    pop3s: int
    imap: int
    imaps: int
    certs: pathlib.Path


@pytest.fixture
def mailbox(tmp_path):
    """Dovecot with alice's box holding the three fixtures: its four ports and certificates."""
    if not os.path.exists(os.environ.get("DOVECOT", "/usr/sbin/dovecot")):
        pytest.skip("dovecot is not installed (tools/setup.sh installs it)")
    args = [PYTHON3, str(SERVERS / "dovecot_mail.py")]
    for n in (1, 2, 3):
        path = tmp_path / f"m{n}.eml"
        path.write_bytes(fixture(n))
        args += ["--message", f"alice:{path}"]
    certs = tmp_path / "certs"
    subprocess.run(["sh", str(SERVERS.parent / "certs.sh"), str(certs)], check=True,
                   stdout=subprocess.DEVNULL)
    args += ["--certs", str(certs)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"dovecot_mail.py did not start: {line!r}")
    ports = [int(p) for p in line.split()[1:]]
    yield Box(*ports[:4], certs)
    proc.stdin.close()
    proc.wait(30)
    proc.stdout.close()


def test_from_mime_reads_every_field():
    m = es.Message.from_mime(fixture(3))
    assert m.subject == "Third"
    assert m.from_ == "Ada <ada@example.org>"
    assert m.to == ["Bob <bob@example.org>", "carol@example.org"]
    assert m.cc == [] and m.bcc == []
    assert m.text == "body 3"  # the CRLF before a boundary is the boundary's
    assert m.html is None
    assert m.message_id == "<m3@example.org>"
    assert m.header("message-id") == "<m3@example.org>"
    assert m.header("X-None") is None
    assert m.date == datetime.datetime(2026, 12, 1, 10, 3, tzinfo=datetime.timezone.utc)
    assert m.uid is None
    assert m.size == len(fixture(3))
    assert m.parse_problems == 0
    assert m.attachments == [es.Part("résumé.bin", "application/octet-stream",
                                     b"\x00\x01\x02\x03\x04", None, False)]


def test_from_mime_flags_damage_and_keeps_going():
    m = es.Message.from_mime(b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary")
    assert m.subject == "x"
    assert m.parse_problems & es.PARSE_MULTIPART
    with pytest.raises(TypeError):
        es.Message.from_mime(12)


def test_a_built_message_reads_back():
    m = es.Message(sender="Me <me@example.org>", to="ada@example.org", subject="Hi",
                   text="t\n", attachments=[("a.txt", b"abc")])
    assert (m.subject, m.from_, m.to, m.text) == ("Hi", "Me <me@example.org>",
                                                  ["ada@example.org"], "t\n")
    assert [(p.name, p.data) for p in m.attachments] == [("a.txt", b"abc")]
    assert m.uid is None and m.size == 0


def transporter(mailbox, **kw):
    settings = dict(host="127.0.0.1", port=mailbox.pop3, user="alice", password="pencil",
                    ca_file=str(mailbox.certs / "ca.pem"))
    settings.update(kw)
    return es.POP3Transporter(**settings)


def test_pop3_transporter_lists_reads_and_deletes(mailbox, tmp_path):
    log = tmp_path / "pop3.log"
    with transporter(mailbox, log_file=str(log)) as t:
        t.check_connection()
        assert t.box_info() == es.BoxInfo(3, sum(len(fixture(n)) for n in (1, 2, 3)))
        infos = t.mail_info_list()
        assert [(i.number, i.size) for i in infos] == [(n, len(fixture(n))) for n in (1, 2, 3)]
        assert all(i.uid for i in infos)
        assert t.get_mail_raw(2) == fixture(2)
        m = t.get_mail(1)
        assert (m.subject, m.uid, m.size) == ("Jürg", infos[0].uid, len(fixture(1)))
        t.delete(1)
        with pytest.raises(es.Error) as info:
            t.get_mail(1)  # the server's -ERR for a deleted message
        assert info.value.status == -1 and info.value.code == es.ESERVER
        t.undelete_all()
        assert t.get_mail(1).subject == "Jürg"
        t.delete(3)
    with transporter(mailbox) as t:  # QUIT committed the deletion
        assert [m.subject for m in map(t.get_mail, (1, 2))] == SUBJECTS[:2]
        assert t.box_info().count == 2
    text = log.read_text()
    assert "### POP3 Connected" in text and "pencil" not in text
    assert 'C > "STLS"' in text and 'C > "AUTH SCRAM-SHA-256 ****"' in text


def test_pop3_transporter_errors(mailbox):
    with transporter(mailbox, password="wrong") as t:
        with pytest.raises(es.AuthenticationError):
            t.box_info()
    with transporter(mailbox) as t:
        with pytest.raises(ValueError):
            t.get_mail(0)
    with pytest.raises(TypeError):
        es.POP3Transporter(host="127.0.0.1", bogus=1)


def test_pop3_transporter_over_tls(mailbox):
    pop3s, certs = mailbox.pop3s, mailbox.certs
    with es.POP3Transporter(host="127.0.0.1", port=pop3s, user="alice", password="pencil",
                            security=es.SECURITY_TLS, ca_file=str(certs / "ca.pem")) as t:
        assert t.box_info().count == 3
    with es.POP3Transporter(host="127.0.0.1", port=pop3s, user="alice", password="pencil",
                            security=es.SECURITY_TLS) as t:  # not our CA: refused
        with pytest.raises(es.TLSError):
            t.box_info()


@pytest.fixture
def our_ca(mailbox):
    es.set_ca_file(str(mailbox.certs / "ca.pem"))
    yield
    es.set_ca_file(None)


def test_pop3_session_reads_like_wlanguage(mailbox, our_ca):
    port = mailbox.pop3
    with es.POP3Session("alice", "pencil", "127.0.0.1", port) as s:
        assert s.count() == 3
        assert [m.subject for m in s] == SUBJECTS
        assert s.read_next() is None          # Email.Out past the end
        last = s.read_last()
        assert last.subject == "Third" and last.attachments[0].name == "résumé.bin"
        assert s.read_previous().subject == "Second"
        head = s.read_first(es.READ_HEADERS)
        assert head.subject == "Jürg" and not head.text
        s.delete(head)
        assert s.count() == 2
        assert s.read_first().subject == "Second"   # deleted ones are skipped
        with pytest.raises(es.Error) as info:
            s.read_first(es.READ_UNREAD)            # IMAP only
        assert info.value.code == es.ENOTSUP
    with pytest.raises(ValueError):
        s.read_first()                              # closed
    with es.POP3Session("alice", "pencil", "127.0.0.1", port) as s:
        assert [m.subject for m in s] == SUBJECTS[1:]   # QUIT committed the deletion


def test_pop3_session_refused_password(mailbox, our_ca, closed_port):
    port = mailbox.pop3
    with pytest.raises(es.AuthenticationError):
        es.POP3Session("alice", "wrong", "127.0.0.1", port)
    with pytest.raises(es.ConnectionError):
        es.POP3Session("alice", "pencil", "127.0.0.1", closed_port)
    with es.POP3Session("alice", "pencil", "127.0.0.1", port):
        with pytest.raises(es.SessionError):       # the name is taken
            es.POP3Session("alice", "pencil", "127.0.0.1", port)


def test_pop3_transporter_asyncio(mailbox):
    async def main():
        with transporter(mailbox) as t:
            await t.check_connection_async()
            info, infos, *messages = await asyncio.gather(
                t.box_info_async(), t.mail_info_list_async(),
                *(t.get_mail_async(n) for n in (1, 2, 3)))
            assert info == es.BoxInfo(3, sum(len(fixture(n)) for n in (1, 2, 3)))
            assert [i.number for i in infos] == [1, 2, 3]
            assert [m.subject for m in messages] == SUBJECTS
            assert [m.uid for m in messages] == [i.uid for i in infos]
            assert await t.get_mail_raw_async(2) == fixture(2)
            await t.delete_async(2)
            with pytest.raises(es.Error) as info:
                await t.get_mail_async(2)
            assert info.value.status == -1
            await t.undelete_all_async()
            assert (await t.get_mail_async(2)).subject == "Second"
            with pytest.raises(ValueError):
                await t.get_mail_async(0)
        with transporter(mailbox, password="wrong") as t:
            with pytest.raises(es.AuthenticationError):
                await t.get_mail_async(1)
    asyncio.run(main())


def imap_transporter(mailbox, **kw):
    settings = dict(host="127.0.0.1", port=mailbox.imap, user="alice", password="pencil",
                    ca_file=str(mailbox.certs / "ca.pem"))
    settings.update(kw)
    return es.IMAPTransporter(**settings)


def test_imap_transporter(mailbox, tmp_path):
    log = tmp_path / "imap.log"
    with imap_transporter(mailbox, log_file=str(log)) as t:
        t.check_connection()
        assert "INBOX" in [b.name for b in t.box_list() if b.selectable]
        box = t.select_box("INBOX")
        assert (box.messages, box.unseen, box.uidvalidity_changed) == (3, 3, False)
        uids = t.search("ALL")
        assert len(uids) == 3
        m = t.get_mail(uids[0], es.READ_PEEK)
        assert (m.subject, m.uid, m.size) == ("Jürg", str(uids[0]), len(fixture(1)))
        assert t.select_box("INBOX").unseen == 3          # PEEK left \Seen alone
        assert t.get_mail(uids[1]).subject == "Second"  # reading marks it
        assert t.search("UNSEEN") == [uids[0], uids[2]]
        got = t.get_mails(uids + [99999], es.READ_PEEK)
        assert [g.subject if g else None for g in got] == SUBJECTS + [None]
        assert got[2].attachments[0].data == b"\x00\x01\x02\x03\x04"
        head = t.get_mail(uids[2], es.READ_HEADERS | es.READ_PEEK)
        assert head.subject == "Third" and not head.attachments
        assert t.search("SUBJECT", "Jürg") == [uids[0]]  # UTF-8: CHARSET UTF-8
        t.add_flags(uids[2], "\\Flagged")
        assert t.search("FLAGGED") == [uids[2]]
        t.remove_flags([uids[2]], "\\Flagged")
        assert t.search("FLAGGED") == []
        with pytest.raises(ValueError):                   # refused before the library
            t.add_flags(uids[2], "\\Seen\r\nA1 LOGOUT")
        with pytest.raises(es.InvalidArgumentError):       # refused by the library
            t.add_flags(uids[2], "\\Seen) (\\Deleted")
        with pytest.raises(es.Error) as info:
            t.get_mail(99999)
        assert info.value.code == es.ENOTFOUND
        t.delete(uids[2])
        t.expunge()
        assert t.select_box("INBOX").messages == 2
        with pytest.raises(es.RefusedError) as info:
            t.select_box("No such box")
        assert info.value.status == -1 and info.value.code == es.ESERVER
        assert " NO " in info.value.text       # the server's line (dovecot gives no response code)
    text = log.read_text()
    assert "### IMAP Connected" in text and "pencil" not in text and "body 3" not in text


def test_imap_transporter_asyncio(mailbox):
    async def main():
        with imap_transporter(mailbox) as t:
            await t.check_connection_async()
            box, boxes, uids = await asyncio.gather(
                t.select_box_async("INBOX"), t.box_list_async(), t.search_async("ALL"))
            assert (box.messages, box.unseen, box.uidvalidity_changed) == (3, 3, False)
            assert "INBOX" in [b.name for b in boxes if b.selectable]
            assert len(uids) == 3
            # queued in order, pipelined: each outcome to its own awaiter
            first, *got = await asyncio.gather(
                t.get_mail_async(uids[0], es.READ_PEEK),
                *(t.get_mail_async(u, es.READ_PEEK) for u in reversed(uids)))
            assert (first.subject, first.uid) == ("Jürg", str(uids[0]))
            assert [m.subject for m in got] == SUBJECTS[::-1]
            many = await t.get_mails_async(uids + [99999, uids[1]], es.READ_PEEK)
            assert [m.subject if m else None for m in many] == SUBJECTS + [None, "Second"]
            assert await t.search_async("SUBJECT", "Jürg") == [uids[0]]
            assert await t.search_async("FLAGGED") == []
            await t.add_flags_async(uids[2], "\\Flagged")
            assert await t.search_async("FLAGGED") == [uids[2]]
            await t.remove_flags_async([uids[2]], "\\Flagged")
            assert t.search("FLAGGED") == []               # sync, behind the queued ones
            with pytest.raises(es.Error) as info:
                await t.get_mail_async(99999)
            assert info.value.code == es.ENOTFOUND
            with pytest.raises(es.InvalidArgumentError):   # refused by the library
                await t.add_flags_async(uids[2], "\\Seen) (\\Deleted")
            with pytest.raises(ValueError):
                await t.get_mail_async(0)
            await t.delete_async(uids[2])
            await t.expunge_async()
            assert (await t.select_box_async("INBOX", es.IMAP_READ_ONLY)).messages == 2
            with pytest.raises(es.Error) as info:
                await t.select_box_async("No such box")
            assert info.value.status == -1 and info.value.code == es.ESERVER
    asyncio.run(main())


def test_imap_transporter_tls_and_refusals(mailbox):
    with es.IMAPTransporter(host="127.0.0.1", port=mailbox.imaps, user="alice",
                            password="pencil", security=es.SECURITY_TLS,
                            ca_file=str(mailbox.certs / "ca.pem")) as t:
        assert t.select_box("INBOX", es.IMAP_READ_ONLY).messages == 3
    with imap_transporter(mailbox, password="wrong") as t:
        with pytest.raises(es.AuthenticationError):
            t.check_connection()
    with imap_transporter(mailbox) as t:
        with pytest.raises(ValueError):
            t.get_mail(0)
        with pytest.raises(ValueError):
            t.get_mails([])


def test_imap_session_reads_like_wlanguage(mailbox, our_ca):
    with es.IMAPSession("alice", "pencil", "127.0.0.1", mailbox.imap) as s:
        assert s.count() == 3 and s.count(es.READ_UNREAD) == 3
        first = s.read_first(es.READ_PEEK)
        assert first.subject == "Jürg" and s.count(es.READ_UNREAD) == 3
        assert s.read_next().subject == "Second"          # marks it \Seen
        assert s.count(es.READ_UNREAD) == 2
        assert s.read_first(es.READ_UNREAD | es.READ_PEEK).subject == "Jürg"
        assert s.read_last().subject == "Third"
        assert s.read_next() is None
        s.delete(first)
        assert s.count() == 2
        with pytest.raises(es.SessionError):
            es.POP3Session("alice", "pencil", "127.0.0.1", mailbox.pop3)  # one per name
    with es.IMAPSession("alice", "pencil", "127.0.0.1", mailbox.imap) as s:
        assert [m.subject for m in s] == ["Second", "Third"]
