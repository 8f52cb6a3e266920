"""emailsession: send email over SMTP without blocking, from Python.

A binding of the C library libemailsession (loaded with ctypes: see README). Two ways to send:

    import emailsession as es
    m = es.Message(sender="me@example.org", to=["ada@example.org"], subject="Hello",
                   text="Hi Ada!\\n")
    with es.Session("me@example.org", "password", "smtp.example.org",
                    option=es.OPTION_STARTTLS) as s:           # WLanguage's named sessions
        s.send(m)
    with es.Transporter(host="smtp.example.org", user="me@example.org",
                        password="password") as t:               # 4D's SMTP transporter
        result = t.send(m)                      # or: await t.send_async(m) under asyncio

With an outbox (set_outbox(directory), or Transporter(outbox=...)) asynchronous sends are on
disk before they are reported queued; outbox_list(), outbox_resume(user) and
Transporter.outbox_resume() find and send what an earlier run left.

Failures raise emailsession.Error (AuthenticationError, TLSError, RefusedError, TimeoutError,
ConnectionError, UnknownOutcomeError...) with code, name, status, enhanced_code, text,
refused and causes.
"""

import atexit
import ctypes
from typing import Callable, Optional

from . import _check, _dispatch
from ._lib import LOG_CB, lib, text
from ._version import __version__
from .errors import (AuthenticationError, Cause, ConnectionError, Error, ErrorCode,
                     InvalidArgumentError, Refused, RefusedError, Result, SessionError,
                     TimeoutError, TLSError, UnknownOutcomeError, from_last_error)
from .message import (MAIL_MODE_ISO2022JP, MAIL_MODE_ISO88591, MAIL_MODE_UTF8,
                      MAIL_MODE_UTF8_IN_BASE64, NOTIFY_DELAY, NOTIFY_FAILURE, NOTIFY_NEVER,
                      NOTIFY_SUCCESS, PRIORITY_HIGH, PRIORITY_HIGHEST, PRIORITY_LOW,
                      PRIORITY_LOWEST, PRIORITY_NORMAL, Message)
from .outbox import (OutboxEntry, outbox_corrupt_count, outbox_list, outbox_resume,
                     set_outbox)
from .session import (ERROR, OPTION_ALLOW_INSECURE_AUTH, OPTION_DEFAULT, OPTION_NO_VERIFY,
                      OPTION_STARTTLS, OPTION_TLS, PENDING, PROTOCOL_SMTPS, SENT, Session,
                      message_status)
from .transporter import SECURITY_NONE, SECURITY_STARTTLS, SECURITY_TLS, Server, Transporter
from ._reading import (PARSE_8BIT_HEADER, PARSE_ADDRESS, PARSE_CHARSET, PARSE_ENCODING,
                       PARSE_HEADER, PARSE_LIMIT, PARSE_MULTIPART, Part)
from .pop3 import BoxInfo, MailInfo, POP3Transporter
from .mailbox import READ_ALL, READ_HEADERS, READ_PEEK, READ_UNREAD, IMAPSession, POP3Session
from .imap import (IMAP_HASCHILDREN, IMAP_HASNOCHILDREN, IMAP_MARKED, IMAP_NOINFERIORS,
                   IMAP_NOSELECT, IMAP_READ_ONLY, IMAP_READ_WRITE, IMAP_UNMARKED, IMAPTransporter,
                   ImapBoxStatus, Mailbox)

# The error codes as module constants too: emailsession.EAUTH == -11.
globals().update({code.name: code for code in ErrorCode if code.name != "OK"})

TIMEOUT_MAX = 2000000
MAX_CONNECTIONS = 64  # the largest max_connections (EMAIL_MAX_CONNECTIONS)


def version() -> str:
    """The running C library's version, such as "1.0.0" (email_version())."""
    return text(lib.email_version())


def _check_rc(rc: int) -> None:
    if rc != 0:
        raise from_last_error(rc)


def set_timeout(seconds: int) -> None:
    """The timeout (1 to TIMEOUT_MAX seconds, default 60) of sessions started afterwards: the
    longest silence of the server."""
    lib.email_set_timeout(_check.integer(seconds, "seconds", 1, TIMEOUT_MAX))
    if lib.email_error_occurred():
        raise from_last_error()


def get_timeout() -> int:
    """The timeout of sessions started from now on, in seconds."""
    return int(lib.email_get_timeout())


def set_max_connections(n: int) -> None:
    """How many connections to its server (1 to MAX_CONNECTIONS, default 1) each session
    started afterwards may spread its queue over: an asynchronous session with many messages
    queued delivers them over several connections, in no guaranteed order, each with its own
    outcome. A Transporter has its own max_connections keyword."""
    _check_rc(lib.email_set_max_connections(_check.integer(n, "n", 1, MAX_CONNECTIONS)))


