"""Receiving over POP3: 4D's POP3 transporter (email_pop3_*). WLanguage's named sessions are in
mailbox.py."""

import ctypes
from typing import Any, Callable, List, NamedTuple, Optional

from . import _check, _dispatch
from ._lib import Pop3BoxInfo, Pop3MailInfo, Status, lib, text
from .errors import Error, from_last_error, from_status
from .message import Message, _free
from .session import synchronous
from .transporter import _server_struct

class BoxInfo(NamedTuple):
    """A mailbox's size: messages and their bytes, those marked deleted left out."""

    count: int
    size: int


class MailInfo(NamedTuple):
    """One message of the mailbox: its number in this session (from 1), its size in bytes and
    its unique id (UIDL; "" when the server has none)."""

    number: int
    size: int
    uid: str


class POP3Transporter:
    """4D's POP3 transporter for one server: POP3Transporter(host=..., port=0, user=...,
    password=..., security=SECURITY_STARTTLS, ...) with the names of email_server_t as keywords
    (port 0: 110, or 995 with SECURITY_TLS). The first call opens the session; it stays open
    until close(), whose QUIT commits the deletions. Use it as a context manager.

    Each call waits for the server and raises an Error subclass on failure (status -1 and the
    server's line for an "-ERR")."""

    def __init__(self, **server: Any) -> None:
        self._ptr: Optional[int] = None
        settings = _server_struct(server, "POP3Transporter")
        handle = lib.email_pop3_transporter_new(ctypes.byref(settings))
        if not handle:
            raise from_last_error()
        self._ptr = handle

    def __enter__(self) -> "POP3Transporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None and not _dispatch.exiting:
            try:
                self.close()
            except Error:
                pass  # nowhere to report it

    @property
    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("the transporter is closed")
        return self._ptr

    def close(self) -> None:
        """QUIT (the server removes what was marked deleted), then frees. Idempotent. Raises
        when QUIT failed (the transporter is freed all the same: its deletions are lost)."""
        handle, self._ptr = self._ptr, None
        if handle is not None:
            synchronous(lambda: lib.email_pop3_transporter_free(handle),
                        lambda _: lib.email_last_error() != 0)

    def _wait(self, call: Callable[[Any], int]) -> None:
        status = Status()
        pointer = ctypes.pointer(status)
        try:
            rc = call(pointer)
            filled = status.error != 0 or status.status != 0
            error = None if rc == 0 else from_status(pointer) if filled else from_last_error(rc)
        finally:
            lib.email_status_clear(pointer)
        _dispatch.run_waiting()
        if error is not None:
            raise error

    def check_connection(self) -> None:
        """Connects, secures and logs in if not done yet, then NOOP (4D's checkConnection)."""
        handle = self._handle
        self._wait(lambda status: lib.email_pop3_check_connection(handle, status))

    def box_info(self) -> BoxInfo:
        """STAT: the mailbox's message count and size (4D's getBoxInfo)."""
        handle, info = self._handle, Pop3BoxInfo()
        self._wait(lambda status: lib.email_pop3_get_box_info(handle, ctypes.byref(info),
                                                              status))
        return BoxInfo(int(info.count), int(info.size))

    def mail_info_list(self) -> List[MailInfo]:
        """LIST and UIDL: every message's number, size and unique id (4D's getMailInfoList)."""
        handle = self._handle
        items = ctypes.POINTER(Pop3MailInfo)()
        count = ctypes.c_size_t()
        self._wait(lambda status: lib.email_pop3_get_mail_info_list(
            handle, ctypes.byref(items), ctypes.byref(count), status))
        try:
            return [MailInfo(items[i].number, int(items[i].size), text(items[i].uid))
                    for i in range(count.value)]
        finally:
            _free(ctypes.cast(items, ctypes.c_void_p))

    def get_mail(self, number: int) -> Message:
        """RETR: message `number` (from 1) parsed, with its uid and size on the server."""
        handle, which = self._handle, _check.integer(number, "number", 1, 2**32 - 1)
        out = ctypes.c_void_p()
        self._wait(lambda status: lib.email_pop3_get_mail(handle, which, ctypes.byref(out),
                                                          status))
        return Message._adopt(out.value)  # type: ignore[arg-type]

    def get_mail_raw(self, number: int) -> bytes:
        """RETR: message `number` as the server holds it (CRLF line ends, dots unstuffed)."""
        handle, which = self._handle, _check.integer(number, "number", 1, 2**32 - 1)
        data, length = ctypes.c_void_p(), ctypes.c_size_t()
        self._wait(lambda status: lib.email_pop3_get_mail_raw(
            handle, which, ctypes.byref(data), ctypes.byref(length), status))
        try:
            return ctypes.string_at(data, length.value)
        finally:
            _free(data)

    def delete(self, number: int) -> None:
        """DELE: marks message `number` deleted (removed by the server at close())."""
        handle, which = self._handle, _check.integer(number, "number", 1, 2**32 - 1)
        self._wait(lambda status: lib.email_pop3_delete(handle, which, status))

    def undelete_all(self) -> None:
        """RSET: every deletion mark of this session removed (4D's undeleteAll)."""
        handle = self._handle
        self._wait(lambda status: lib.email_pop3_undelete_all(handle, status))

    # asyncio: the same calls queued without blocking the event loop (the outcome comes through
    # email_dispatch_fd). Queued calls are pipelined when the server offers PIPELINING, so
    # gathering a thousand get_mail_async costs a few round trips.

    async def check_connection_async(self) -> None:
        """check_connection(), awaited."""
        handle = self._handle
        await _dispatch.queue(lambda token: lib.email_pop3_check_connection_async(
            handle, _dispatch.ON_RECEIVE, token), self)

    async def box_info_async(self) -> BoxInfo:
        """box_info(), awaited."""
        handle = self._handle
        return await _dispatch.queue(lambda token: lib.email_pop3_get_box_info_async(
            handle, _dispatch.ON_MAILBOX, token), self,
            lambda r: BoxInfo(int(r.count), int(r.size)))

    async def mail_info_list_async(self) -> List[MailInfo]:
        """mail_info_list(), awaited."""
        handle = self._handle
        return await _dispatch.queue(lambda token: lib.email_pop3_get_mail_info_list_async(
            handle, _dispatch.ON_MAILBOX, token), self,
            lambda r: [MailInfo(r.pop3_list[i].number, int(r.pop3_list[i].size),
                                text(r.pop3_list[i].uid)) for i in range(r.count)])

    async def get_mail_async(self, number: int) -> Message:
        """get_mail(number), awaited."""
        handle, which = self._handle, _check.integer(number, "number", 1, 2**32 - 1)
        return await _dispatch.queue(lambda token: lib.email_pop3_get_mail_async(
            handle, which, _dispatch.ON_RECEIVE, token), self, Message._adopt)

    async def get_mail_raw_async(self, number: int) -> bytes:
        """get_mail_raw(number), awaited."""
        handle, which = self._handle, _check.integer(number, "number", 1, 2**32 - 1)
        return await _dispatch.queue(lambda token: lib.email_pop3_get_mail_raw_async(
            handle, which, _dispatch.ON_MAILBOX, token), self,
            lambda r: ctypes.string_at(r.data, r.length))

    async def delete_async(self, number: int) -> None:
        """delete(number), awaited."""
        handle, which = self._handle, _check.integer(number, "number", 1, 2**32 - 1)
        await _dispatch.queue(lambda token: lib.email_pop3_delete_async(
            handle, which, _dispatch.ON_RECEIVE, token), self)

    async def undelete_all_async(self) -> None:
        """undelete_all(), awaited."""
        handle = self._handle
        await _dispatch.queue(lambda token: lib.email_pop3_undelete_all_async(
            handle, _dispatch.ON_RECEIVE, token), self)
