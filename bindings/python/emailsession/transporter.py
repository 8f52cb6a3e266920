"""Transporter: 4D's SMTP transporter (email_transporter_t)."""

import asyncio
import ctypes
import dataclasses
from typing import Any, Callable, Iterable, List, Optional, Union

from . import _check, _dispatch
from ._lib import Server as _Server
from ._lib import Status, lib, text
from .errors import Error, Result, from_last_error, from_status, result_of
from .message import Message
from .outbox import resume_flags
from .session import mime_bytes, recipient_array

SECURITY_STARTTLS = 0
SECURITY_TLS = 1
SECURITY_NONE = 2

_STRINGS = ("host", "user", "password", "oauth2_token", "authentication_mode", "helo_name",
            "header_charset", "body_charset")
_PATHS = ("log_file", "ca_file", "client_cert_file", "client_key_file", "outbox")
_INTS = {"port": 65535, "security": 2, "connection_timeout": 2**31 - 1,
         "send_timeout": 2**31 - 1, "max_connections": 64}
_BOOLS = ("accept_unsecure_connection", "keep_alive")


@dataclasses.dataclass(frozen=True)
class Server:
    """A transporter's settings as it uses them (4D's readable properties): defaults resolved,
    password and oauth2_token always None."""

    host: str
    port: int
    user: Optional[str]
    password: Optional[str]
    oauth2_token: Optional[str]
    authentication_mode: Optional[str]
    security: int
    accept_unsecure_connection: bool
    connection_timeout: int
    send_timeout: int
    keep_alive: bool
    log_file: Optional[str]
    header_charset: Optional[str]
    body_charset: Optional[str]
    ca_file: Optional[str]
    helo_name: Optional[str]
    max_connections: int
    client_cert_file: Optional[str]
    client_key_file: Optional[str]
    outbox: Optional[str]


def _server_struct(settings: dict, kind: str = "Transporter") -> _Server:
    """email_server_t from keyword arguments, checked; email_server_init's defaults for the
    others. The bytes it points to belong to the struct's fields (ctypes keeps them)."""
    server = _Server()
    lib.email_server_init(ctypes.byref(server))
    if "host" not in settings:
        raise TypeError(f"{kind}() needs host")
    for name, value in settings.items():
        if name in _STRINGS:
            raw = _check.string(value, name) if name == "host" else \
                _check.optional_string(value, name)
        elif name in _PATHS:
            raw = _check.optional_path(value, name)
        elif name in _INTS:
            raw = _check.integer(value, name, 0, _INTS[name])
        elif name in _BOOLS:
            raw = _check.boolean(value, name)
        else:
            raise TypeError(f"{kind}() got an unexpected keyword argument {name!r}")
        setattr(server, name, raw)
    return server


