#!/usr/bin/python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (run from anywhere; rerun after
changing an input layout). Each seed is a real conversation: the configuration bytes the target
reads first (see the comment at the top of each fuzz_*.c), then what a server would send."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def crlf(*lines):
    return "".join(l + "\r\n" for l in lines)


# ---- fuzz_reply: server bytes as they come ----
write("fuzz_reply", "greeting", crlf("220 mx.example.org ESMTP Postfix (Debian/GNU)"))
write("fuzz_reply", "ehlo-postfix", crlf(
    "250-mx.example.org", "250-PIPELINING", "250-SIZE 10240000", "250-VRFY", "250-ETRN",
    "250-STARTTLS", "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250-DSN", "250-SMTPUTF8",
    "250 CHUNKING"))
write("fuzz_reply", "pipelined-batch", crlf(
    "250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.1.1 <nobody@example.org>: Recipient address rejected",
    "354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued as 4BZ1Fq3kLcz9rxN"))
write("fuzz_reply", "multiline-enhanced", crlf(
    "550-5.7.1 Message rejected", "550-5.7.1 see https://example.org/policy", "550 5.7.1 bye"))
write("fuzz_reply", "bare-lf-and-cr", "250-first\n250-with\rcr\r\n250 last\n")
write("fuzz_reply", "auth-challenge", crlf("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6",
                                           "235 2.7.0 Authentication successful"))
write("fuzz_reply", "code-only", "250\r\n421\r\n")

# ---- fuzz_ehlo: byte 0, byte 1, then the answer to EHLO ----
EHLO_FULL = crlf("250-mx.example.org Hello", "250-PIPELINING", "250-SIZE 35882577", "250-8BITMIME",
                 "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
                 "250-ENHANCEDSTATUSCODES", "250-CHUNKING", "250-STARTTLS", "250 SMTPUTF8")
write("fuzz_ehlo", "gmail-like", bytes([0x80 | 0x08 | 0x01, 0x04]) + EHLO_FULL.encode())
write("fuzz_ehlo", "old-auth-equals", bytes([0x80 | 0x08 | 0x04, 0x00]) + crlf(
    "250-mail.example.com", "250-AUTH=LOGIN CRAM-MD5", "250-auth login cram-md5",
    "250 size 1000").encode())
write("fuzz_ehlo", "required-none", bytes([0x02, 0x00]) + crlf("250-x", "250 8BITMIME").encode())
write("fuzz_ehlo", "ehlo-refused", bytes([0x80, 0x00]) + crlf("502 5.5.2 Error: command not recognized").encode())
write("fuzz_ehlo", "size-exceeded", bytes([0x80, 0x0c]) + crlf("250-x", "250 SIZE 1000").encode())
write("fuzz_ehlo", "utf8-pipelining", bytes([0x80, 0x03]) + crlf(
    "250-x", "250-PIPELINING", "250-8BITMIME", "250 SMTPUTF8").encode())
write("fuzz_ehlo", "nochunking", bytes([0x80, 0x10]) + crlf(
    "250-x", "250-PIPELINING", "250 CHUNKING").encode())

# ---- fuzz_engine: 4 config bytes, per job 3 bytes + body, then the server ----
GREETING = "220 mx.example.org ESMTP\r\n"


def engine(name, b0, b1, b2, b3, jobs, server, b4=0):
    data = bytes([b0, b1, b2, b3, b4])
    for flags, shape, body in jobs:
        body = body.encode() if isinstance(body, str) else body
        data += bytes([flags, len(body), shape]) + body
    data += server.encode()
    write("fuzz_engine", name, data)


BODY = "Subject: hello\r\n\r\nHello,\r\n.a line with a dot\r\n.\r\nbye\r\n"
BARE = "Subject: x\n\nbare lf\nbare cr\r.\rdot\n.\n"
QUIT_AT_ONCE = 1 << 3
LINE_BY_LINE = 127

# one message, no extension, lock-step
engine("plain-one", 0x00, 0x00, QUIT_AT_ONCE, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250 mx.example.org", "250 2.1.0 Ok", "250 2.1.5 Ok",
                       "354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued", "221 2.0.0 Bye"))
