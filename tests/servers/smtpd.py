#!/usr/bin/python3
"""SMTP server for the emailsession integration tests, built on aiosmtpd.

Listens on --host/--port, prints "PORT <n>" once it accepts connections, and stays up until
SIGTERM/SIGINT or until its stdin (when a pipe, socket or tty) reaches EOF, so a crashed test
never leaves it behind. Accepted messages go to --spool DIR as NNNN.eml (the DATA bytes) and
NNNN.json (the envelope); the .json is written last and atomically, so once it exists both are
complete. Run with --help for the options.
"""

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import contextlib
import json
import logging
import os
import re
import signal
import ssl
import stat
import sys
import warnings

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, TLSSetupException

BUILTIN_MECHS = ("PLAIN", "LOGIN")
# Implemented here on top of aiosmtpd's challenge_auth; offered only when asked for.
EXTRA_MECHS = ("CRAM-MD5", "XOAUTH2", "OAUTHBEARER", "EXTERNAL")
ALL_MECHS = BUILTIN_MECHS + EXTRA_MECHS


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--hostname", default="localhost",
                   help="name in the greeting and EHLO reply (avoids a slow getfqdn())")
    p.add_argument("--spool", metavar="DIR", help="write accepted messages here")
    p.add_argument("--auth", metavar="USER:PASSWORD", action="append", default=[],
                   help="accept these credentials (repeatable); enables AUTH, even in cleartext")
    p.add_argument("--auth-required", action="store_true", help="refuse MAIL without AUTH (530)")
    p.add_argument("--auth-mechs", metavar="MECH,...",
                   help="offer only these of PLAIN,LOGIN,CRAM-MD5,XOAUTH2,OAUTHBEARER,EXTERNAL "
                        "(default PLAIN,LOGIN; EXTERNAL takes the client certificate's CN)")
    p.add_argument("--oauth-token", metavar="USER:TOKEN", action="append", default=[],
                   help="accept this bearer token for XOAUTH2/OAUTHBEARER (repeatable)")
    p.add_argument("--reject-rcpt", metavar="SUBSTRING", action="append", default=[],
                   help="refuse recipients containing this (550, repeatable)")
    p.add_argument("--reject-mail", metavar="SUBSTRING", action="append", default=[],
                   help="refuse senders containing this (553, repeatable)")
    p.add_argument("--data-reply", metavar="'CODE TEXT'",
                   help="reply to the end of DATA with this; the message is spooled only if "
                        "it is a 2xx reply")
    p.add_argument("--no-ehlo", action="store_true", help="answer EHLO with 502 (HELO works)")
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"), help="offer STARTTLS")
    p.add_argument("--starttls-required", action="store_true",
                   help="refuse mail commands before STARTTLS (530)")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="implicit TLS from the first byte")
    p.add_argument("--client-ca", metavar="CA",
                   help="with --tls/--starttls: require a client certificate issued by CA")
    p.add_argument("--smtputf8", action="store_true", help="offer SMTPUTF8")
    p.add_argument("--dsn", action="store_true",
                   help="offer DSN (RFC 3461): RET/ENVID and NOTIFY/ORCPT are taken off the "
                        "commands as received and spooled as dsn_mail / dsn_rcpt")
    p.add_argument("--pipelining", action="store_true",
                   help="offer PIPELINING (aiosmtpd reads commands in order, so it copes)")
    p.add_argument("--chunking", action="store_true",
                   help="offer CHUNKING: BDAT (RFC 3030), implemented on top of aiosmtpd")
    p.add_argument("--size", type=int, metavar="N",
                   help="advertise and enforce SIZE N (default: no SIZE, no limit)")
    p.add_argument("--log", metavar="FILE", help="append every line received and sent")
    p.add_argument("--drop-at-mail", metavar="K:N",
                   help="close the K-th connection (from 1) without a reply when its N-th MAIL "
                        "comes, as a server that dies in the middle of a stream")
    p.add_argument("--chaos", metavar="RATE:SEED",
                   help="at the end of DATA, with probability RATE (seeded): drop the connection "
                        "after spooling (no reply), drop it without spooling, or answer 451")
    args = p.parse_args(argv)

    if args.drop_at_mail:
        k, _, n = args.drop_at_mail.partition(":")
        args.drop_at_mail = (int(k), int(n))
    args.accounts = {}
    for item in args.auth:
        user, sep, password = item.partition(":")
        if not sep:
            p.error(f"--auth {item!r}: expected USER:PASSWORD")
        args.accounts[user.encode()] = password.encode()
    args.tokens = {}
    for item in args.oauth_token:
        user, sep, token = item.partition(":")
        if not sep:
            p.error("--oauth-token wants USER:TOKEN")
        args.tokens[user.encode()] = token.encode()
    args.mechs = set(BUILTIN_MECHS)
    if args.auth_mechs:
        args.mechs = {m.strip().upper() for m in args.auth_mechs.split(",") if m.strip()}
        unknown = args.mechs - set(ALL_MECHS)
        if unknown:
            p.error(f"--auth-mechs: unsupported {', '.join(sorted(unknown))}")
    if args.starttls_required and not args.starttls:
        p.error("--starttls-required needs --starttls CERT KEY")
    if args.starttls and args.tls:
        p.error("--starttls and --tls are exclusive")
    args.chaos_rate, args.rng = 0.0, None
    if args.chaos:
        rate, sep, seed = args.chaos.partition(":")
        import random
        args.chaos_rate, args.rng = float(rate), random.Random(int(seed or 0))
    if args.data_reply and not (len(args.data_reply) >= 3 and args.data_reply[:3].isdigit()):
        p.error("--data-reply must start with a 3-digit code")
    return args


