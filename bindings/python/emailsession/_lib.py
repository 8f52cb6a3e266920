"""Loads libemailsession with ctypes and declares the C functions the package calls.

Only the public API of <emailsession.h> is used. Every function gets argtypes and restype, so
ctypes converts and checks arguments instead of guessing (a wrong guess would truncate a pointer
or a uint64_t). ctypes.CDLL releases the GIL for the duration of each call, so a synchronous
send does not freeze the program's other threads.
"""

import ctypes
import ctypes.util
import os
from typing import List, Optional

from ._version import LIBRARY_MAJOR

c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_bool = ctypes.c_bool
c_size_t = ctypes.c_size_t
c_uint64 = ctypes.c_uint64
c_int64 = ctypes.c_int64
c_void_p = ctypes.c_void_p


class Status(ctypes.Structure):
    """email_status_t."""

    _fields_ = [
        ("success", c_bool),
        ("status", c_int),
        ("status_text", ctypes.c_char * 512),
        ("enhanced_code", ctypes.c_char * 16),
        ("error", c_int),
        ("recipients", c_size_t),
        ("rejected", c_size_t),
        ("internal_", c_void_p),
        ("reserved_", c_void_p * 8),  # the C struct's fixed size (room to grow): keep in step
    ]


class Server(ctypes.Structure):
    """email_server_t."""

    _fields_ = [
        ("host", c_char_p),
        ("port", c_int),
        ("user", c_char_p),
        ("password", c_char_p),
        ("oauth2_token", c_char_p),
        ("authentication_mode", c_char_p),
        ("security", c_int),
        ("accept_unsecure_connection", c_bool),
        ("connection_timeout", c_int),
        ("send_timeout", c_int),
        ("keep_alive", c_bool),
        ("log_file", c_char_p),
        ("header_charset", c_char_p),
        ("body_charset", c_char_p),
        ("ca_file", c_char_p),
        ("helo_name", c_char_p),
        ("max_connections", c_int),
        ("client_cert_file", c_char_p),
        ("client_key_file", c_char_p),
        ("outbox", c_char_p),
        ("reserved_", c_void_p * 12),  # the C struct's fixed size (room to grow): keep in step
    ]


class Pop3BoxInfo(ctypes.Structure):
    """email_pop3_box_info_t."""

    _fields_ = [("count", c_uint64), ("size", c_uint64)]


class Pop3MailInfo(ctypes.Structure):
    """email_pop3_mail_info_t."""

    _fields_ = [("number", ctypes.c_uint), ("size", c_uint64), ("uid", ctypes.c_char * 72)]


class ImapBoxInfo(ctypes.Structure):
    """email_imap_box_info_t."""

    _fields_ = [("messages", ctypes.c_uint32), ("recent", ctypes.c_uint32),
                ("unseen", ctypes.c_uint32), ("uidvalidity", ctypes.c_uint32),
                ("uidnext", ctypes.c_uint32), ("uidvalidity_changed", c_bool),
                ("reserved_", c_void_p * 4)]


class ImapBox(ctypes.Structure):
    """email_imap_box_t."""

    _fields_ = [("name", c_char_p), ("delimiter", ctypes.c_char * 2),
                ("attributes", ctypes.c_uint), ("selectable", c_bool),
                ("reserved_", c_void_p * 2)]


class MailboxResult(ctypes.Structure):
    """email_mailbox_result_t (made by the library only: read, never allocated here)."""

    _fields_ = [("count", c_uint64), ("size", c_uint64),
                ("pop3_list", ctypes.POINTER(Pop3MailInfo)), ("data", c_void_p),
                ("length", c_size_t), ("imap_box_info", ctypes.POINTER(ImapBoxInfo)),
                ("imap_boxes", ctypes.POINTER(ImapBox)), ("uids", ctypes.POINTER(ctypes.c_uint32))]


StatusP = ctypes.POINTER(Status)
MessageP = ctypes.POINTER(c_void_p)
RECEIVE_CB = ctypes.CFUNCTYPE(None, c_void_p, StatusP, c_void_p)
MAILBOX_CB = ctypes.CFUNCTYPE(None, ctypes.POINTER(MailboxResult), StatusP, c_void_p)
SEND_CB = ctypes.CFUNCTYPE(None, c_uint64, StatusP, c_void_p)
LOG_CB = ctypes.CFUNCTYPE(None, c_char_p, c_void_p)
OUTBOX_CB = ctypes.CFUNCTYPE(None, c_uint64, c_char_p, c_char_p, c_int64, c_void_p)
RECIPIENTS = ctypes.POINTER(c_char_p)

