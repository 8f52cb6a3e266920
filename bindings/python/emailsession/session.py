"""Session: a WLanguage-style named SMTP session (email_start_smtp_session and friends)."""

import ctypes
from typing import Any, Callable, Iterable, Optional, Union

from . import _check, _dispatch
from ._lib import c_char_p, lib
from .errors import Error, Result, from_last_error
from .message import Message

OPTION_DEFAULT = 0
OPTION_STARTTLS = 1
OPTION_TLS = 2
OPTION_ALLOW_INSECURE_AUTH = 0x100
OPTION_NO_VERIFY = 0x200
# WLanguage's emailProtocolSMTPS is STARTTLS on a plain connection, not TLS from the first byte
PROTOCOL_SMTPS = OPTION_STARTTLS

PENDING = 1
SENT = 2
ERROR = 3


def synchronous(call: Callable[[], Any], failed: Callable[[Any], bool]) -> Any:
    """Makes a blocking call (the GIL is released meanwhile), reads ErrorInfo if it failed,
    then runs the callbacks that wait (log lines), and raises or returns what the call did."""
    value = call()
    error: Optional[Error] = from_last_error() if failed(value) else None
    _dispatch.run_waiting()
    if error is not None:
        raise error
    return value


def recipient_array(recipients: Any) -> "ctypes.Array[ctypes.c_char_p]":
    """A NULL-terminated const char *[] of the recipients (one str or an iterable)."""
    items = _check.addresses(recipients, "recipients")
    if not items:
        raise ValueError("recipients is empty")
    return (c_char_p * (len(items) + 1))(*items, None)


def mime_bytes(data: Any) -> bytes:
    """A prebuilt message as bytes (str is written as UTF-8); C needs it without NUL."""
    raw = data.encode("utf-8") if isinstance(data, str) else _check.data(data, "data")
    if b"\0" in raw:
        raise ValueError("data contains a NUL byte")
    if not raw:
        raise ValueError("data is empty")
    return raw


def message_status(message_id: int) -> int:
    """PENDING, SENT or ERROR for a message this process queued (WLanguage's EmailStatus);
    Error ENOTFOUND for an id never queued."""
    value = lib.email_message_status(_check.integer(message_id, "message_id", 0, 2**64 - 1))
    if value < 0:
        raise from_last_error(value)
    return int(value)


class Session:
    """A named session: Session(user, password, server, port=0, asynchronous=False,
    option=OPTION_DEFAULT) connects, secures and authenticates before it returns, and
    raises an Error subclass when it cannot (AuthenticationError for a 535...).

    The name (user) is the session's across the library; a second Session under a name
    already open raises SessionError. Use it as a context manager, or call close().

    Synchronous (the default): send() returns once the server accepted the message.
    asynchronous=True: send() returns once the message is queued (its outcome: status()),
    and `await send_async(message)` gives the outcome to asyncio.
    """

    def __init__(self, user: str, password: Optional[str], server: str, port: int = 0,
                 asynchronous: bool = False, option: int = OPTION_DEFAULT) -> None:
        self._open = False
        self._name = _check.string(user, "user")
        self.user = user
        self.asynchronous = _check.boolean(asynchronous, "asynchronous")
        args = (self._name, _check.optional_string(password, "password"),
                _check.string(server, "server"), _check.integer(port, "port", 0, 65535),
                int(self.asynchronous), _check.integer(option, "option", 0, 0x7FFFFFFF))
        self._token = _dispatch.new_token()
        synchronous(lambda: lib.email_start_smtp_session(*args), lambda ok: not ok)
        self._open = True
        if self.asynchronous:
            rc = lib.email_session_set_callback(self._name, _dispatch.ON_SESSION_SEND,
                                                self._token)
            if rc != 0:
                error = from_last_error(rc)
                self.close()
                raise error

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_open", False) and not _dispatch.exiting:
            try:
                self.close()
            except Error:  # nobody to tell: the outcomes of its messages are in status()
                pass

    def _check_open(self) -> None:
        if not self._open:
            raise ValueError(f"the session {self.user!r} is closed")

    def _send(self, message: Any) -> int:
        if not isinstance(message, Message):
            raise TypeError(f"message must be an emailsession.Message, "
                            f"not {type(message).__name__}")
        self._check_open()
        handle = message._handle
        synchronous(lambda: lib.email_send_message(self._name, handle), lambda ok: not ok)
        return message.id

    def send(self, message: Message) -> int:
        """Sends a message and returns its id. Synchronous session: once the server accepted
        it (an Error otherwise). Asynchronous: once it is queued."""
        return self._send(message)

    def send_mime(self, from_: str, recipients: Union[str, Iterable[str]],
                  data: Union[bytes, str]) -> int:
        """Sends a prebuilt RFC 5322 message (bytes, or str written as UTF-8) with envelope
        sender from_ (the null sender: "") to recipients; returns its id."""
        sender = _check.string(from_, "from_")
        rcpts = recipient_array(recipients)
        raw = mime_bytes(data)
        self._check_open()
        message_id = ctypes.c_uint64()
        synchronous(lambda: lib.email_send_mime_id(self._name, sender, rcpts, raw, len(raw),
                                                   ctypes.byref(message_id)),
                    lambda ok: not ok)
        return message_id.value

    async def send_async(self, message: Message) -> Result:
        """Queues a message and waits, without blocking the event loop, for its outcome:
        a Result, or an Error subclass raised. Needs asynchronous=True."""
        if not self.asynchronous:
            raise RuntimeError("send_async needs a session started with asynchronous=True")
        return await _dispatch.expect_message(self._token, lambda: self._send(message))

    def status(self, message_id: int) -> int:
        """message_status(message_id): PENDING, SENT or ERROR."""
        return message_status(message_id)

    def close(self) -> None:
        """QUIT, after delivering what is queued (bounded by the timeout). Idempotent."""
        if not self._open:
            return
        self._open = False
        synchronous(lambda: lib.email_close_session(self._name), lambda ok: not ok)

