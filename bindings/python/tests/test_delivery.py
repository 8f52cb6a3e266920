"""The sending features that came after the package's first version, as the servers see them:
DSN parameters, a pool of connections, a client certificate (and EXTERNAL), SCRAM against
dovecot."""

import asyncio
import time

import pytest

import emailsession as es

SENDER = "me@example.org"


def message(subject, to="ada@example.org", **kwargs):
    return es.Message(sender=SENDER, to=to, subject=subject, text="x\n", **kwargs)


def wait_for(predicate, what):
    """Polls a condition another process makes true (a relay's spool), failing after 30 s
    rather than hanging."""
    for _ in range(600):
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


# ---- DSN ------------------------------------------------------------------------------------

def test_dsn_parameters_reach_the_server(smtpd):
    server = smtpd("--dsn")
    built = message("dsn 1", to="b+1@example.org",
                    dsn={"notify": es.NOTIFY_SUCCESS | es.NOTIFY_FAILURE, "ret": "HDRS",
                         "envid": "Q1 id=7+x"})
    chained = message("dsn 2").set_dsn(es.NOTIFY_NEVER)
    plain = message("dsn 3", dsn=es.NOTIFY_DELAY).set_dsn()  # asks for nothing again
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        for m in (built, chained, plain):
            t.send(m)
    (first, _), (second, _), (third, _) = server.messages()
    assert sorted(first["dsn_mail"]) == ["ENVID=Q1+20id+3D7+2Bx", "RET=HDRS"]
    assert first["dsn_rcpt"] == [["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b+2B1@example.org"]]
    assert second["dsn_mail"] == []
    assert second["dsn_rcpt"] == [["NOTIFY=NEVER", "ORCPT=rfc822;ada@example.org"]]
    assert third["dsn_mail"] == [] and third["dsn_rcpt"] == [[]]  # no request, no ORCPT


def test_dsn_not_offered_sends_without_it(smtpd):
    server = smtpd()  # aiosmtpd would refuse the parameters: none are sent
    with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE) as t:
        t.send(message("no dsn here", dsn={"notify": es.NOTIFY_FAILURE, "ret": "FULL"}))
    [(meta, mail)] = server.messages()
    assert mail["Subject"] == "no dsn here" and meta["rcpt_options"] == []


@pytest.mark.parametrize("kwargs, match", [
    ({"notify": es.NOTIFY_NEVER | es.NOTIFY_SUCCESS}, "notify"),
    ({"notify": 16}, "notify"),
    ({"ret": "BOTH"}, "ret"),
    ({"envid": "x" * 101}, "envid"),
    ({"envid": "caf\u00e9"}, "envid"),
])
def test_dsn_bad_values_are_refused(kwargs, match):
    m = message("bad dsn")
    with pytest.raises(es.InvalidArgumentError, match=match):
        m.set_dsn(**kwargs)
    with pytest.raises(es.InvalidArgumentError):
        message("bad dsn", dsn=kwargs)


def test_dsn_wrong_types():
    m = message("types")
    with pytest.raises(TypeError, match="notify"):
        m.set_dsn("SUCCESS")
    with pytest.raises(TypeError, match="ret"):
        m.set_dsn(ret=b"HDRS")
    with pytest.raises(TypeError):
        message("types", dsn={"notify": 2, "bogus": 1})


# ---- the pool -------------------------------------------------------------------------------

def peers(server):
    """The client ports of the connections the messages came over."""
    return {tuple(meta["peer"]) for meta, _ in server.messages()}


def test_transporter_pool_spreads_a_burst(smtpd):
    server = smtpd("--pipelining")
    messages = [message(f"pool {i}") for i in range(40)]

    async def main():
        with es.Transporter(host="127.0.0.1", port=server.port, security=es.SECURITY_NONE,
                            max_connections=4) as t:
            assert t.server.max_connections == 4
            return await asyncio.gather(*(t.send_async(m) for m in messages))

    results = asyncio.run(main())
    assert sorted(r.message_id for r in results) == sorted(m.id for m in messages)
    assert sorted(mail["Subject"] for _, mail in server.messages()) == \
        sorted(f"pool {i}" for i in range(40))
    assert 2 <= len(peers(server)) <= 4


