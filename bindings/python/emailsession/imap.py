"""Receiving over IMAP: 4D's IMAP transporter (email_imap_*)."""

import asyncio
import ctypes
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence

from . import _check, _dispatch
from ._lib import ImapBox, ImapBoxInfo, Status, lib, text
from .errors import Error, ErrorCode, from_last_error, from_status
from .message import Message, _free
from .session import synchronous
from .transporter import _server_struct

IMAP_READ_WRITE = 0  # SELECT
IMAP_READ_ONLY = 1   # EXAMINE: nothing in the box changes, \\Seen included

IMAP_NOSELECT = 1
IMAP_NOINFERIORS = 2
IMAP_HASCHILDREN = 4
IMAP_HASNOCHILDREN = 8
IMAP_MARKED = 16
IMAP_UNMARKED = 32


class ImapBoxStatus(NamedTuple):
    """A selected mailbox (4D's boxInfo): messages, recent, unseen, uidvalidity, uidnext (0
    when the server did not say) and whether its UIDVALIDITY changed since this transporter
    selected it last (the UIDs kept from then name other messages now)."""

    messages: int
    recent: int
    unseen: int
    uidvalidity: int
    uidnext: int
    uidvalidity_changed: bool


class Mailbox(NamedTuple):
    """One mailbox of box_list(): its name as the server lists it, the hierarchy delimiter
    ("" when flat), IMAP_* attribute bits and whether it can be selected."""

    name: str
    delimiter: str
    attributes: int
    selectable: bool


def _uid_array(uids: Any, name: str = "uids") -> "ctypes.Array[ctypes.c_uint32]":
    if isinstance(uids, int) and not isinstance(uids, bool):
        uids = [uids]
    if isinstance(uids, (str, bytes)) or not isinstance(uids, Iterable):
        raise TypeError(f"{name} must be a UID or a list of UIDs, not {type(uids).__name__}")
    items = [_check.integer(u, name, 1, 2**32 - 1) for u in uids]
    if not items:
        raise ValueError(f"{name} is empty")
    return (ctypes.c_uint32 * len(items))(*items)


