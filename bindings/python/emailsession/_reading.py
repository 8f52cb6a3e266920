"""The read accessors of a message (email_message_get_*): they read any message, parsed from
MIME, received from a server or built here. Mixed into Message."""

import ctypes
import datetime
from typing import List, NamedTuple, Optional

from ._lib import lib, text
from .errors import from_last_error

RECIPIENT_TO = 0
RECIPIENT_CC = 1
RECIPIENT_BCC = 2

DISPOSITION_ATTACHMENT = 0
DISPOSITION_INLINE = 1

# What parse_problems reports (bits): damage that was repaired or worked around.
PARSE_HEADER = 1
PARSE_CHARSET = 2
PARSE_8BIT_HEADER = 4
PARSE_ENCODING = 8
PARSE_MULTIPART = 16
PARSE_ADDRESS = 32
PARSE_LIMIT = 64


class Part(NamedTuple):
    """An attachment or inline part: its file name (None when it has none), content type,
    decoded bytes (None for an attachment built from a file: it is read when sent), Content-ID
    (without angle brackets, None when none) and whether it is inline."""

    name: Optional[str]
    content_type: str
    data: Optional[bytes]
    content_id: Optional[str]
    inline: bool


def _optional(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else text(raw)


class Reading:
    """Properties over the email_message_get_* getters (self._handle is the message)."""

    _handle: int

    @property
    def subject(self) -> Optional[str]:
        """The subject, decoded (None when there is none)."""
        return _optional(lib.email_message_get_subject(self._handle))

    @property
    def from_(self) -> Optional[str]:
        """The first From address as "Name <a@b>" (or "a@b"), None when there is none."""
        return _optional(lib.email_message_get_from(self._handle))

    def _recipients(self, kind: int) -> List[str]:
        handle = self._handle
        count = lib.email_message_get_recipient_count(handle, kind)
        return [text(lib.email_message_get_recipient(handle, kind, i)) for i in range(count)]

    @property
    def to(self) -> List[str]:
        """The To addresses, each as "Name <a@b>"."""
        return self._recipients(RECIPIENT_TO)

    @property
    def cc(self) -> List[str]:
        """The Cc addresses."""
        return self._recipients(RECIPIENT_CC)

    @property
    def bcc(self) -> List[str]:
        """The Bcc addresses (a built message's, or a Bcc field read)."""
        return self._recipients(RECIPIENT_BCC)

    @property
    def text(self) -> Optional[str]:
        """The plain-text body (CRLF line ends, as on the wire), None when there is none."""
        return _optional(lib.email_message_get_text_body(self._handle))

    @property
    def html(self) -> Optional[str]:
        """The HTML body, None when there is none."""
        return _optional(lib.email_message_get_html_body(self._handle))

    @property
    def message_id(self) -> Optional[str]:
        """The Message-ID ("<id@host>"), None when there is none."""
        return _optional(lib.email_message_get_message_id(self._handle))

    def header(self, name: str) -> Optional[str]:
        """The first header field of that name (any case), unfolded and decoded; None when
        there is none."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        return _optional(lib.email_message_get_header(self._handle, name.encode()))

    @property
    def date(self) -> Optional[datetime.datetime]:
        """The Date field (UTC), None when there is none or it is no date."""
        seconds = lib.email_message_get_date(self._handle)
        if seconds == 0:
            return None
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)

    @property
    def uid(self) -> Optional[str]:
        """The server's UIDL (POP3) or UID (IMAP) of a received message; None otherwise."""
        return _optional(lib.email_message_get_uid(self._handle))

    @property
    def size(self) -> int:
        """Bytes on the server (a received message) or of the MIME parsed; 0 when built."""
        return int(lib.email_message_get_size(self._handle))

    @property
    def parse_problems(self) -> int:
        """PARSE_... bits: what was damaged in a parsed message and worked around (0: none)."""
        return int(lib.email_message_get_parse_problems(self._handle))

    @property
    def attachments(self) -> List[Part]:
        """The attachments and inline parts, in order."""
        handle = self._handle
        parts = []
        for i in range(lib.email_message_get_attachment_count(handle)):
            name, ctype = ctypes.c_char_p(), ctypes.c_char_p()
            data, length = ctypes.c_void_p(), ctypes.c_size_t()
            rc = lib.email_message_get_attachment(handle, i, ctypes.byref(name),
                                                  ctypes.byref(ctype), ctypes.byref(data),
                                                  ctypes.byref(length))
            if rc != 0:
                raise from_last_error(rc)
            cid, disposition = ctypes.c_char_p(), ctypes.c_int()
            rc = lib.email_message_get_attachment_info(handle, i, ctypes.byref(cid),
                                                       ctypes.byref(disposition))
            if rc != 0:
                raise from_last_error(rc)
            raw = ctypes.string_at(data, length.value) if data.value else None
            parts.append(Part(_optional(name.value), text(ctype.value), raw,
                              _optional(cid.value), disposition.value == DISPOSITION_INLINE))
        return parts
