"""Synchronous sends through a Session and a Transporter, checked in aiosmtpd's spool."""

import socket
import threading

import pytest

import emailsession as es

USER = "me@example.org"
PASSWORD = "s3cret-pw"


def message(subject="Hello", **kwargs):
    fields = dict(sender="Me <me@example.org>", to=["ada@example.org"], subject=subject,
                  text="Hi Ada!\n")
    fields.update(kwargs)
    return es.Message(**fields)


def test_session_sends_with_authentication(smtpd):
    server = smtpd("--auth", f"{USER}:{PASSWORD}")
    with es.Session(USER, PASSWORD, "127.0.0.1", server.port) as session:
        first = session.send(message("one"))
        second = session.send(message("two", to="bob@example.org"))
        assert first != second and session.status(first) == es.SENT
    (env1, mail1), (env2, mail2) = server.messages()
    assert env1["auth"]["login"] == USER and env1["rcpt_tos"] == ["ada@example.org"]
    assert env2["rcpt_tos"] == ["bob@example.org"]
    assert (mail1["Subject"], mail2["Subject"]) == ("one", "two")


def test_session_send_mime(smtpd):
    server = smtpd()
    raw = b"From: me@example.org\nTo: x@example.org\nSubject: prebuilt\n\nbody\n"
    with es.Session("mime-session", None, "127.0.0.1", server.port) as session:
        message_id = session.send_mime("me@example.org", ["x@example.org", "y@example.org"],
                                       raw)
        assert message_id > 0
        session.send_mime("", "z@example.org", raw.decode())
    (env, mail), (env_null, _) = server.messages()
    assert env["mail_from"] == "me@example.org"
    assert env["rcpt_tos"] == ["x@example.org", "y@example.org"]
    assert mail["Subject"] == "prebuilt" and mail.get_content() == "body\r\n"
    assert env_null["mail_from"] == "<>" and env_null["rcpt_tos"] == ["z@example.org"]


def test_session_name_is_unique_and_closed_sessions_refuse(smtpd):
    server = smtpd()
    session = es.Session("unique", None, "127.0.0.1", server.port)
    with pytest.raises(es.SessionError) as info:
        es.Session("unique", None, "127.0.0.1", server.port)
    assert info.value.code == es.EEXIST
    session.close()
    session.close()  # idempotent
    with pytest.raises(ValueError, match="the session 'unique' is closed"):
        session.send(message())


def test_transporter_sends_and_reports(smtpd):
    server = smtpd("--auth", f"{USER}:{PASSWORD}", "--reject-rcpt", "nobody")
    with es.Transporter(host="127.0.0.1", port=server.port, user=USER, password=PASSWORD,
                        security=es.SECURITY_NONE, helo_name="client.test") as t:
        m = message(to=["ada@example.org", "nobody@example.org"])
        result = t.send(m)
        assert result.message_id == m.id and result.status == 250
        assert result.recipients == 2
        assert result.refused == [("nobody@example.org", 550,
                                   "<nobody@example.org>: Recipient address rejected")]
        assert t.check_connection().status in (221, 235, 250)
    ((env, mail),) = server.messages()
    assert env["rcpt_tos"] == ["ada@example.org"] and env["helo"] == "client.test"
    assert env["auth"]["login"] == USER and mail["Subject"] == "Hello"


def test_transporter_send_mime(smtpd):
    server = smtpd()
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        result = t.send_mime("me@example.org", "x@example.org",
                             "Subject: prebuilt\r\n\r\n.leading dot\r\n")
        assert result.status == 250
    ((env, mail),) = server.messages()
    assert env["rcpt_tos"] == ["x@example.org"]
    assert mail.get_content() == ".leading dot\r\n"  # dot-stuffed on the wire, undone there


def test_transporter_settings_read_back(tmp_path):
    log = tmp_path / "t.log"
    with es.Transporter(host="mail.example.org", security=es.SECURITY_TLS, user="u",
                        password="p", oauth2_token="tok", authentication_mode="plain",
                        connection_timeout=5, keep_alive=False, log_file=log,
                        helo_name="me.example.org") as t:
        s = t.server
    assert isinstance(s, es.Server)
    assert (s.host, s.port, s.user, s.security) == ("mail.example.org", 465, "u",
                                                    es.SECURITY_TLS)
    assert s.password is None and s.oauth2_token is None
    assert s.authentication_mode == "PLAIN"
    assert (s.connection_timeout, s.send_timeout, s.keep_alive) == (5, 100, False)
    assert s.log_file.endswith("t.log") and s.helo_name == "me.example.org"
    with pytest.raises(ValueError, match="the transporter is closed"):
        t.server


