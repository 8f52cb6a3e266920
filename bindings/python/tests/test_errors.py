"""Every exception family with its fields, from real failures: a 535, an untrusted
certificate, refused recipients, a refused message, a silent server, a closed port, and an end
of data that went unanswered."""

import builtins

import pytest

import emailsession as es

USER = "me@example.org"


def message(to=("ada@example.org",)):
    return es.Message(sender=USER, to=list(to), subject="s", text="t\n")


def test_authentication_failure_535_on_a_session(smtpd):
    server = smtpd("--auth", f"{USER}:right")
    with pytest.raises(es.AuthenticationError) as info:
        es.Session(USER, "wrong", "127.0.0.1", server.port)
    e = info.value
    assert (e.code, e.name, e.status, e.enhanced_code) == (es.EAUTH, "EMAIL_EAUTH", 535, "5.7.8")
    assert "535" in e.text and "Authentication credentials invalid" in e.text
    assert isinstance(e, es.Error) and str(e).endswith("[EMAIL_EAUTH]")
    # the name is free again after a failed start
    es.Session(USER, "right", "127.0.0.1", server.port).close()


def test_authentication_failure_535_on_a_transporter(smtpd):
    server = smtpd("--auth", f"{USER}:right")
    with es.Transporter(host="127.0.0.1", port=server.port, user=USER, password="wrong",
                        security=es.SECURITY_NONE) as t:
        with pytest.raises(es.AuthenticationError) as info:
            t.check_connection()
    e = info.value
    assert (e.code, e.status, e.enhanced_code) == (es.EAUTH, 535, "5.7.8")
    assert e.text == ("authentication with PLAIN failed: 535 5.7.8 Authentication credentials "
                      "invalid")
    assert e.causes == [] and e.refused == []  # the server's refusal: no chain of causes


def test_untrusted_certificate_is_a_tls_error_with_its_cause(smtpd, certs):
    server = smtpd("--starttls", str(certs / "self.pem"), str(certs / "self.key"))
    with es.Transporter(host="127.0.0.1", port=server.port) as t:
        with pytest.raises(es.TLSError) as info:
            t.send(message())
    e = info.value
    assert e.code == es.ECERT and e.status == 0
    assert e.text.startswith("Failed to send email: ")
    assert e.causes and e.causes[0].code == es.ECERT and e.causes[0].component == "tls"
    assert server.messages() == []


def test_trusted_certificate_through_set_ca_file(smtpd, certs):
    server = smtpd("--starttls", str(certs / "good.pem"), str(certs / "good.key"))
    es.set_ca_file(certs / "ca.pem")
    try:
        with es.Session("tls-session", None, "127.0.0.1", server.port,
                        option=es.OPTION_STARTTLS) as session:
            session.send(message())
    finally:
        es.set_ca_file(None)
    ((env, _),) = server.messages()
    assert env["tls"] is True
    # and the same server, the CA no longer trusted, for a session: a TLSError
    with pytest.raises(es.TLSError) as info:
        es.Session("tls-session", None, "127.0.0.1", server.port, option=es.OPTION_STARTTLS)
    assert info.value.code == es.ECERT


def test_every_recipient_refused(smtpd):
    server = smtpd("--reject-rcpt", "nobody")
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        with pytest.raises(es.RefusedError) as info:
            t.send(message(["nobody1@example.org", "nobody2@example.org"]))
    e = info.value
    assert (e.code, e.status, e.enhanced_code) == (es.ERECIPIENTS, 550, "5.1.1")
    assert [(r.address, r.code) for r in e.refused] == [("nobody1@example.org", 550),
                                                        ("nobody2@example.org", 550)]
    assert all("Recipient address rejected" in r.text for r in e.refused)
    assert server.messages() == []


def test_refused_message_on_a_session(smtpd):
    server = smtpd("--data-reply", "554 5.7.1 Message rejected as spam")
    with es.Session("refused", None, "127.0.0.1", server.port) as session:
        with pytest.raises(es.RefusedError) as info:
            session.send(message())
    e = info.value
    assert (e.code, e.status, e.enhanced_code) == (es.ESERVER, 554, "5.7.1")
    assert "Message rejected as spam" in e.text


def test_silent_server_times_out(silent_port):
    es.set_timeout(1)
    try:
        with pytest.raises(es.TimeoutError) as info:
            es.Session("silent", None, "127.0.0.1", silent_port)
    finally:
        es.set_timeout(60)
    e = info.value
    assert isinstance(e, builtins.TimeoutError) and isinstance(e, es.Error)
    assert e.code == es.ETIMEDOUT and e.status == 0 and str(e).endswith("[EMAIL_ETIMEDOUT]")
    with es.Transporter(host="127.0.0.1", port=silent_port, connection_timeout=1) as t:
        with pytest.raises(builtins.TimeoutError) as info:
            t.check_connection()
    assert info.value.code == es.ETIMEDOUT and info.value.causes[0].component == "transport"


def test_connection_refused(closed_port):
    with pytest.raises(es.ConnectionError) as info:
        es.Session("nowhere", None, "127.0.0.1", closed_port)
    assert isinstance(info.value, builtins.ConnectionError)
    assert info.value.code == es.ECONNECT and info.value.status == 0
    with es.Transporter(host="127.0.0.1", port=closed_port) as t:
        with pytest.raises(builtins.ConnectionError) as info:
            t.send(message())
    e = info.value
    assert e.code == es.ECONNECT and e.name == "EMAIL_ECONNECT"
    assert e.causes[0] == (es.ECONNECT, e.causes[0].text, "transport")
    assert "connection refused" in e.causes[0].text


UNANSWERED = """send 220 scripted ESMTP
expect EHLO .*
send 250 scripted
expect MAIL FROM:<me@example.org>.*
send 250 ok
expect RCPT TO:<ada@example.org>
send 250 ok
expect DATA
send 354 go
expect-data
close
"""


def test_unanswered_end_of_data_is_an_unknown_outcome(scripted):
    server = scripted(UNANSWERED)
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        with pytest.raises(es.UnknownOutcomeError) as info:
            t.send(message())
    assert info.value.code == es.EUNKNOWN and info.value.status == 0
    assert b"\r\n.\r\n" in server.record.read_bytes()  # the whole message went out, once


def test_error_class_per_code():
    families = {
        es.AuthenticationError: ("EAUTH", "EAUTHMECH", "EINSECURE"),
        es.TLSError: ("ETLS", "ETLSREQUIRED", "ECERT", "ECERTNAME", "ECERTEXPIRED"),
        es.RefusedError: ("ESERVER", "ERECIPIENTS", "ESIZE"),
        es.TimeoutError: ("ETIMEDOUT",),
        es.ConnectionError: ("ERESOLVE", "ECONNECT", "ECLOSED"),
        es.UnknownOutcomeError: ("EUNKNOWN",),
        es.InvalidArgumentError: ("EINVAL", "ECHARSET"),
    }
    for cls, names in families.items():
        for name in names:
            assert es.errors.error_class(es.ErrorCode[name]) is cls
    assert es.errors.error_class(es.EPROTO) is es.Error
