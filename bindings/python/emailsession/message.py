"""Message: the MIME composer (email_message_t)."""

import ctypes
import os
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

from . import _check
from ._lib import lib
from ._reading import Reading
from .errors import from_last_error

PRIORITY_NORMAL = 0
PRIORITY_HIGHEST = 1
PRIORITY_HIGH = 2
PRIORITY_LOW = 4
PRIORITY_LOWEST = 5

# Delivery status notifications (RFC 3461), for Message.set_dsn: NOTIFY_NEVER alone, or any
# combination of the others (NOTIFY_SUCCESS | NOTIFY_FAILURE).
NOTIFY_NEVER = 1
NOTIFY_SUCCESS = 2
NOTIFY_FAILURE = 4
NOTIFY_DELAY = 8

MAIL_MODE_UTF8 = "US-ASCII_UTF8_QP"
MAIL_MODE_UTF8_IN_BASE64 = "US-ASCII_UTF8_B64"
MAIL_MODE_ISO88591 = "ISO-8859-1"
MAIL_MODE_ISO2022JP = "US-ASCII_ISO-2022-JP_UTF8_QP"

# An attachment given to Message(attachments=...): a file path, or (name, data) /
# (name, data, content_type) for bytes held in memory.
Attachment = Union[str, "os.PathLike[str]", Tuple[str, bytes], Tuple[str, bytes, str]]


def _call(rc: int) -> None:
    if rc != 0:
        raise from_last_error(rc)