def test_unicode_subject_and_attachment_names_as_received(smtpd, tmp_path):
    server = smtpd("--smtputf8")
    attachment = tmp_path / "Übersicht 2024 ✓.txt"
    attachment.write_bytes("zwölf\n".encode())
    m = message("Grüße aus Köln ✉ — 日本語", text="Schöne Grüße\n",
                attachments=[attachment, ("naïve café.bin", bytes(range(256)))])
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        t.send(m)
    ((_, mail),) = server.messages()
    assert mail["Subject"] == "Grüße aus Köln ✉ — 日本語"
    assert mail.get_body(("plain",)).get_content() == "Schöne Grüße\r\n"
    files = {p.get_filename(): p.get_payload(decode=True) for p in mail.iter_attachments()}
    assert files == {"Übersicht 2024 ✓.txt": "zwölf\n".encode(),
                     "naïve café.bin": bytes(range(256))}


@pytest.mark.parametrize("kwargs, error, text", [
    ({}, TypeError, "Transporter\\(\\) needs host"),
    ({"host": None}, TypeError, "host must be a str, not NoneType"),
    ({"host": "h", "port": "25"}, TypeError, "port must be an int, not str"),
    ({"host": "h", "port": 70000}, ValueError, "port must be between 0 and 65535"),
    ({"host": "h", "security": 7}, ValueError, "security must be between 0 and 2"),
    ({"host": "h", "keep_alive": "yes"}, TypeError, "keep_alive must be a bool, not str"),
    ({"host": "h", "password": "a\0b"}, ValueError, "password contains a NUL"),
    ({"host": "h", "user": "u\r\nMAIL FROM:<x>"}, ValueError, "user contains a line break"),
    ({"host": "h", "ca_file": 3}, TypeError, "ca_file must be a path"),
    ({"host": "h", "hots": "typo"}, TypeError, "unexpected keyword argument 'hots'"),
])
def test_transporter_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        es.Transporter(**kwargs)


def test_transporter_refusal_from_the_library():
    # SCRAM takes printable ASCII passwords only (no SASLprep): asked for by name, ENOTSUP
    with pytest.raises(es.Error) as info:
        es.Transporter(host="h", user="u", password="p\u00e4ss", authentication_mode="SCRAM-SHA-256")
    assert info.value.code == es.ENOTSUP
    assert "SCRAM" in info.value.text


def test_send_and_session_bad_arguments(smtpd):
    with pytest.raises(TypeError, match="user must be a str, not NoneType"):
        es.Session(None, None, "127.0.0.1")
    with pytest.raises(TypeError, match="asynchronous must be a bool, not int"):
        es.Session("x", None, "127.0.0.1", 25, 1)
    with pytest.raises(TypeError, match="port must be an int, not str"):
        es.Session("x", None, "127.0.0.1", "25")
    server = smtpd()
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        with pytest.raises(TypeError, match="message must be an emailsession.Message, not str"):
            t.send("Subject: hi\r\n\r\nbody")
        with pytest.raises(ValueError, match="recipients is empty"):
            t.send_mime("me@example.org", [], b"Subject: x\r\n\r\ny\r\n")
        with pytest.raises(ValueError, match="data contains a NUL byte"):
            t.send_mime("me@example.org", "a@example.org", b"Subject: x\r\n\r\n\0\r\n")
        with pytest.raises(es.InvalidArgumentError, match="bad address"):
            t.send_mime("me@example.org", "bad address", b"Subject: x\r\n\r\ny\r\n")
    assert server.messages() == []


def test_a_synchronous_call_lets_other_threads_run():
    # This thread plays the server by hand while another waits inside the C call: were the
    # GIL held during the call, this thread could not answer and the start would time out.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    outcome = {}

    def start():
        try:
            with es.Session("gil", None, "127.0.0.1", listener.getsockname()[1]):
                outcome["ok"] = True
        except es.Error as e:
            outcome["error"] = e

    es.set_timeout(10)
    client = threading.Thread(target=start)
    try:
        client.start()
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 here\r\n")
            f.flush()
            assert f.readline().startswith(b"EHLO ")
            f.write(b"250 ok\r\n")
            f.flush()
            assert f.readline() == b"QUIT\r\n"
            f.write(b"221 bye\r\n")
            f.flush()
    finally:
        client.join()
        listener.close()
        es.set_timeout(60)
    assert outcome == {"ok": True}