def server_context(cert, key, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


def client_cn(ssl_object):
    """The common name of the client's (verified) certificate, or None."""
    cert = ssl_object.getpeercert() if ssl_object else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def text(b):
    # surrogateescape keeps non-UTF-8 bytes recoverable: json.dumps writes them as \udcXX.
    return b.decode("utf-8", "surrogateescape")


def auth_offered(args):
    return bool(args.accounts or args.tokens or "EXTERNAL" in args.mechs)


def saslname(raw):
    """RFC 5801: "=2C" stands for "," and "=3D" for "="; any other "=" is malformed (None)."""
    if re.search(rb"=(?!2C|3D)", raw):
        return None
    return raw.replace(b"=2C", b",").replace(b"=3D", b"=")


class Handler:
    """aiosmtpd hooks: canned refusals, AUTH bookkeeping and the spool."""

    def __init__(self, args):
        self.args = args
        self.seq = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if self.args.no_ehlo:
            session.extended_smtp = False
            return ["502 5.5.2 Command not recognized"]
        session.host_name = hostname  # the 5-argument hook must do this itself
        if not auth_offered(self.args):
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        if self.args.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if self.args.chunking:
            responses.insert(-1, "250-CHUNKING")
        if self.args.dsn:
            responses.insert(-1, "250-DSN")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        server.mails += 1
        if self.args.drop_at_mail == (server.conn_number, server.mails):
            server.transport.close()
            return "421 4.3.0 closing"  # never reaches the client: the transport is closed
        if any(s in address for s in self.args.reject_mail):
            return "553 5.7.1 Sender address rejected"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if any(s in address for s in self.args.reject_rcpt):
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.args.data_reply or "250 OK"
        if self.args.rng and self.args.rng.random() < self.args.chaos_rate:
            what = self.args.rng.choice(("spool-drop", "drop", "451"))
            if what == "451":
                return "451 4.3.0 Try again later"
            if what == "spool-drop" and self.args.spool:
                self.spool(server, session, envelope)
            server.transport.abort()
            return "421 4.3.0 dropped"  # never reaches the client: the connection is gone
        if reply.startswith("2") and self.args.spool:
            self.spool(server, session, envelope)
        return reply

    async def handle_exception(self, error):
        # A client refusing our test certificate during STARTTLS is an expected outcome.
        if not isinstance(error, TLSSetupException):
            logging.getLogger("mail.log").exception("SMTP session exception")
        return f"500 Error: ({error.__class__.__name__}) {error}"

    async def auth_CRAM__MD5(self, server, args):
        """CRAM-MD5 (RFC 2195): the client proves it knows the password with an HMAC."""
        challenge = f"<{os.getpid()}.{secrets.token_hex(8)}@localhost>".encode()
        answer = await server.challenge_auth(challenge)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        login, _, digest = answer.rpartition(b" ")
        password = self.args.accounts.get(login)
        good = password is not None and hmac.compare_digest(
            hmac.new(password, challenge, hashlib.md5).hexdigest().encode(), digest)
        if not good:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data={
            "mechanism": "CRAM-MD5", "login": text(login), "password": text(password)})

    async def auth_XOAUTH2(self, server, args):
        """XOAUTH2: "user=U^Aauth=Bearer T^A^A" as the initial response (or after a 334)."""
        return await self.bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server, args):
        """OAUTHBEARER (RFC 7628): "n,a=U,^Aauth=Bearer T^A^A"."""
        return await self.bearer(server, args, "OAUTHBEARER")

    async def bearer(self, server, args, mechanism):
        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth(b"", encode_to_b64=False)
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x01")
        fields = dict(f.split(b"=", 1) for f in parts[1:] if b"=" in f)
        if mechanism == "XOAUTH2":
            fields.update(dict(f.split(b"=", 1) for f in parts[:1] if b"=" in f))
        else:  # the GS2 header names the user: "n,a=U," with U a saslname (RFC 5801)
            gs2 = dict(f.split(b"=", 1) for f in parts[0].split(b",") if b"=" in f)
            fields[b"user"] = saslname(gs2.get(b"a", b""))
        user, auth = fields.get(b"user", b""), fields.get(b"auth", b"")
        token = auth[len(b"Bearer "):] if auth.startswith(b"Bearer ") else None
        if token is None or self.args.tokens.get(user) != token:
            # the error details come as a 334; the client answers with an empty line
            details = b'{"status":"401","schemes":"bearer"}'
            await server.challenge_auth(details)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data={
            "mechanism": mechanism, "login": text(user), "password": text(token)})

    async def auth_EXTERNAL(self, server, args):
        """EXTERNAL (RFC 4422 appendix A): the identity is the TLS client certificate's."""
        if len(args) > 1 and args[1] != "=":
            await server.push("501 5.5.2 EXTERNAL takes no authorization identity here")
            return AuthResult(success=False, handled=True)
        cn = client_cn(server.transport.get_extra_info("ssl_object"))
        if cn is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data={
            "mechanism": "EXTERNAL", "login": cn, "password": None})

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        login, password = auth_data.login, auth_data.password
        if self.args.accounts.get(login) != password:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data={
            "mechanism": mechanism, "login": text(login), "password": text(password)})

    def spool(self, server, session, envelope):
        self.seq += 1
        base = os.path.join(self.args.spool, f"{self.seq:04d}")
        content = envelope.original_content
        if content is None:
            content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        ssl_object = server.transport.get_extra_info("ssl_object")
        with open(base + ".eml", "wb") as f:
            f.write(content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "rcpt_options": envelope.rcpt_options,
            "auth": session.auth_data if session.authenticated else None,
            "peer": list(session.peer) if session.peer else None,
            "size": len(content),
            "helo": session.host_name,
            "esmtp": session.extended_smtp,
            "smtputf8": envelope.smtp_utf8,
            "dsn_mail": getattr(envelope, "dsn_mail", []),
            "dsn_rcpt": getattr(envelope, "dsn_rcpt", []),
            "tls": server.tls_active(),
            "tls_client": client_cn(ssl_object),
            "tls_resumed": ssl_object.session_reused if ssl_object else None,
        }
        with open(base + ".json.tmp", "w", encoding="ascii") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        os.replace(base + ".json.tmp", base + ".json")