class IMAPTransporter:
    """4D's IMAP transporter for one server: IMAPTransporter(host=..., port=0, user=...,
    password=..., security=SECURITY_STARTTLS, ...) with the names of email_server_t as keywords
    (port 0: 143, or 993 with SECURITY_TLS). The first call opens the session; it stays open
    until close() (LOGOUT). Calls naming messages by UID work in the mailbox chosen last by
    select_box (INBOX when none was). Use it as a context manager.

    Each call waits for the server and raises an Error subclass on failure (status -1 for the
    server's NO, -2 for its BAD, with its line; ESTALE when the box's UIDVALIDITY changed under
    a session that was opened again)."""

    def __init__(self, **server: Any) -> None:
        self._ptr: Optional[int] = None
        settings = _server_struct(server, "IMAPTransporter")
        handle = lib.email_imap_transporter_new(ctypes.byref(settings))
        if not handle:
            raise from_last_error()
        self._ptr = handle

    def __enter__(self) -> "IMAPTransporter":
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
        """LOGOUT, then frees. Idempotent."""
        handle, self._ptr = self._ptr, None
        if handle is not None:
            synchronous(lambda: lib.email_imap_transporter_free(handle),
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
        self._wait(lambda status: lib.email_imap_check_connection(handle, status))

    def select_box(self, name: str = "INBOX", mode: int = IMAP_READ_WRITE) -> ImapBoxStatus:
        """SELECT (IMAP_READ_WRITE) or EXAMINE (IMAP_READ_ONLY) a mailbox: it becomes the one
        the calls that follow work in."""
        handle, box = self._handle, _check.string(name, "name")
        which = _check.integer(mode, "mode", 0, 1)
        info = ImapBoxInfo()
        self._wait(lambda status: lib.email_imap_select_box(handle, box, which,
                                                            ctypes.byref(info), status))
        return ImapBoxStatus(info.messages, info.recent, info.unseen, info.uidvalidity,
                             info.uidnext, bool(info.uidvalidity_changed))

    def box_list(self) -> List[Mailbox]:
        """LIST "" "*": every mailbox (4D's getBoxList)."""
        handle = self._handle
        items = ctypes.POINTER(ImapBox)()
        count = ctypes.c_size_t()
        self._wait(lambda status: lib.email_imap_get_box_list(
            handle, ctypes.byref(items), ctypes.byref(count), status))
        try:
            return [Mailbox(text(items[i].name), text(items[i].delimiter), items[i].attributes,
                            bool(items[i].selectable)) for i in range(count.value)]
        finally:
            lib.email_imap_box_list_free(items, count.value)

    def get_mail(self, uid: int, options: int = 0) -> Message:
        """UID FETCH of one message, parsed, with its uid and size. options: READ_HEADERS,
        READ_PEEK (\\Seen left as it was; without it reading marks the message \\Seen).
        Error ENOTFOUND when the box has no such UID."""
        handle, which = self._handle, _check.integer(uid, "uid", 1, 2**32 - 1)
        opts = _check.integer(options, "options", 0, 0x7FFFFFFF)
        out = ctypes.c_void_p()
        self._wait(lambda status: lib.email_imap_get_mail(handle, which, opts,
                                                          ctypes.byref(out), status))
        return Message._adopt(out.value)  # type: ignore[arg-type]

    def get_mails(self, uids: Sequence[int], options: int = 0) -> List[Optional[Message]]:
        """get_mail for many UIDs in a few pipelined commands (4D's getMails): a Message for
        each UID, None where the box has no such UID."""
        handle, array = self._handle, _uid_array(uids)
        opts = _check.integer(options, "options", 0, 0x7FFFFFFF)
        out = (ctypes.c_void_p * len(array))()
        self._wait(lambda status: lib.email_imap_get_mails(handle, array, len(array), opts,
                                                           out, status))
        return [Message._adopt(p) if p else None for p in out]

    def search(self, criteria: str, text_: Optional[str] = None) -> List[int]:
        """UID SEARCH (4D's searchMails): criteria in IMAP's syntax ("ALL", "UNSEEN",
        "SUBJECT"...), then text_ as its string argument (any Unicode: CHARSET UTF-8 is
        added when needed). The UIDs found."""
        handle = self._handle
        crit = _check.string(criteria, "criteria")
        arg = _check.optional_string(text_, "text_")
        uids = ctypes.POINTER(ctypes.c_uint32)()
        count = ctypes.c_size_t()
        self._wait(lambda status: lib.email_imap_search(handle, crit, arg, ctypes.byref(uids),
                                                        ctypes.byref(count), status))
        try:
            return [int(uids[i]) for i in range(count.value)]
        finally:
            _free(ctypes.cast(uids, ctypes.c_void_p))

    def _flags(self, fn: Any, uids: Any, flags: str) -> None:
        handle, array = self._handle, _uid_array(uids)
        names = _check.string(flags, "flags")
        self._wait(lambda status: fn(handle, array, len(array), names, status))

    def add_flags(self, uids: Any, flags: str) -> None:
        """UID STORE +FLAGS.SILENT: flags ("\\\\Seen \\\\Flagged", or keywords) on messages."""
        self._flags(lib.email_imap_add_flags, uids, flags)

    def remove_flags(self, uids: Any, flags: str) -> None:
        """UID STORE -FLAGS.SILENT."""
        self._flags(lib.email_imap_remove_flags, uids, flags)

    def delete(self, uids: Any) -> None:
        """Marks messages \\Deleted (4D's delete); expunge() removes them."""
        handle, array = self._handle, _uid_array(uids)
        self._wait(lambda status: lib.email_imap_delete(handle, array, len(array), status))

    def expunge(self) -> None:
        """EXPUNGE: the messages of the box marked \\Deleted are removed."""
        handle = self._handle
        self._wait(lambda status: lib.email_imap_expunge(handle, status))

    # asyncio: the same calls queued without blocking the event loop (the outcome comes through
    # email_dispatch_fd). Calls reach the server in the order they were queued; the UID
    # commands of queued calls are pipelined, so gathering a thousand get_mail_async costs a
    # few round trips.

    async def check_connection_async(self) -> None:
        """check_connection(), awaited."""
        handle = self._handle
        await _dispatch.queue(lambda token: lib.email_imap_check_connection_async(
            handle, _dispatch.ON_RECEIVE, token), self)

    async def select_box_async(self, name: str = "INBOX",
                               mode: int = IMAP_READ_WRITE) -> ImapBoxStatus:
        """select_box(name, mode), awaited."""
        handle, box = self._handle, _check.string(name, "name")
        which = _check.integer(mode, "mode", 0, 1)

        def read(r: Any) -> ImapBoxStatus:
            info = r.imap_box_info.contents
            return ImapBoxStatus(info.messages, info.recent, info.unseen, info.uidvalidity,
                                 info.uidnext, bool(info.uidvalidity_changed))
        return await _dispatch.queue(lambda token: lib.email_imap_select_box_async(
            handle, box, which, _dispatch.ON_MAILBOX, token), self, read)

    async def box_list_async(self) -> List[Mailbox]:
        """box_list(), awaited."""
        handle = self._handle
        return await _dispatch.queue(lambda token: lib.email_imap_get_box_list_async(
            handle, _dispatch.ON_MAILBOX, token), self,
            lambda r: [Mailbox(text(r.imap_boxes[i].name), text(r.imap_boxes[i].delimiter),
                               r.imap_boxes[i].attributes, bool(r.imap_boxes[i].selectable))
                       for i in range(r.count)])

    async def get_mail_async(self, uid: int, options: int = 0) -> Message:
        """get_mail(uid, options), awaited (Error ENOTFOUND when the box has no such UID)."""
        handle, which = self._handle, _check.integer(uid, "uid", 1, 2**32 - 1)
        opts = _check.integer(options, "options", 0, 0x7FFFFFFF)
        return await _dispatch.queue(lambda token: lib.email_imap_get_mail_async(
            handle, which, opts, _dispatch.ON_RECEIVE, token), self, Message._adopt)

    async def get_mails_async(self, uids: Sequence[int],
                              options: int = 0) -> List[Optional[Message]]:
        """get_mails(uids, options), awaited: one pipelined read per UID, each message parsed
        as it arrives; None where the box has no such UID."""
        array = _uid_array(uids)
        opts = _check.integer(options, "options", 0, 0x7FFFFFFF)

        async def one(uid: int) -> Optional[Message]:
            try:
                return await self.get_mail_async(uid, opts)
            except Error as e:
                if e.code == ErrorCode.ENOTFOUND:
                    return None
                raise
        results = await asyncio.gather(*(one(u) for u in array), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:  # the messages read meanwhile are freed with their objects
            raise failure
        return list(results)  # type: ignore[arg-type]

    async def search_async(self, criteria: str, text_: Optional[str] = None) -> List[int]:
        """search(criteria, text_), awaited."""
        handle = self._handle
        crit = _check.string(criteria, "criteria")
        arg = _check.optional_string(text_, "text_")
        return await _dispatch.queue(lambda token: lib.email_imap_search_async(
            handle, crit, arg, _dispatch.ON_MAILBOX, token), self,
            lambda r: [int(r.uids[i]) for i in range(r.count)] if r.uids else [])

    async def _flags_async(self, fn: Any, uids: Any, flags: Optional[str]) -> None:
        handle, array = self._handle, _uid_array(uids)
        if flags is None:
            await _dispatch.queue(lambda token: fn(handle, array, len(array),
                                                   _dispatch.ON_RECEIVE, token), self)
            return
        names = _check.string(flags, "flags")
        await _dispatch.queue(lambda token: fn(handle, array, len(array), names,
                                               _dispatch.ON_RECEIVE, token), self)

    async def add_flags_async(self, uids: Any, flags: str) -> None:
        """add_flags(uids, flags), awaited."""
        await self._flags_async(lib.email_imap_add_flags_async, uids, flags)

    async def remove_flags_async(self, uids: Any, flags: str) -> None:
        """remove_flags(uids, flags), awaited."""
        await self._flags_async(lib.email_imap_remove_flags_async, uids, flags)

    async def delete_async(self, uids: Any) -> None:
        """delete(uids), awaited."""
        await self._flags_async(lib.email_imap_delete_async, uids, None)

    async def expunge_async(self) -> None:
        """expunge(), awaited."""
        handle = self._handle
        await _dispatch.queue(lambda token: lib.email_imap_expunge_async(
            handle, _dispatch.ON_RECEIVE, token), self)