class Message(Reading):
    """An email message. Builder methods are the C functions without the email_message_
    prefix and return the message, so calls can be chained; the constructor's keyword
    arguments call them:

        Message(sender="Me <me@example.org>", to=["ada@example.org"], subject="Hello",
                text="Hi Ada!\\n", attachments=["report.pdf", ("notes.txt", b"...")],
                dsn={"notify": NOTIFY_FAILURE | NOTIFY_DELAY, "ret": "HDRS"})

    sender (or from_) is the From address; sender_header the RFC 5322 Sender field; dsn the
    keyword arguments of set_dsn (a dict), or its notify alone (an int).
    Strings are UTF-8 text; a malformed address raises InvalidArgumentError (a ValueError).

    Message.from_mime(data) reads a message (4D's MAIL Convert from MIME); the read properties
    (subject, from_, to, cc, bcc, text, html, message_id, date, uid, size, attachments,
    parse_problems, header(name)) read any message, parsed, received or built.
    """

    def __init__(self, *, sender: Optional[str] = None, from_: Optional[str] = None,
                 to: Union[str, Iterable[str], None] = None,
                 cc: Union[str, Iterable[str], None] = None,
                 bcc: Union[str, Iterable[str], None] = None,
                 reply_to: Optional[str] = None, sender_header: Optional[str] = None,
                 subject: Optional[str] = None, text: Optional[str] = None,
                 html: Optional[str] = None, attachments: Iterable[Attachment] = (),
                 headers: Optional[Mapping[str, str]] = None,
                 priority: Optional[int] = None,
                 dsn: Union[int, Mapping[str, Any], None] = None) -> None:
        self._ptr: Optional[int] = None
        if sender is not None and from_ is not None:
            raise TypeError("give the From address as sender or as from_, not both")
        handle = lib.email_message_new()
        if not handle:
            raise from_last_error()
        self._ptr = handle
        author, author_name = (sender, "sender") if sender is not None else (from_, "from_")
        self._set(lib.email_message_set_from, author, author_name)
        self._set(lib.email_message_set_reply_to, reply_to, "reply_to")
        self._set(lib.email_message_set_sender, sender_header, "sender_header")
        self._set(lib.email_message_set_subject, subject, "subject")
        self._set(lib.email_message_set_text_body, text, "text", line=False)
        self._set(lib.email_message_set_html_body, html, "html", line=False)
        for name, value in (("to", to), ("cc", cc), ("bcc", bcc)):
            if value is not None:
                self._address(getattr(lib, "email_message_add_" + name), value, name)
        for a in _check_iterable(attachments, "attachments"):
            self._attach(a)
        for name, value in (headers or {}).items():
            self.add_header(name, value)
        if priority is not None:
            self.set_priority(priority)
        if isinstance(dsn, Mapping):
            self.set_dsn(**dsn)
        elif dsn is not None:
            self.set_dsn(dsn)

    @classmethod
    def _adopt(cls, handle: int) -> "Message":
        """A Message owning a handle the library gave (freed with it)."""
        message = cls.__new__(cls)
        message._ptr = handle
        return message

    @classmethod
    def from_mime(cls, data: Union[bytes, str]) -> "Message":
        """Reads RFC 5322 / MIME bytes (str is written as UTF-8) into a Message. A damaged
        message is still read: parse_problems says what was wrong."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        raw = _check.data(data, "data")
        out = ctypes.c_void_p()
        _call(lib.email_message_from_mime(raw, len(raw), ctypes.byref(out)))
        return cls._adopt(out.value)  # type: ignore[arg-type]

    def _set(self, fn: Any, value: Optional[str], name: str, line: bool = True) -> None:
        if value is not None:
            _call(fn(self._handle, _check.string(value, name, line=line)))

    def _attach(self, item: Any) -> None:
        if isinstance(item, tuple):
            if len(item) not in (2, 3):
                raise ValueError("an attachment tuple is (name, data) or "
                                 "(name, data, content_type)")
            self.add_attachment_data(item[1], *item[:1], *item[2:])
        else:
            self.add_attachment_file(item)

    @property
    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("the message was freed")
        return self._ptr

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            lib.email_message_free(self._ptr)
            self._ptr = None

    def _address(self, fn: Any, value: Any, name: str) -> "Message":
        for a in _check.addresses(value, name):
            _call(fn(self._handle, a))
        return self

    def set_from(self, address: str) -> "Message":
        """From: "a@b" or "Display Name <a@b>" (replaces)."""
        _call(lib.email_message_set_from(self._handle, _check.string(address, "address")))
        return self

    def set_sender(self, address: str) -> "Message":
        """Sender: who sent the message on the author's behalf (replaces)."""
        _call(lib.email_message_set_sender(self._handle, _check.string(address, "address")))
        return self

    def set_reply_to(self, address: str) -> "Message":
        """Reply-To (replaces)."""
        _call(lib.email_message_set_reply_to(self._handle, _check.string(address, "address")))
        return self

    def add_to(self, addresses: Union[str, Iterable[str]]) -> "Message":
        """Adds To recipients: one address, a comma-separated list, or a list of them."""
        return self._address(lib.email_message_add_to, addresses, "to")

    def add_cc(self, addresses: Union[str, Iterable[str]]) -> "Message":
        """Adds Cc recipients."""
        return self._address(lib.email_message_add_cc, addresses, "cc")

    def add_bcc(self, addresses: Union[str, Iterable[str]]) -> "Message":
        """Adds Bcc recipients (in the envelope, never in the header)."""
        return self._address(lib.email_message_add_bcc, addresses, "bcc")

    def set_subject(self, subject: str) -> "Message":
        """The subject (one line of any Unicode text)."""
        _call(lib.email_message_set_subject(self._handle, _check.string(subject, "subject")))
        return self

    def set_text_body(self, text: str) -> "Message":
        """The plain-text body."""
        _call(lib.email_message_set_text_body(
            self._handle, _check.string(text, "text", line=False)))
        return self

    def set_html_body(self, html: str) -> "Message":
        """The HTML body (with the text body, the message is multipart/alternative)."""
        _call(lib.email_message_set_html_body(
            self._handle, _check.string(html, "html", line=False)))
        return self

    def add_attachment_file(self, path: "_check.PathArg", name: Optional[str] = None,
                            content_type: Optional[str] = None) -> "Message":
        """Attaches a file, read while the message goes out. name defaults to the file's base
        name, content_type to a guess from the name."""
        _call(lib.email_message_add_attachment_file(
            self._handle, _check.path(path, "path"), _check.optional_string(name, "name"),
            _check.optional_string(content_type, "content_type")))
        return self

    def add_attachment_data(self, data: bytes, name: str,
                            content_type: Optional[str] = None) -> "Message":
        """Attaches bytes held in memory (copied) under a file name."""
        raw = _check.data(data, "data")
        _call(lib.email_message_add_attachment_data(
            self._handle, raw, len(raw), _check.string(name, "name"),
            _check.optional_string(content_type, "content_type")))
        return self

    def add_inline(self, content_id: str, content_type: str, *, path: Any = None,
                   data: Any = None) -> "Message":
        """An inline part the HTML body shows with src="cid:content_id", from a file (path)
        or from memory (data): exactly one of them."""
        if (path is None) == (data is None):
            raise TypeError("add_inline takes exactly one of path and data")
        raw = _check.data(data, "data") if data is not None else None
        _call(lib.email_message_add_inline(
            self._handle, _check.optional_path(path, "path"), raw, len(raw or b""),
            _check.string(content_id, "content_id"), _check.string(content_type,
                                                                   "content_type")))
        return self

    def add_header(self, name: str, value: str) -> "Message":
        """A header of the caller's (name: printable ASCII without ':')."""
        _call(lib.email_message_add_header(self._handle, _check.string(name, "name"),
                                           _check.string(value, "value")))
        return self

    def set_in_reply_to(self, message_id: str) -> "Message":
        """The Message-ID ("<left@right>") this message answers."""
        _call(lib.email_message_set_in_reply_to(self._handle,
                                                _check.string(message_id, "message_id")))
        return self

    def add_reference(self, message_id: str) -> "Message":
        """Appends one id to the References chain (oldest first)."""
        _call(lib.email_message_add_reference(self._handle,
                                              _check.string(message_id, "message_id")))
        return self

    def set_priority(self, priority: int) -> "Message":
        """PRIORITY_NORMAL, _HIGHEST, _HIGH, _LOW or _LOWEST."""
        _call(lib.email_message_set_priority(self._handle,
                                             _check.integer(priority, "priority", 0, 5)))
        return self

    def set_disposition_notification(self, on: bool) -> "Message":
        """Asks for a read receipt (Disposition-Notification-To)."""
        _call(lib.email_message_set_disposition_notification(self._handle,
                                                             _check.boolean(on, "on")))
        return self

    def set_charsets(self, header_mode: Optional[str] = None,
                     body_mode: Optional[str] = None) -> "Message":
        """Charset modes (MAIL_MODE_...); None keeps the current one."""
        _call(lib.email_message_set_charsets(
            self._handle, _check.optional_string(header_mode, "header_mode"),
            _check.optional_string(body_mode, "body_mode")))
        return self

    def set_dsn(self, notify: int = 0, ret: Optional[str] = None,
                envid: Optional[str] = None) -> "Message":
        """Asks for delivery status notifications (RFC 3461) from a server that offers DSN
        (one that does not gets the message without the request).

        notify: NOTIFY_NEVER alone, or NOTIFY_SUCCESS, NOTIFY_FAILURE and NOTIFY_DELAY or-ed
        together, or 0 for the server's default (failures). ret: "FULL" (the whole message
        comes back in a notification) or "HDRS" (its header only), None for the server's
        choice. envid: an envelope id of up to 100 printable ASCII characters that the
        notifications quote, None or "" for none. set_dsn() with no argument asks for nothing
        again. A bad combination or value raises InvalidArgumentError; the message is then
        unchanged. Prebuilt messages (send_mime) carry no DSN request."""
        _call(lib.email_message_set_dsn(
            self._handle, _check.integer(notify, "notify", 0, 0x7FFFFFFF),
            _check.optional_string(ret, "ret"), _check.optional_string(envid, "envid")))
        return self

    @property
    def id(self) -> int:
        """The message's id, reported by the sends and message_status()."""
        return int(lib.email_message_id(self._handle))

    def to_mime(self) -> bytes:
        """The message as RFC 5322 / MIME bytes (CRLF line endings, without Bcc)."""
        out = ctypes.c_void_p()
        length = ctypes.c_size_t()
        _call(lib.email_message_to_mime(self._handle, ctypes.byref(out), ctypes.byref(length)))
        try:
            return ctypes.string_at(out, length.value)
        finally:
            _free(out)


def _check_iterable(value: Any, name: str) -> Iterable[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list, not {type(value).__name__}")
    return value


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None


def _free(pointer: ctypes.c_void_p) -> None:
    # to_mime's buffer comes from the C library's malloc: free() from the same C runtime
    _libc.free(pointer)