# two messages pipelined, two recipients each, the second recipient of the first refused
engine("pipelined-two", 0x80, 1 << 3, QUIT_AT_ONCE, LINE_BY_LINE, [(0x01 | 0x10, 0x00, BODY), (0x01, 0x00, BARE)],
       GREETING + crlf("250-mx.example.org", "250-PIPELINING", "250-SIZE 10240000",
                       "250 ENHANCEDSTATUSCODES",
                       "250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.1.1 <r1.j0@rcpt.example>: unknown",
                       "354 go ahead", "250 2.0.0 queued as A",
                       "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", "354 go ahead",
                       "250 2.0.0 queued as B", "221 2.0.0 Bye"))
# every recipient refused while pipelining: DATA still gets a 354, the data is empty
engine("pipelined-all-refused", 0x80, 0x00, QUIT_AT_ONCE, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250 PIPELINING", "250 2.1.0 Ok", "550 5.1.1 unknown",
                       "354 go ahead", "554 5.5.1 no valid recipients", "221 Bye"))
# CHUNKING: a body of 60 * 2^14 octets (capped at 96 KiB) goes as several BDAT chunks
engine("bdat-chunks", 0x00, 0x00, QUIT_AT_ONCE, LINE_BY_LINE, [(0x10, 0x0f, "line one\r\n.line two\n" * 3)],
       GREETING + crlf("250-mx", "250-PIPELINING", "250-CHUNKING", "250 8BITMIME",
                       "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 chunk",
                       "250 2.0.0 chunk", "250 2.0.0 chunk", "250 2.0.0 queued", "221 Bye"))
# STARTTLS, then AUTH PLAIN over TLS
engine("starttls-auth-plain", 0x01 | (1 << 2), 0x00, QUIT_AT_ONCE, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250-STARTTLS", "250 AUTH PLAIN LOGIN", "220 2.0.0 Ready to start TLS",
                       "250-mx", "250-AUTH PLAIN LOGIN", "250 PIPELINING", "235 2.7.0 Authentication successful",
                       "250 Ok", "250 Ok", "354 go", "250 queued", "221 Bye"))
# AUTH LOGIN (asked for), cleartext allowed
engine("auth-login", 0x01 | 0x20, 0x00, 0x01 | QUIT_AT_ONCE, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250 AUTH LOGIN PLAIN", "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6",
                       "235 2.7.0 ok", "250 Ok", "250 Ok", "354 go", "250 queued", "221 Bye"))
# CRAM-MD5 over implicit TLS
engine("auth-cram", 0x01 | 0x10, 0x00, 0x03 | QUIT_AT_ONCE, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250 AUTH CRAM-MD5", "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
                       "235 ok", "250 Ok", "250 Ok", "354 go", "250 queued", "221 Bye"))
# XOAUTH2 refused: the 334 with the error, then 535
engine("auth-xoauth2-refused", 0x02 | 0x10, 0x00, 0x04, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250 AUTH XOAUTH2 OAUTHBEARER",
                       "334 eyJzdGF0dXMiOiI0MDEifQ==", "535 5.7.8 Username and Password not accepted"))
# HELO fallback after EHLO is refused
engine("helo-fallback", 0x00, 0x00, QUIT_AT_ONCE, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("502 5.5.2 Error: command not recognized", "250 mx", "250 Ok", "250 Ok",
                       "354 go", "250 queued", "221 Bye"))
# the server closes in the middle (421 to RCPT), three jobs queued
engine("closing-421", 0x00, 2 << 3, 0, 0, [(0x00, 0x00, BODY), (0x00, 0x00, BODY), (0x00, 0x00, BARE)],
       GREETING + crlf("250-mx", "250 PIPELINING", "250 Ok", "421 4.4.2 mx closing connection"))
