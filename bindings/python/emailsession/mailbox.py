"""WLanguage's named receiving sessions: POP3Session and IMAPSession (email_start_pop3_session,
email_start_imap_session, then email_read_first/next/previous/last, email_delete_message,
email_mailbox_count, email_close_session)."""

import ctypes
from typing import Any, Iterator, Optional

from . import _check, _dispatch
from ._lib import lib
from .errors import Error, from_last_error
from .message import Message
from .session import OPTION_DEFAULT, synchronous

READ_ALL = 0
READ_UNREAD = 1   # IMAP only
READ_HEADERS = 2  # the header only (POP3: TOP n 0)
READ_PEEK = 4     # IMAP only: leave \Seen as it was


class _NamedMailbox:
    """A named receiving session (WLanguage's): the reading functions on a name."""

    _start: Any = None

    def __init__(self, user: str, password: Optional[str], server: str, port: int = 0,
                 option: int = OPTION_DEFAULT) -> None:
        self._name: Optional[bytes] = None
        name = _check.string(user, "user")
        start = type(self)._start
        synchronous(lambda: start(
            name, _check.optional_string(password, "password"), _check.string(server, "server"),
            _check.integer(port, "port", 0, 65535), _check.integer(option, "option", 0,
                                                                    0x7FFFFFFF)),
                    lambda ok: not ok)
        self._name = name

    def __enter__(self) -> "_NamedMailbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_name", None) is not None and not _dispatch.exiting:
            try:
                self.close()
            except Error:
                pass  # nowhere to report it

    def _user(self) -> bytes:
        if self._name is None:
            raise ValueError("the session is closed")
        return self._name

    def _read(self, fn: Any, options: int) -> Optional[Message]:
        name, opts = self._user(), _check.integer(options, "options", 0, 0x7FFFFFFF)
        out = ctypes.c_void_p()
        ok = fn(name, opts, ctypes.byref(out))
        error = None if ok or lib.email_last_error() == 0 else from_last_error()
        _dispatch.run_waiting()
        if error is not None:
            raise error
        return Message._adopt(out.value) if ok and out.value else None

    def read_first(self, options: int = READ_ALL) -> Optional[Message]:
        """The first message (READ_HEADERS: its header only), None when the box is empty."""
        return self._read(lib.email_read_first, options)

    def read_next(self, options: int = READ_ALL) -> Optional[Message]:
        """The message after the one read last, None past the end."""
        return self._read(lib.email_read_next, options)

    def read_previous(self, options: int = READ_ALL) -> Optional[Message]:
        """The message before the one read last, None before the first."""
        return self._read(lib.email_read_previous, options)

    def read_last(self, options: int = READ_ALL) -> Optional[Message]:
        """The last message, None when the box is empty."""
        return self._read(lib.email_read_last, options)

    def __iter__(self) -> Iterator[Message]:
        message = self.read_first()
        while message is not None:
            yield message
            message = self.read_next()

    def delete(self, message: Message) -> None:
        """Marks a message this session read deleted (the server removes it at close())."""
        if not isinstance(message, Message):
            raise TypeError(f"message must be an emailsession.Message, not "
                            f"{type(message).__name__}")
        name, handle = self._user(), message._handle
        synchronous(lambda: lib.email_delete_message(name, handle), lambda ok: not ok)

    def count(self, options: int = READ_ALL) -> int:
        """The mailbox's messages, those this session deleted left out."""
        name, opts = self._user(), _check.integer(options, "options", 0, 0x7FFFFFFF)
        return int(synchronous(lambda: lib.email_mailbox_count(name, opts), lambda n: n < 0))

    def close(self) -> None:
        """QUIT or LOGOUT (POP3's deletions committed), then the name is free again; an SMTP
        session of the same name is closed too, as email_close_session does. Idempotent.
        Raises when QUIT failed (the session is closed all the same: its deletions are
        lost)."""
        name, self._name = self._name, None
        if name is not None:
            synchronous(lambda: lib.email_close_session(name), lambda ok: not ok)


class POP3Session(_NamedMailbox):
    """WLanguage's named POP3 session: POP3Session(user, password, server, port=0,
    option=OPTION_DEFAULT) opens it (the name is the login; port 0: 110, or 995 with
    OPTION_TLS) and reads the mailbox's list. read_first/next/previous/last return a Message,
    or None past the end (WLanguage's Email.Out); iterating reads them all from the first.
    delete() marks a message read; close() (or the end of a with block) says QUIT, which
    commits the deletions."""

    _start = staticmethod(lib.email_start_pop3_session)


class IMAPSession(_NamedMailbox):
    """WLanguage's named IMAP session: IMAPSession(user, password, server, port=0,
    option=OPTION_DEFAULT) opens it (port 0: 143, or 993 with OPTION_TLS), selects INBOX and
    lists its messages. The reads take READ_UNREAD (only messages without \\Seen, searched at
    the read), READ_PEEK (\\Seen left as it was; without it reading marks it) and
    READ_HEADERS; count(READ_UNREAD) counts the unseen. delete() removes a message (at once
    with UIDPLUS, else at close); close() says LOGOUT."""

    _start = staticmethod(lib.email_start_imap_session)