class LoggingSMTP(SMTP):
    """aiosmtpd's SMTP plus an optional raw line log and a way to tell whether TLS is on."""

    connections = 0

    def __init__(self, handler, log_file, **kwargs):
        super().__init__(handler, **kwargs)
        self._log_file = log_file
        LoggingSMTP.connections += 1
        self._log_id = self.conn_number = LoggingSMTP.connections
        self.mails = 0
        self._log_partial = b""
        self._implicit_tls = False

    def connection_made(self, transport):
        fresh = self.transport is None
        super().connection_made(transport)
        if fresh:
            self._implicit_tls = transport.get_extra_info("ssl_object") is not None
            self._log(b"-- connect " + repr(self.session.peer).encode())
        else:
            self._log(b"-- STARTTLS done")

    def connection_lost(self, error):
        if self._log_partial:
            self._log(b"C: " + self._log_partial + b"  [no CRLF]")
            self._log_partial = b""
        self._log(b"-- closed")
        super().connection_lost(error)

    @staticmethod
    def _take_params(arg, names):
        """Splits the parameters named (RFC 3461's) off a MAIL or RCPT argument, as received:
        aiosmtpd refuses parameters it does not know, and upper-cases those it keeps."""
        words = (arg or "").split(" ")
        taken = [w for w in words if w.split("=", 1)[0].upper() in names]
        return " ".join(w for w in words if w not in taken), taken

    async def smtp_MAIL(self, arg):
        if not self.event_handler.args.dsn:
            return await super().smtp_MAIL(arg)
        arg, taken = self._take_params(arg, ("RET", "ENVID"))
        await super().smtp_MAIL(arg)
        if self.envelope.mail_from is not None:
            self.envelope.dsn_mail = taken
            self.envelope.dsn_rcpt = []

    async def smtp_RCPT(self, arg):
        if not self.event_handler.args.dsn:
            return await super().smtp_RCPT(arg)
        arg, taken = self._take_params(arg, ("NOTIFY", "ORCPT"))
        before = len(self.envelope.rcpt_tos)
        await super().smtp_RCPT(arg)
        if len(self.envelope.rcpt_tos) > before:
            self.envelope.dsn_rcpt.append(taken)

    async def smtp_BDAT(self, arg):
        """BDAT size [LAST] (RFC 3030): the chunk is read whatever the transaction's state, as
        the client sends it without waiting; LAST hands the message to the DATA hook."""
        if not self.event_handler.args.chunking:
            await self.push("502 5.5.1 BDAT not offered")
            return
        parts = (arg or "").split()
        if not (1 <= len(parts) <= 2 and parts[0].isdigit()) or \
                (len(parts) == 2 and parts[1].upper() != "LAST"):
            # the chunk size is unknown, so the stream cannot be followed any more
            await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            self.transport.close()
            return
        size, last = int(parts[0]), len(parts) == 2
        chunk = await self._reader.readexactly(size) if size else b""
        if not hasattr(self, "_bdat"):
            self._bdat = bytearray()
        if not self.envelope.rcpt_tos:
            self._bdat = bytearray()
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        self._bdat += chunk
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        content = bytes(self._bdat)
        self._bdat = bytearray()
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    def tls_active(self):
        return self._implicit_tls or self._tls_protocol is not None

    def data_received(self, data):
        # Plain text in both cases: after STARTTLS the TLS layer hands us decrypted data.
        if self._log_file:
            lines = (self._log_partial + data).split(b"\r\n")
            self._log_partial = lines.pop()
            for line in lines:
                self._log(b"C: " + line)
        super().data_received(data)

    async def push(self, status):
        raw = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") \
            if isinstance(status, str) else status
        for line in raw.split(b"\r\n"):
            self._log(b"S: " + line)
        await super().push(status)

    def _log(self, line):
        if self._log_file:
            self._log_file.write(b"[%d] %s\n" % (self._log_id, line))
            self._log_file.flush()