# name: (restype, argtypes)
_PROTOTYPES = {
    "email_strerror": (c_char_p, [c_int]),
    "email_error_name": (c_char_p, [c_int]),
    "email_status_recipient": (c_char_p, [StatusP, c_size_t, ctypes.POINTER(c_int)]),
    "email_status_recipient_text": (c_char_p, [StatusP, c_size_t]),
    "email_status_error_count": (c_size_t, [StatusP]),
    "email_status_error": (c_char_p, [StatusP, c_size_t, ctypes.POINTER(c_int),
                                      ctypes.POINTER(c_char_p)]),
    "email_status_clear": (None, [StatusP]),
    "email_message_new": (c_void_p, []),
    "email_message_free": (None, [c_void_p]),
    "email_message_set_from": (c_int, [c_void_p, c_char_p]),
    "email_message_set_sender": (c_int, [c_void_p, c_char_p]),
    "email_message_set_reply_to": (c_int, [c_void_p, c_char_p]),
    "email_message_add_to": (c_int, [c_void_p, c_char_p]),
    "email_message_add_cc": (c_int, [c_void_p, c_char_p]),
    "email_message_add_bcc": (c_int, [c_void_p, c_char_p]),
    "email_message_set_subject": (c_int, [c_void_p, c_char_p]),
    "email_message_set_text_body": (c_int, [c_void_p, c_char_p]),
    "email_message_set_html_body": (c_int, [c_void_p, c_char_p]),
    "email_message_add_attachment_file": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    "email_message_add_attachment_data": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p,
                                                  c_char_p]),
    "email_message_add_inline": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t, c_char_p,
                                         c_char_p]),
    "email_message_add_header": (c_int, [c_void_p, c_char_p, c_char_p]),
    "email_message_set_in_reply_to": (c_int, [c_void_p, c_char_p]),
    "email_message_add_reference": (c_int, [c_void_p, c_char_p]),
    "email_message_set_priority": (c_int, [c_void_p, c_int]),
    "email_message_set_disposition_notification": (c_int, [c_void_p, c_bool]),
    "email_message_set_charsets": (c_int, [c_void_p, c_char_p, c_char_p]),
    "email_message_set_dsn": (c_int, [c_void_p, c_int, c_char_p, c_char_p]),
    "email_message_id": (c_uint64, [c_void_p]),
    "email_message_to_mime": (c_int, [c_void_p, ctypes.POINTER(c_void_p),
                                      ctypes.POINTER(c_size_t)]),
    "email_server_init": (None, [ctypes.POINTER(Server)]),
    "email_transporter_new": (c_void_p, [ctypes.POINTER(Server)]),
    "email_transporter_get_server": (c_int, [c_void_p, ctypes.POINTER(Server)]),
    "email_transporter_check_connection": (c_int, [c_void_p, StatusP]),
    "email_transporter_send": (c_int, [c_void_p, c_void_p, StatusP]),
    "email_transporter_send_async": (c_int, [c_void_p, c_void_p, SEND_CB, c_void_p,
                                             ctypes.POINTER(c_uint64)]),
    "email_transporter_send_mime": (c_int, [c_void_p, c_char_p, RECIPIENTS, c_char_p, c_size_t,
                                            StatusP]),
    "email_transporter_send_mime_async": (c_int, [c_void_p, c_char_p, RECIPIENTS, c_char_p,
                                                  c_size_t, SEND_CB, c_void_p,
                                                  ctypes.POINTER(c_uint64)]),
    "email_transporter_outbox_resume": (c_int, [c_void_p, c_int, SEND_CB, c_void_p]),
    "email_transporter_free": (None, [c_void_p]),
    "email_start_smtp_session": (c_bool, [c_char_p, c_char_p, c_char_p, c_int, c_int, c_int]),
    "email_send_message": (c_bool, [c_char_p, c_void_p]),
    "email_send_mime_id": (c_bool, [c_char_p, c_char_p, RECIPIENTS, c_char_p, c_size_t,
                                    ctypes.POINTER(c_uint64)]),
    "email_close_session": (c_bool, [c_char_p]),
    "email_set_timeout": (None, [c_int]),
    "email_get_timeout": (c_int, []),
    "email_set_max_connections": (c_int, [c_int]),
    "email_error_occurred": (c_bool, []),
    "email_error_info": (c_char_p, []),
    "email_last_error": (c_int, []),
    "email_message_status": (c_int, [c_uint64]),
    "email_set_ca_file": (c_int, [c_char_p]),
    "email_session_set_callback": (c_int, [c_char_p, SEND_CB, c_void_p]),
    "email_dispatch_fd": (c_int, []),
    "email_dispatch": (c_int, []),
    "email_shutdown": (None, []),
    "email_set_log": (c_int, [c_char_p]),
    "email_set_log_callback": (c_int, [LOG_CB, c_void_p]),
    "email_set_log_directory": (c_int, [c_char_p]),
    "email_set_outbox": (c_int, [c_char_p]),
    "email_outbox_list": (c_int, [c_char_p, OUTBOX_CB, c_void_p]),
    "email_outbox_resume_ex": (c_int, [c_char_p, c_int]),
    "email_outbox_corrupt_count": (c_int, []),
    "email_version": (c_char_p, []),
    # reading messages
    "email_message_from_mime": (c_int, [c_char_p, c_size_t, MessageP]),
    "email_message_get_subject": (c_char_p, [c_void_p]),
    "email_message_get_from": (c_char_p, [c_void_p]),
    "email_message_get_recipient_count": (c_size_t, [c_void_p, c_int]),
    "email_message_get_recipient": (c_char_p, [c_void_p, c_int, c_size_t]),
    "email_message_get_text_body": (c_char_p, [c_void_p]),
    "email_message_get_html_body": (c_char_p, [c_void_p]),
    "email_message_get_message_id": (c_char_p, [c_void_p]),
    "email_message_get_header": (c_char_p, [c_void_p, c_char_p]),
    "email_message_get_date": (c_int64, [c_void_p]),
    "email_message_get_uid": (c_char_p, [c_void_p]),
    "email_message_get_size": (c_uint64, [c_void_p]),
    "email_message_get_attachment_count": (c_size_t, [c_void_p]),
    "email_message_get_attachment": (c_int, [c_void_p, c_size_t, ctypes.POINTER(c_char_p),
                                             ctypes.POINTER(c_char_p), MessageP,
                                             ctypes.POINTER(c_size_t)]),
    "email_message_get_attachment_info": (c_int, [c_void_p, c_size_t, ctypes.POINTER(c_char_p),
                                                  ctypes.POINTER(c_int)]),
    "email_message_get_parse_problems": (ctypes.c_uint, [c_void_p]),
    # POP3: the transporter and the named sessions
    "email_pop3_transporter_new": (c_void_p, [ctypes.POINTER(Server)]),
    "email_pop3_check_connection": (c_int, [c_void_p, StatusP]),
    "email_pop3_get_box_info": (c_int, [c_void_p, ctypes.POINTER(Pop3BoxInfo), StatusP]),
    "email_pop3_get_mail_info_list": (c_int, [c_void_p,
                                              ctypes.POINTER(ctypes.POINTER(Pop3MailInfo)),
                                              ctypes.POINTER(c_size_t), StatusP]),
    "email_pop3_get_mail_raw": (c_int, [c_void_p, ctypes.c_uint, MessageP,
                                        ctypes.POINTER(c_size_t), StatusP]),
    "email_pop3_get_mail": (c_int, [c_void_p, ctypes.c_uint, MessageP, StatusP]),
    "email_pop3_delete": (c_int, [c_void_p, ctypes.c_uint, StatusP]),
    "email_pop3_undelete_all": (c_int, [c_void_p, StatusP]),
    "email_pop3_transporter_free": (None, [c_void_p]),
    "email_pop3_check_connection_async": (c_int, [c_void_p, RECEIVE_CB, c_void_p]),
    "email_pop3_get_box_info_async": (c_int, [c_void_p, MAILBOX_CB, c_void_p]),
    "email_pop3_get_mail_info_list_async": (c_int, [c_void_p, MAILBOX_CB, c_void_p]),
    "email_pop3_get_mail_raw_async": (c_int, [c_void_p, ctypes.c_uint, MAILBOX_CB, c_void_p]),
    "email_pop3_get_mail_async": (c_int, [c_void_p, ctypes.c_uint, RECEIVE_CB, c_void_p]),
    "email_pop3_delete_async": (c_int, [c_void_p, ctypes.c_uint, RECEIVE_CB, c_void_p]),
    "email_pop3_undelete_all_async": (c_int, [c_void_p, RECEIVE_CB, c_void_p]),
    "email_start_pop3_session": (c_bool, [c_char_p, c_char_p, c_char_p, c_int, c_int]),
    "email_start_imap_session": (c_bool, [c_char_p, c_char_p, c_char_p, c_int, c_int]),
    # IMAP: the transporter
    "email_imap_transporter_new": (c_void_p, [ctypes.POINTER(Server)]),
    "email_imap_check_connection": (c_int, [c_void_p, StatusP]),
    "email_imap_select_box": (c_int, [c_void_p, c_char_p, c_int, ctypes.POINTER(ImapBoxInfo),
                                      StatusP]),
    "email_imap_get_box_list": (c_int, [c_void_p, ctypes.POINTER(ctypes.POINTER(ImapBox)),
                                        ctypes.POINTER(c_size_t), StatusP]),
    "email_imap_box_list_free": (None, [ctypes.POINTER(ImapBox), c_size_t]),
    "email_imap_get_mail": (c_int, [c_void_p, ctypes.c_uint32, c_int, MessageP, StatusP]),
    "email_imap_get_mails": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t, c_int,
                                     MessageP, StatusP]),
    "email_imap_search": (c_int, [c_void_p, c_char_p, c_char_p,
                                  ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)),
                                  ctypes.POINTER(c_size_t), StatusP]),
    "email_imap_add_flags": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t,
                                     c_char_p, StatusP]),
    "email_imap_remove_flags": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t,
                                        c_char_p, StatusP]),
    "email_imap_delete": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t, StatusP]),
    "email_imap_expunge": (c_int, [c_void_p, StatusP]),
    "email_imap_transporter_free": (None, [c_void_p]),
    "email_imap_check_connection_async": (c_int, [c_void_p, RECEIVE_CB, c_void_p]),
    "email_imap_select_box_async": (c_int, [c_void_p, c_char_p, c_int, MAILBOX_CB, c_void_p]),
    "email_imap_get_box_list_async": (c_int, [c_void_p, MAILBOX_CB, c_void_p]),
    "email_imap_get_mail_async": (c_int, [c_void_p, ctypes.c_uint32, c_int, RECEIVE_CB,
                                          c_void_p]),
    "email_imap_get_mails_async": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t,
                                           c_int, RECEIVE_CB, c_void_p]),
    "email_imap_search_async": (c_int, [c_void_p, c_char_p, c_char_p, MAILBOX_CB, c_void_p]),
    "email_imap_add_flags_async": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t,
                                           c_char_p, RECEIVE_CB, c_void_p]),
    "email_imap_remove_flags_async": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32),
                                              c_size_t, c_char_p, RECEIVE_CB, c_void_p]),
    "email_imap_delete_async": (c_int, [c_void_p, ctypes.POINTER(ctypes.c_uint32), c_size_t,
                                        RECEIVE_CB, c_void_p]),
    "email_imap_expunge_async": (c_int, [c_void_p, RECEIVE_CB, c_void_p]),
    "email_read_first": (c_bool, [c_char_p, c_int, MessageP]),
    "email_read_next": (c_bool, [c_char_p, c_int, MessageP]),
    "email_read_previous": (c_bool, [c_char_p, c_int, MessageP]),
    "email_read_last": (c_bool, [c_char_p, c_int, MessageP]),
    "email_delete_message": (c_bool, [c_char_p, c_void_p]),
    "email_mailbox_count": (c_int, [c_char_p, c_int]),
}