def test_set_max_connections_for_sessions(smtpd):
    with pytest.raises(ValueError):
        es.set_max_connections(0)
    with pytest.raises(ValueError):
        es.set_max_connections(es.MAX_CONNECTIONS + 1)
    with pytest.raises(TypeError):
        es.set_max_connections("3")
    with pytest.raises(ValueError):
        es.Transporter(host="h", max_connections=es.MAX_CONNECTIONS + 1)
    server = smtpd("--pipelining")
    es.set_max_connections(3)
    try:
        with es.Session("pooled", None, "127.0.0.1", server.port, asynchronous=True) as s:
            ids = [s.send(message(f"session pool {i}")) for i in range(30)]
    finally:
        es.set_max_connections(1)
    assert all(es.message_status(i) == es.SENT for i in ids)
    assert len(server.messages()) == 30
    assert 2 <= len(peers(server)) <= 3


# ---- client certificates, EXTERNAL, SCRAM ---------------------------------------------------

def test_client_certificate_presented(smtpd, certs):
    server = smtpd("--tls", str(certs / "good.pem"), str(certs / "good.key"),
                   "--client-ca", str(certs / "ca.pem"))
    settings = dict(host="127.0.0.1", port=server.port, security=es.SECURITY_TLS,
                    ca_file=certs / "ca.pem")
    with es.Transporter(**settings, client_cert_file=certs / "client.pem",
                        client_key_file=certs / "client.key") as t:
        assert t.server.client_cert_file == str(certs / "client.pem")
        t.send(message("with a certificate"))
    [(meta, _)] = server.messages()
    assert meta["tls_client"] == "relay-client"
    with es.Transporter(**settings) as t:  # the server requires one: without, no send
        with pytest.raises(es.Error):
            t.send(message("without"))
    assert len(server.messages()) == 1
    with pytest.raises(es.InvalidArgumentError, match="no-such.pem"):
        es.Transporter(**settings, client_cert_file=certs / "no-such.pem")


def test_external_authenticates_by_certificate(smtpd, certs):
    server = smtpd("--starttls", str(certs / "good.pem"), str(certs / "good.key"),
                   "--client-ca", str(certs / "ca.pem"), "--auth-mechs", "EXTERNAL",
                   "--auth-required")
    with es.Transporter(host="127.0.0.1", port=server.port, ca_file=certs / "ca.pem",
                        client_cert_file=certs / "client.pem",
                        client_key_file=certs / "client.key") as t:
        t.send(message("by certificate"))
    [(meta, _)] = server.messages()
    assert meta["auth"]["mechanism"] == "EXTERNAL"
    assert meta["auth"]["login"] == "relay-client"


def test_scram_against_dovecot(dovecot, tmp_path):
    port, relay = dovecot()
    for i, (user, mode, mechanism) in enumerate([("scram256", None, "SCRAM-SHA-256"),
                                                 ("scram1", "SCRAM-SHA-1", "SCRAM-SHA-1")]):
        log = tmp_path / f"{user}.log"
        with es.Transporter(host="127.0.0.1", port=port, security=es.SECURITY_NONE,
                            user=user, password="pencil", authentication_mode=mode,
                            log_file=log) as t:
            t.send(message(f"scram {i}"))
        wait_for(lambda: len(relay.messages()) == i + 1, f"the relay to get message {i}")
        written = log.read_text()
        assert f'"AUTH {mechanism} ****"' in written
        assert f"SMTP Authenticated as '{user}' ({mechanism})" in written
        assert "pencil" not in written
    with es.Transporter(host="127.0.0.1", port=port, security=es.SECURITY_NONE,
                        user="scram256", password="pen") as t:
        with pytest.raises(es.AuthenticationError, match="SCRAM-SHA-256"):
            t.send(message("wrong password"))
    assert len(relay.messages()) == 2