def _optional_text(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else text(raw)


class Transporter:
    """A transporter for one server: Transporter(host=..., port=0, user=None, password=None,
    security=SECURITY_STARTTLS, ...) with the names of email_server_t as keywords. It does not
    connect before the first send or check. Use it as a context manager, or call close().

    send() and check_connection() return a Result or raise an Error subclass whose fields
    carry the server's reply or, for a failure that was not the server's, the chain of causes.
    """

    def __init__(self, **server: Any) -> None:
        self._ptr: Optional[int] = None
        settings = _server_struct(server)
        handle = lib.email_transporter_new(ctypes.byref(settings))
        if not handle:
            raise from_last_error()
        self._ptr = handle

    def __enter__(self) -> "Transporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None and not _dispatch.exiting:
            self.close()

    @property
    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("the transporter is closed")
        return self._ptr

    def close(self) -> None:
        """QUIT, after the queued sends (bounded by the timeout); frees. Idempotent."""
        handle, self._ptr = self._ptr, None
        if handle is not None:
            lib.email_transporter_free(handle)
            _dispatch.run_waiting()

    @property
    def server(self) -> Server:
        """The settings as the transporter uses them (email_transporter_get_server)."""
        out = _Server()
        rc = lib.email_transporter_get_server(self._handle, ctypes.byref(out))
        if rc != 0:
            raise from_last_error(rc)
        values = {}
        for field in dataclasses.fields(Server):
            raw = getattr(out, field.name)
            values[field.name] = _optional_text(raw) if isinstance(raw, (bytes, type(None))) \
                else raw
        return Server(**values)

    def _wait(self, call: Callable[[Any], int], message_id: int = 0) -> Result:
        status = Status()
        pointer = ctypes.pointer(status)
        try:
            rc = call(pointer)
            outcome = result_of(pointer, message_id) if rc == 0 else from_status(pointer)
        finally:
            lib.email_status_clear(pointer)
        _dispatch.run_waiting()
        if rc != 0:
            raise outcome
        return outcome  # type: ignore[return-value]

    def check_connection(self) -> Result:
        """Connects, greets, secures and authenticates, then closes (4D's checkConnection)."""
        handle = self._handle
        return self._wait(lambda status: lib.email_transporter_check_connection(handle, status))

    def send(self, message: Message) -> Result:
        """Sends a message and waits for the outcome."""
        handle, mhandle = self._handle, _message(message)._handle
        return self._wait(lambda status: lib.email_transporter_send(handle, mhandle, status),
                          message.id)

    def send_mime(self, from_: str, recipients: Union[str, Iterable[str]],
                  data: Union[bytes, str]) -> Result:
        """Sends a prebuilt RFC 5322 message (bytes, or str written as UTF-8) with envelope
        sender from_ ("" for the null sender) to recipients."""
        sender = _check.string(from_, "from_")
        rcpts = recipient_array(recipients)
        raw = mime_bytes(data)
        handle = self._handle
        return self._wait(lambda status: lib.email_transporter_send_mime(
            handle, sender, rcpts, raw, len(raw), status))

    async def send_async(self, message: Message) -> Result:
        """Queues a message and waits, without blocking the event loop, for its outcome (a
        Result, or an Error subclass raised). Many can be awaited at once (asyncio.gather):
        they share the transporter's connection."""
        handle, mhandle = self._handle, _message(message)._handle
        token = _dispatch.new_token()
        future = _dispatch.expect(token, self)
        message_id = ctypes.c_uint64()
        rc = lib.email_transporter_send_async(handle, mhandle, _dispatch.ON_SEND, token,
                                              ctypes.byref(message_id))
        if rc != 0:
            error = from_last_error(rc)
            _dispatch.forget(token)
            future.cancel()
            raise error
        return await future

    def outbox_resume(self, resend_unknown: bool = False, drop_unknown: bool = False,
                      callback: Optional[Callable[[int, Union[Result, Error]], None]] = None
                      ) -> int:
        """Queues, oldest first, the entries of the transporter's outbox (its own, or the
        global one of set_outbox) left by transporters with its host, port and user that no
        other thread or process holds; returns how many it took.

        Each outcome comes to callback(message_id, outcome), outcome a Result or an Error,
        where the library's callbacks run: on the thread of an asyncio loop that awaits a send,
        after each synchronous call, or in dispatch(). message_status(id) gives it too.
        resend_unknown, drop_unknown: as for outbox_resume(). InvalidArgumentError when there
        is no outbox."""
        handle = self._handle
        flags = resume_flags(resend_unknown, drop_unknown)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
        taken = _dispatch.resume(
            lambda done, token: lib.email_transporter_outbox_resume(handle, flags, done, token),
            callback, self)
        _dispatch.run_waiting()
        return taken

    async def outbox_resume_async(self, resend_unknown: bool = False,
                                  drop_unknown: bool = False) -> List[Union[Result, Error]]:
        """outbox_resume(), awaiting the outcomes: a Result or an Error for each entry taken,
        in the order they came (Result.message_id, or message_status, tell which is which;
        an Error is returned, not raised)."""
        loop = asyncio.get_running_loop()
        _dispatch.watch(loop)
        future: "asyncio.Future[List[Union[Result, Error]]]" = loop.create_future()
        outcomes: List[Union[Result, Error]] = []
        taken: List[int] = []

        def settle() -> None:
            if not future.done() and taken and len(outcomes) >= taken[0]:
                future.set_result(outcomes)

        def one(_message_id: int, outcome: Union[Result, Error]) -> None:
            outcomes.append(outcome)  # runs on the loop's thread (its reader dispatches)
            settle()

        taken.append(self.outbox_resume(resend_unknown, drop_unknown, one))
        settle()
        return await future


def _message(message: Any) -> Message:
    if not isinstance(message, Message):
        raise TypeError(f"message must be an emailsession.Message, not {type(message).__name__}")
    return message