# end of data sent, no answer: the outcome is unknown
engine("eod-unanswered", 0x00, 0x00, 0, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250 mx", "250 Ok", "250 Ok", "354 go"))
# STARTTLS answered with injected data behind the 220
engine("starttls-injection", 0x05, 0x00, 0, 0, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250 STARTTLS", "220 go ahead", "250 injected"))
# jobs submitted from `ready`, the body read fails halfway
engine("read-error", 0x00, (1 << 5) | (1 << 3), 0, LINE_BY_LINE, [(0x40, 0x02, BODY), (0x00, 0x00, BODY)],
       GREETING + crlf("250 mx", "250 Ok", "250 Ok", "354 go"))

# ---- fuzz_encode: selector byte, then the data ----
for i, (sel, text) in enumerate([
        (0x00, "Hello, world"),
        (0x01, "line one\r\n.line two\nbare\rend"),
        (0x02, ".\r\n..\r\n.\n\r\n.\r"),
        (0x03, "Ünïcödé text with spaces   \r\nand = signs\tand tabs\t"),
        (0x04, "Grüße aus Köln — 東京からこんにちは"),
        (0x05, "Élève"),
        (0x06, "日本語の件名です。長い件名を折り返す必要があります。"),
        (0x07, bytes(range(256))),
]):
    write("fuzz_encode", "seed%d" % i, bytes([sel]) + (text.encode() if isinstance(text, str) else text))

# ---- fuzz_mime: flags, modes, then name NUL subject NUL text NUL html NUL attachment ----
def mime(name, flags, modes, fields, attachment=b""):
    write("fuzz_mime", name, bytes([flags, modes]) + b"\0".join(f.encode() for f in fields) +
          b"\0" + attachment)


mime("text-only", 0x00, 0x00, ["Hello", "Sübject line", "Hi there,\r\n.dot\r\nbye", ""])
mime("html-attach", 0x0f | 0x40, 0x01 | 0x30,
     ["Bob Ünicode", "A subject that is long enough to be folded over more than one line of header text",
      "plain text\nwith bare LF", "<p>Hello <b>world</b></p>"], bytes(range(256)))
mime("iso2022jp", 0x03, 0x0f, ["山田 太郎", "日本語の件名", "本文です\r\n", "<p>こんにちは</p>"], b"\x89PNG")
mime("latin1", 0x12, 0x0a, ["Émile Zola", "Ça va ? Très bien", "Grüße\r\n" * 3, ""], b"x" * 100)
mime("latin1-refused", 0x00, 0x0a, ["", "emoji 😀", "text", ""])
mime("long-line", 0x20 | 0x80, 0x00, ["a" * 80, "word " * 40, "x" * 1200 + "\n=end", ""])

# (fuzz_engine, continued) every extension a message can use: SIZE=, BODY=8BITMIME, SMTPUTF8
engine("extensions-8bit-utf8", 0x80, 0x00, QUIT_AT_ONCE, LINE_BY_LINE, [(0x0c | 0x10, 0x00, "Subject: \xe9t\xe9\r\n\r\nok\r\n")],
       GREETING + crlf("250-mx", "250-PIPELINING", "250-SIZE 1000000", "250-8BITMIME", "250-SMTPUTF8",
                       "250-DSN", "250 ENHANCEDSTATUSCODES", "250 2.1.0 Ok", "250 2.1.5 Ok", "354 go",
                       "250 2.0.0 queued", "221 2.0.0 Bye"))
# the server closes right after the end of data: that message failed, the next one may go again
engine("closing-after-data", 0x00, 1 << 3, 0, LINE_BY_LINE, [(0x00, 0x00, BODY), (0x00, 0x00, BODY)],
       GREETING + crlf("250 mx", "250 Ok", "250 Ok", "354 go", "421 4.3.2 shutting down"))
# bytes from the server while the TLS handshake runs (they may not be trusted); written late
engine("data-during-handshake", 0x05, 0x00, 0, LINE_BY_LINE, [(0x00, 0x00, BODY)],
       GREETING + crlf("250-mx", "250 STARTTLS", "220 go ahead", "250 injected"), b4=0x03)
# the jobs still queued after the greeting are cancelled
engine("cancel-queued", 0x00, 2 << 3, 0, LINE_BY_LINE, [(0x00, 0x00, BODY), (0x00, 0x00, BODY), (0x00, 0x00, BODY)],
       GREETING + crlf("250 mx", "250 Ok", "250 Ok", "354 go", "250 queued"), b4=0x04)

# ---- fuzz_address: byte 0 (bit 0: a list), then the text as a user writes it ----
for i, (lst, text) in enumerate([
        (0, "ada@example.org"),
        (0, "Ada Lovelace <ada@example.org>"),
        (0, '"Doe, John" <john.doe@example.org>'),
        (0, '"quoted \\"name\\" \\\\" <"odd local"@[192.0.2.1]>'),
        (1, "a@b.example, Ada <ada@example.org>, ,  \"x,y\" <x@y.example>"),
        (1, "Jos\u00e9 <jos\u00e9@b\u00fccher.example>, <ipv6@[IPv6:2001:db8::1]>"),
        (0, "  Name   with   spaces   <  a@b.example  >  "),
        (1, '"unclosed <a@b.example>'),
        (0, "a@b.example, c@d.example"),
        (0, "no-at-sign"),
        (0, "x" * 65 + "@toolong.example"),
]):
    write("fuzz_address", "seed-%02d" % i, bytes([lst]) + text.encode("utf-8"))

# ---- fuzz_connection: bytes 0-2, per job: flags, body length, `at`, body; then the server ----
CONN_SERVER = GREETING + crlf("250-mx", "250-PIPELINING", "250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok",
                              "354 go", "250 2.0.0 queued", "221 2.0.0 Bye")
LOCKSTEP = GREETING + crlf("250 mx", "250 Ok", "250 Ok", "354 go", "250 queued", "221 Bye")
CHUNKS = GREETING + crlf("250-mx", "250-PIPELINING", "250 CHUNKING", "250 Ok", "250 Ok", "250 Ok",
                         "221 Bye")


def conn(name, b0, b1, b2, jobs, server):
    data = bytes([b0, b1, b2])
    for flags, at, body in jobs:
        body = body.encode()
        data += bytes([flags, len(body), at]) + body
    write("fuzz_connection", name, data + server.encode())


BODY1 = "Subject: hi\r\n\r\nhello\r\n.dot\r\n"
conn("pipelined-one", 0x02, 0x01 | 0x08, 127, [(0x10, 0, BODY1)], CONN_SERVER)
conn("lockstep-one", 0x00, 0x01 | 0x08, 127, [(0x10, 0, BODY1)], LOCKSTEP)
conn("bdat-one", 0x00, 0x01 | 0x08, 127, [(0x10, 0, BODY1)], CHUNKS)
# the file vanishes after 5 bytes (read error), shrinks to 5 bytes, grows by 40 bytes
conn("vanished", 0x02, 0x02, 127, [(0x04 | 0x10, 5, BODY1), (0x10, 0, BODY1)], CONN_SERVER)
conn("shrank", 0x00, 0x01, 127, [(0x08 | 0x10, 5, BODY1)], LOCKSTEP)
conn("grew", 0x00, 0x01, 127, [(0x0c | 0x10, 40, BODY1)], CHUNKS)
conn("vanished-chained", 0x00, 0x02 | 0x10 | 0x0c, 7, [(0x04, 3, BODY1), (0x00, 0, BODY1)], CONN_SERVER)
conn("timeout", 0x20, 0x01, 127, [(0x00, 0, BODY1)], GREETING)
conn("refused", 0x40, 0x01, 0, [(0x00, 0, BODY1)], "")
conn("closing-421", 0x00, 0x02 | 0x10, 127, [(0x00, 0, BODY1), (0x00, 0, BODY1)],
     GREETING + crlf("250 mx", "250 ok", "421 bye"))

# ---- fuzz_imap: part 0 (byte 0 even) the reader, part 1 (byte 0 odd) the engine ----
SELECT_REPLY = crlf("* 3 EXISTS", "* 0 RECENT", "* OK [UIDVALIDITY 3857529045] UIDs valid",
                    "* OK [UIDNEXT 9] next", "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen)",
                    "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] ok")
FETCH_BODIES = ("* 1 FETCH (UID 4 FLAGS (\\Seen) RFC822.SIZE 5 BODY[] {5}\r\nHello)\r\n"
                "* 2 FETCH (UID 5 RFC822.SIZE 0 FLAGS () BODY[] {0}\r\n)\r\n"
                "* 3 FETCH (FLAGS (\\Seen \\Flagged) BODY[] {13}\r\nab\r\n{3}\r\n)(x) UID 7)\r\n")


def imap_engine(name, b0, b1, cut, cap, cmds, server):
    data = bytes([b0 | 1, b1, cut, cap]) + bytes(c for cmd in cmds for c in cmd)
    write("fuzz_imap", name, data + server.encode("utf-8"))


def imap_reader(name, cap, stop, cut, server):
    write("fuzz_imap", name, bytes([0, cap, stop, cut]) + server.encode("utf-8"))


# password, cleartext allowed, 3 commands (SELECT INBOX, SEARCH "Grüße", FETCH 4,5,7 bodies)
imap_engine("sasl-ir-literalplus", 0x02, 0x08 | 0x20 | 0x40, 0, 0,
            [(0x00, 0x00), (0x09, 0x00), (0x02, 0x1b)],
            crlf("* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN ID IDLE] Dovecot ready.",
                 "A1 OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] Logged in")
            + SELECT_REPLY + crlf("A2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).",
                                  "* SEARCH 4 5 7", "A3 OK Search completed")
            + FETCH_BODIES + crlf("A4 OK Fetch completed.", "* BYE Logging out",
                                  "A5 OK Logout completed."))
# LOGIN after CAPABILITY, a synchronising literal for a UTF-8 mailbox, pieces from the generator
imap_engine("login-sync-literal", 0x02, 0x08 | 0x10, 148, 0, [(0x10, 0x00), (0x02, 0x0a)],
            crlf("* OK IMAP4rev1 ready", "* CAPABILITY IMAP4rev1 AUTH=LOGIN", "A1 OK done",
                 "A2 OK logged in", "+ go ahead") + SELECT_REPLY
            + crlf("A3 OK [READ-ONLY] selected") + FETCH_BODIES + crlf("A4 OK"))
# STARTTLS required, handshake done, CAPABILITY again, AUTHENTICATE PLAIN without SASL-IR, then
# STORE and EXPUNGE; quit at once
imap_engine("starttls-plain", 0x02 | 0x04 | 0x08 | 0x20, 0x02 | 0x10, 1, 0,
            [(0x03, 0x0b), (0x04, 0x00)],
            crlf("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi", "A1 OK Begin TLS")
            + crlf("* CAPABILITY IMAP4rev1 AUTH=PLAIN", "A2 OK", "+ ", "A3 OK in",
                   "* 1 FETCH (UID 2 FLAGS (\\Seen))", "A4 OK stored", "* 1 EXPUNGE",
                   "A5 OK expunged", "* BYE", "A6 OK bye"))
# PREAUTH, window 1, FETCH headers byte by byte, a literal over the cap (16 * 2)
imap_engine("preauth-header-cap", 0x10, 0x04 | 0x10, 1, 2, [(0x42, 0x03), (0x07, 0x00)],
            crlf("* PREAUTH ready") + "* 1 FETCH (UID 1 BODY[HEADER] {18}\r\nSubject: hi\r\n\r\nxxx"
            + crlf(")", "A1 OK") + "* 2 FETCH (UID 2 BODY[HEADER] {40}\r\n" + "y" * 40 + crlf(")"))
# XOAUTH2 with a token, tls_active, LOGOUT with commands left, BYE in the middle
imap_engine("xoauth2-bye", 0x80, 0x04 | 0x10, 7, 0, [(0x05, 0x01), (0x01, 0x00)],
            crlf("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] hi",
                 "+ eyJzdGF0dXMiOiI0MDEifQ==", "A1 NO [AUTHENTICATIONFAILED] bad token"))
imap_engine("search-no-literal-answered", 0x02, 0x08 | 0x10, 0, 0, [(0x09, 0x00), (0x02, 0x01)],
            crlf("* OK [CAPABILITY IMAP4rev1] hi", "A1 OK in", "A2 NO [BADCHARSET] no",
                 "+ go", "A3 OK"))

imap_reader("reader-fetch", 0, 0, 0, SELECT_REPLY + FETCH_BODIES + crlf("A4 OK done"))
imap_reader("reader-stop-cut", 0, 2, 5, crlf("* CAPABILITY IMAP4rev1 LITERAL+", "A1 OK")
            + "* 1 FETCH (UID 9 BODY[TEXT] {3+}\r\nabc BINARY[1] {2}\nxy)\r\n"
            + "* 2 FETCH (UID 10 BODYSTRUCTURE ((\"text\" \"plain\" NIL) \"mixed\") RFC822 {4}\r\n"
            + "1234)\r\n")
imap_reader("reader-cap", 2, 0, 9, "* 1 FETCH (BODY[] {9}\r\n123456789 UID 3)\r\n"
            "* 2 FETCH (X {12}\r\nkept literal)\r\n")
imap_reader("reader-nesting", 0, 0, 0, "* 1 FETCH (UID 4 BODYSTRUCTURE " + "(" * 70 + ")" * 70
            + ")\r\n* SEARCH 1 2 (MODSEQ 3)\r\n")