def _candidates() -> List[str]:
    """Where to look, in order: $EMAILSESSION_LIBRARY, the libdir the build configured, then the
    system's search (ldconfig's cache) through ctypes.util.find_library."""
    env = os.environ.get("EMAILSESSION_LIBRARY")
    if env:
        return [env]  # an explicit choice: never silently replaced by another copy
    found = []
    try:
        from . import _paths  # written by `make install`; absent in a pip-installed copy
    except ImportError:
        pass
    else:
        path = os.path.join(_paths.LIBDIR, _paths.SONAME)
        if os.path.exists(path):
            found.append(path)
    system = ctypes.util.find_library("emailsession")
    if system:
        found.append(system)
    return found


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        tried = "; ".join(errors) or "not found"
        raise ImportError("emailsession: cannot load libemailsession (" + tried +
                          "); install the C library or set EMAILSESSION_LIBRARY to its path")
    try:
        lib.email_version.restype = c_char_p
        lib.email_version.argtypes = []
    except AttributeError:
        raise ImportError(f"emailsession: {path} is not libemailsession") from None
    version = lib.email_version().decode()
    if version.split(".")[0] != str(LIBRARY_MAJOR):
        raise ImportError(f"emailsession: {path} is version {version}; this package needs "
                          f"{LIBRARY_MAJOR}.x")
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"emailsession: {path} (version {version}) has no {name}: "
                              "the library is too old for this package") from None
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = _load()


def text(raw: Optional[bytes]) -> str:
    """A C string from the library as str (server text that is not UTF-8 stays readable)."""
    return raw.decode("utf-8", "replace") if raw is not None else ""
