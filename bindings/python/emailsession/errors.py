"""The exceptions the package raises for the library's failures, and their codes."""

import builtins
import ctypes
import enum
import re
from typing import Dict, List, NamedTuple, Optional, Type

from ._lib import Status, lib, text


class ErrorCode(enum.IntEnum):
    """The EMAIL_E... codes of <emailsession.h> (EMAIL_ERRNO_MAP), without the EMAIL_ prefix."""

    OK = 0
    EINVAL = -1
    ENOMEM = -2
    EEXIST = -3
    ENOSESSION = -4
    ETIMEDOUT = -5
    ERESOLVE = -6
    ECONNECT = -7
    ECLOSED = -8
    EPROTO = -9
    ESERVER = -10
    EAUTH = -11
    EAUTHMECH = -12
    EINSECURE = -13
    ETLS = -14
    ETLSREQUIRED = -15
    ECERT = -16
    ECERTNAME = -17
    ECERTEXPIRED = -18
    ERECIPIENTS = -19
    ESIZE = -20
    EUNKNOWN = -21
    ECANCELED = -22
    EWOULDBLOCK = -23
    ESHUTDOWN = -24
    EIO = -25
    ENOTSUP = -26
    EBUSY = -27
    ECHARSET = -28
    ENOTFOUND = -29
    ESTALE = -30


class Refused(NamedTuple):
    """A recipient the server refused: its address, the server's reply code and text."""

    address: str
    code: int
    text: str


class Cause(NamedTuple):
    """One link of the chain of causes of a failure that was not the server's, outermost first:
    the EMAIL_E... code, its text, and the layer it comes from ("transport", "tls", "auth",
    "smtp", "mime", "transporter")."""

    code: int
    text: str
    component: str


class Error(Exception):
    """A failure reported by the library.

    code: the EMAIL_E... value (an ErrorCode when known); name: its symbol ("EMAIL_EAUTH");
    status: the server's reply code, 0 when the failure was not the server's; enhanced_code:
    the RFC 3463 code ("5.7.8") or ""; text: the library's message (with the server's text);
    refused: the refused recipients (Refused tuples: address, code, text); causes: the chain
    of causes (Cause tuples), outermost first.
    """

    def __init__(self, code: int, text: str, status: int = 0, enhanced_code: str = "",
                 refused: Optional[List[Refused]] = None,
                 causes: Optional[List[Cause]] = None) -> None:
        Exception.__init__(self, text)
        try:
            self.code: int = ErrorCode(code)
        except ValueError:
            self.code = code
        self.name: str = lib.email_error_name(code).decode()
        self.text = text
        self.status = status
        self.enhanced_code = enhanced_code
        self.refused: List[Refused] = list(refused or [])
        self.causes: List[Cause] = list(causes or [])

    def __str__(self) -> str:
        return f"{self.text} [{self.name}]"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # the default (the class called with self.args) would lose every field but the text
        return (type(self), (int(self.code), self.text, self.status, self.enhanced_code,
                             self.refused, self.causes))


class AuthenticationError(Error):
    """The server refused the credentials, or no usable mechanism, or they would go out
    unencrypted (EAUTH, EAUTHMECH, EINSECURE)."""


class TLSError(Error):
    """Encryption failed or the certificate was not trusted (ETLS, ETLSREQUIRED, ECERT,
    ECERTNAME, ECERTEXPIRED)."""


class RefusedError(Error):
    """The server refused the request (ESERVER, ERECIPIENTS, ESIZE): when sending, the message
    or every recipient; when receiving, a command (POP3's -ERR, IMAP's NO or BAD: the server's
    line in .status and .text, IMAP's response code such as "TRYCREATE" in .enhanced_code)."""


class TimeoutError(Error, builtins.TimeoutError):
    """The server went silent (ETIMEDOUT). Also a builtins.TimeoutError."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        Error.__init__(self, *args, **kwargs)

    __str__ = Error.__str__


class ConnectionError(Error, builtins.ConnectionError):
    """The server could not be reached or closed the connection (ERESOLVE, ECONNECT, ECLOSED).
    Also a builtins.ConnectionError."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        Error.__init__(self, *args, **kwargs)

    __str__ = Error.__str__