def set_ca_file(path: Optional[_check.PathArg]) -> None:
    """Extra trust anchors (a PEM file) for sessions started afterwards; None removes them.
    The system's store is always used too."""
    _check_rc(lib.email_set_ca_file(_check.optional_path(path, "path")))


def set_log(path: Optional[_check.PathArg]) -> None:
    """The conversation log of every session (4D's format, secrets written ****), recycled at
    10 MB; None stops it."""
    _check_rc(lib.email_set_log(_check.optional_path(path, "path")))


def set_log_directory(directory: Optional[_check.PathArg]) -> None:
    """The folder relative log paths are resolved against; None: the current directory."""
    _check_rc(lib.email_set_log_directory(_check.optional_path(directory, "directory")))


_log_callback = None  # the ctypes wrapper in use: must outlive every call the library makes


def set_log_callback(callback: Optional[Callable[[str], None]]) -> None:
    """Calls callback(line) with each log line (secrets written ****); None stops.

    Lines come where the library's callbacks run: on the thread of an asyncio loop that awaits
    a send, and after each synchronous call (see dispatch()). Once this returns the previous
    callback is never called again."""
    global _log_callback
    if callback is None:
        wrapper = ctypes.cast(None, LOG_CB)  # NULL
    elif callable(callback):
        wrapper = LOG_CB(lambda line, _user_data: callback(text(line)))
    else:
        raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
    _check_rc(lib.email_set_log_callback(wrapper, None))
    _log_callback = wrapper


def dispatch() -> int:
    """Runs the library's waiting callbacks (log lines, outcomes) in this thread; returns how
    many ran. Needed only by a program that neither awaits sends nor makes synchronous calls,
    e.g. a GUI watching dispatch_fd()."""
    return int(lib.email_dispatch())


def dispatch_fd() -> int:
    """A descriptor that is readable while callbacks wait for dispatch()."""
    fd = lib.email_dispatch_fd()
    if fd < 0:
        raise from_last_error(fd)
    return int(fd)


def shutdown() -> None:
    """Delivers or reports everything queued, closes every session and stops the library's
    thread (done at exit too). A later call of the library starts it again."""
    lib.email_shutdown()
    _dispatch.run_waiting()


# Queued messages are delivered before the interpreter goes, and the library's thread stops
# while the ctypes callbacks still exist.
atexit.register(_dispatch.at_exit)

__all__ = [
    "AuthenticationError", "Cause", "ConnectionError", "Error", "ErrorCode",
    "InvalidArgumentError", "Message", "Refused", "RefusedError", "Result", "Server",
    "Session", "SessionError", "TLSError", "TimeoutError", "Transporter",
    "UnknownOutcomeError", "__version__", "dispatch", "dispatch_fd", "get_timeout",
    "message_status", "set_ca_file", "set_log", "set_log_callback", "set_log_directory",
    "set_max_connections", "set_timeout", "shutdown", "version",
    "OutboxEntry", "outbox_corrupt_count", "outbox_list", "outbox_resume", "set_outbox",
    "MAX_CONNECTIONS", "NOTIFY_NEVER", "NOTIFY_SUCCESS", "NOTIFY_FAILURE", "NOTIFY_DELAY",
    "SECURITY_STARTTLS", "SECURITY_TLS", "SECURITY_NONE",
    "OPTION_DEFAULT", "OPTION_STARTTLS", "OPTION_TLS", "OPTION_ALLOW_INSECURE_AUTH",
    "OPTION_NO_VERIFY", "PROTOCOL_SMTPS", "PENDING", "SENT", "ERROR", "TIMEOUT_MAX",
    "PRIORITY_NORMAL", "PRIORITY_HIGHEST", "PRIORITY_HIGH", "PRIORITY_LOW", "PRIORITY_LOWEST",
    "MAIL_MODE_UTF8", "MAIL_MODE_UTF8_IN_BASE64", "MAIL_MODE_ISO88591", "MAIL_MODE_ISO2022JP",
    "Part", "PARSE_HEADER", "PARSE_CHARSET", "PARSE_8BIT_HEADER", "PARSE_ENCODING",
    "PARSE_MULTIPART", "PARSE_ADDRESS", "PARSE_LIMIT",
    "BoxInfo", "MailInfo", "POP3Session", "POP3Transporter", "READ_ALL", "READ_UNREAD",
    "READ_HEADERS", "READ_PEEK",
    "IMAPSession", "IMAPTransporter", "ImapBoxStatus", "Mailbox", "IMAP_READ_WRITE",
    "IMAP_READ_ONLY", "IMAP_NOSELECT", "IMAP_NOINFERIORS", "IMAP_HASCHILDREN",
    "IMAP_HASNOCHILDREN", "IMAP_MARKED", "IMAP_UNMARKED",
] + [code.name for code in ErrorCode if code.name != "OK"]
