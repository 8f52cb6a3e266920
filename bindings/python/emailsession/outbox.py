"""The durable outbox (email_set_outbox and friends): asynchronous sends written to disk before
they are reported queued, kept until their outcome is known, resumed after a restart.

See email_set_outbox(3) for the contract: what is kept and removed when, the ids, the unknown
outcome (EUNKNOWN), damaged entries and several processes sharing one outbox.
"""

import dataclasses
import datetime
from typing import Any, List, Optional

from . import _check, _dispatch
from ._lib import OUTBOX_CB, lib, text
from .errors import from_last_error

# email_outbox_resume_ex's flags (EMAIL_OUTBOX_RESEND_UNKNOWN, EMAIL_OUTBOX_DROP_UNKNOWN)
_RESEND_UNKNOWN = 1
_DROP_UNKNOWN = 2


@dataclasses.dataclass(frozen=True)
class OutboxEntry:
    """A message waiting in the outbox: its id (the one its send gave, and that
    message_status() and the outcome report), who it waits for (its session's name, or for a
    transporter's entry its server's user, or host), its subject (None for a prebuilt message)
    and when it was queued (an aware datetime, in UTC)."""

    id: int
    user: str
    subject: Optional[str]
    queued: datetime.datetime


def _rc(rc: int) -> int:
    if rc < 0:
        raise from_last_error(rc)
    return rc


def set_outbox(directory: Optional[_check.PathArg]) -> None:
    """The global outbox: a directory (created, mode 0700, when missing) where every
    asynchronous send of a session or transporter without its own outbox is written before it
    is reported queued. Set it before making messages (their ids must not meet an old entry's).
    None turns it off; the entries stay on disk. Error EIO when it is not a writable
    directory."""
    _rc(lib.email_set_outbox(_check.optional_path(directory, "directory")))


def outbox_list(user: Optional[str] = None) -> List[OutboxEntry]:
    """The entries of the global outbox waiting for user (None: all), in directory order.
    Damaged entries met on the way are moved to its corrupt/ folder (outbox_corrupt_count()).
    InvalidArgumentError (EINVAL) without an outbox, Error EIO when it cannot be read."""
    name = _check.optional_string(user, "user")
    entries: List[OutboxEntry] = []

    def each(message_id: int, owner: Optional[bytes], subject: Optional[bytes], queued: int,
             _user_data: Any) -> None:
        when = datetime.datetime.fromtimestamp(queued, datetime.timezone.utc)
        entries.append(OutboxEntry(message_id, text(owner),
                                   None if subject is None else text(subject), when))

    callback = OUTBOX_CB(each)  # called during the call only, on this thread
    _rc(lib.email_outbox_list(name, callback, None))
    return entries


def resume_flags(resend_unknown: bool, drop_unknown: bool) -> int:
    """The flags of a resume: what becomes of the entries whose end of data went unanswered
    (sent again, or reported EUNKNOWN and removed; neither: reported EUNKNOWN and kept)."""
    if _check.boolean(resend_unknown, "resend_unknown") and \
            _check.boolean(drop_unknown, "drop_unknown"):
        raise ValueError("resend_unknown and drop_unknown exclude each other")
    return (_RESEND_UNKNOWN if resend_unknown else 0) | (_DROP_UNKNOWN if drop_unknown else 0)


def outbox_resume(user: str, resend_unknown: bool = False, drop_unknown: bool = False) -> int:
    """Queues, oldest first, the entries of the global outbox left by the named session user
    (which must be open, on whatever server it now has) that no other thread or process holds;
    returns how many it took (those reported EUNKNOWN included).

    Each keeps its id: message_status(id) gives its outcome, the ids coming from outbox_list().
    An entry whose end of data went out without a reply is reported EUNKNOWN and kept, unless
    resend_unknown (sent again: maybe a duplicate) or drop_unknown (reported and removed).
    SessionError (ENOSESSION) when no such session is open, InvalidArgumentError without an
    outbox."""
    name = _check.string(user, "user")
    flags = resume_flags(resend_unknown, drop_unknown)
    count = _rc(lib.email_outbox_resume_ex(name, flags))
    _dispatch.run_waiting()
    return count


def outbox_corrupt_count() -> int:
    """How many damaged entries lie in the global outbox's corrupt/ folder (never sent; the
    program decides what to do with them). InvalidArgumentError without an outbox."""
    return _rc(lib.email_outbox_corrupt_count())