class UnknownOutcomeError(Error):
    """The end of the message went unanswered: it may have been delivered (EUNKNOWN). It is
    never resent automatically."""


class InvalidArgumentError(Error, ValueError):
    """The library refused an argument (EINVAL, ECHARSET): a malformed address, text the
    charset cannot carry... Also a ValueError."""


class SessionError(Error):
    """A session name already open or not open (EEXIST, ENOSESSION)."""


_FAMILIES: Dict[int, Type[Error]] = {}
for _cls, _codes in (
        (AuthenticationError, ("EAUTH", "EAUTHMECH", "EINSECURE")),
        (TLSError, ("ETLS", "ETLSREQUIRED", "ECERT", "ECERTNAME", "ECERTEXPIRED")),
        (RefusedError, ("ESERVER", "ERECIPIENTS", "ESIZE")),
        (TimeoutError, ("ETIMEDOUT",)),
        (ConnectionError, ("ERESOLVE", "ECONNECT", "ECLOSED")),
        (UnknownOutcomeError, ("EUNKNOWN",)),
        (InvalidArgumentError, ("EINVAL", "ECHARSET")),
        (SessionError, ("EEXIST", "ENOSESSION"))):
    for _name in _codes:
        _FAMILIES[ErrorCode[_name]] = _cls


def error_class(code: int) -> Type[Error]:
    """The exception class for an EMAIL_E... code."""
    return _FAMILIES.get(code, Error)


def _refused(status: "ctypes._Pointer[Status]", count: int) -> List[Refused]:
    out = []
    code = ctypes.c_int()
    for i in range(count):
        address = lib.email_status_recipient(status, i, ctypes.byref(code))
        if address is None:
            break
        out.append(Refused(text(address), code.value,
                           text(lib.email_status_recipient_text(status, i))))
    return out


def _causes(status: "ctypes._Pointer[Status]") -> List[Cause]:
    out = []
    code = ctypes.c_int()
    component = ctypes.c_char_p()
    for i in range(lib.email_status_error_count(status)):
        link = lib.email_status_error(status, i, ctypes.byref(code), ctypes.byref(component))
        if link is None:
            break
        out.append(Cause(code.value, text(link), text(component.value)))
    return out


def refused_of(status: "ctypes._Pointer[Status]") -> List[Refused]:
    """The refused recipients a status lists."""
    return _refused(status, status.contents.rejected)


def from_status(status: "ctypes._Pointer[Status]") -> Error:
    """The exception for a failed status (read now: the lists may be freed after)."""
    s = status.contents
    code = s.error or ErrorCode.ESERVER
    return error_class(code)(code, text(s.status_text), s.status, text(s.enhanced_code),
                             refused_of(status), _causes(status))


# email__error_set_status ends ErrorInfo with the server's reply this way
_SERVER_REPLY = re.compile(r"\(server reply (\d{3})(?: ([245]\.\d{1,3}\.\d{1,3}))?\)$")


def from_last_error(code: Optional[int] = None) -> Error:
    """The exception for the calling thread's ErrorInfo (a failed call of the facade or of a
    function returning a code). The server's reply code is read back from the text."""
    last = lib.email_last_error()
    if code is None or code == 0:
        code = last or ErrorCode.EINVAL
    info = text(lib.email_error_info()) or text(lib.email_strerror(code))
    match = _SERVER_REPLY.search(info)
    status = int(match.group(1)) if match else 0
    enhanced = match.group(2) or "" if match else ""
    return error_class(code)(code, info, status, enhanced)


class Result(NamedTuple):
    """A message the server accepted: its id, the server's reply code, text and enhanced code,
    how many recipients the envelope had and those the server refused (a message accepted for
    some recipients and refused for others is sent)."""

    message_id: int
    status: int
    text: str
    enhanced_code: str
    recipients: int
    refused: List[Refused]


def result_of(status: "ctypes._Pointer[Status]", message_id: int) -> Result:
    """The Result of a successful status (read now: the lists may be freed after)."""
    s = status.contents
    return Result(message_id, s.status, text(s.status_text), text(s.enhanced_code),
                  s.recipients, refused_of(status))