def quiet_tls_errors(loop, context):
    # A client that rejects our test certificate is an expected outcome, not a server failure.
    if isinstance(context.get("exception"), (ssl.SSLError, ConnectionError)):
        return
    loop.default_exception_handler(context)


def stdin_watchable():
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    # /dev/null (a background shell job's stdin) would mean "exit at once": don't watch it.
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)


async def serve(args, log_file):
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(quiet_tls_errors)
    handler = Handler(args)
    starttls_ctx = server_context(*args.starttls, args.client_ca) if args.starttls else None
    implicit_ctx = server_context(*args.tls, args.client_ca) if args.tls else None
    offered = auth_offered(args)
    excluded = set(ALL_MECHS) - args.mechs if offered else set(ALL_MECHS)

    def factory():
        return LoggingSMTP(
            handler, log_file,
            hostname=args.hostname,
            data_size_limit=args.size,
            enable_SMTPUTF8=args.smtputf8,
            decode_data=False,
            tls_context=starttls_ctx,
            require_starttls=args.starttls_required,
            auth_required=args.auth_required,
            auth_require_tls=False,
            auth_exclude_mechanism=excluded,
            authenticator=handler.authenticate,
            loop=loop)

    server = await loop.create_server(factory, host=args.host, port=args.port, ssl=implicit_ctx)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if stdin_watchable():
        def on_stdin():
            if not os.read(0, 4096):
                loop.remove_reader(0)
                done.set()
        loop.add_reader(0, on_stdin)

    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await done.wait()
    server.close()


def main(argv):
    args = parse_args(argv)
    if args.spool:
        os.makedirs(args.spool, exist_ok=True)
    # aiosmtpd warns about AUTH without TLS, which is exactly what these tests want.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    # Closed only after asyncio.run(), whose cleanup still logs the connections it closes.
    with open(args.log, "ab") if args.log else contextlib.nullcontext() as log_file:
        asyncio.run(serve(args, log_file))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
