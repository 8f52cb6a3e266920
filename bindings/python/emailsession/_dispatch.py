"""Completions of asynchronous sends, delivered to asyncio futures.

The library queues its callbacks until someone calls email_dispatch() (EMAIL_CALLBACK_DISPATCH,
its default) and keeps email_dispatch_fd() readable meanwhile. An event loop that awaits a send
watches that descriptor with loop.add_reader and calls email_dispatch() when it is readable, so
the callbacks run on the loop's own thread: no thread per message, no polling.

The C callbacks are two module-level ctypes objects that live as long as the module, so no
callback can ever run after its ctypes wrapper was collected. Each pending send is an entry in
a table, keyed by a token (the callback's user_data) or by (session token, message id); the
entry holds the future and whatever must stay alive until the outcome came (the transporter).
"""

import asyncio
import collections
import itertools
import threading
import weakref
from typing import Any, Callable, Deque, Dict, Optional, Tuple, Union

from ._lib import MAILBOX_CB, RECEIVE_CB, SEND_CB, lib
from .errors import Error, Result, from_last_error, from_status, result_of

_lock = threading.Lock()
_tokens = itertools.count(1)
# token: (future, what stays alive until the outcome, the outcome's reader for receiving calls)
_by_token: Dict[int, Tuple["asyncio.Future[Any]", Any, Optional[Callable[..., Any]]]] = {}
_by_message: Dict[Tuple[int, int], Deque["asyncio.Future[Result]"]] = {}
_watching: "weakref.WeakSet[asyncio.AbstractEventLoop]" = weakref.WeakSet()
# Set at exit once the library is shut down: objects collected after that free nothing (a call
# would start the library again while the interpreter goes away).
exiting = False


def new_token() -> int:
    """A fresh user_data value (never 0: ctypes hands NULL over as None)."""
    return next(_tokens)


def _settle(future: "asyncio.Future[Result]", outcome: Union[Result, Error]) -> None:
    if future.done():  # cancelled by its awaiter; the message still had its outcome
        return
    if isinstance(outcome, Error):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _deliver(future: "asyncio.Future[Result]", message_id: int, status: Any) -> None:
    # The status lives during the callback only: read it into Python objects now.
    outcome = result_of(status, message_id) if status.contents.success else from_status(status)
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, outcome)
    except RuntimeError:  # the loop was closed before the outcome came: nobody awaits it
        pass


def _on_send(message_id: int, status: Any, user_data: Any) -> None:
    with _lock:
        entry = _by_token.pop(user_data or 0, None)
    if entry is not None:
        _deliver(entry[0], message_id, status)


def _on_session_send(message_id: int, status: Any, user_data: Any) -> None:
    key = (user_data or 0, message_id)
    with _lock:
        waiting = _by_message.get(key)
        future = waiting.popleft() if waiting else None
        if waiting is not None and not waiting:
            del _by_message[key]
    if future is not None:
        _deliver(future, message_id, status)


class _Resume:
    """The outcomes of one resume: handed to callback (may be None), counted until the number
    the resume took is known and reached; keep stays alive meanwhile (the transporter)."""

    def __init__(self, callback: Optional[Callable[[int, Union[Result, Error]], None]],
                 keep: Any) -> None:
        self.callback = callback
        self.keep = keep
        self.seen = 0
        self.expected: Optional[int] = None


_resumes: Dict[int, _Resume] = {}


def _on_resume(message_id: int, status: Any, user_data: Any) -> None:
    token = user_data or 0
    with _lock:
        entry = _resumes.get(token)
        if entry is None:
            return
        entry.seen += 1
        if entry.expected is not None and entry.seen >= entry.expected:
            del _resumes[token]
    if entry.callback is not None:
        ok = status.contents.success
        entry.callback(message_id, result_of(status, message_id) if ok else from_status(status))


def _post(future: "asyncio.Future[Any]", outcome: Any) -> None:
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, outcome)
    except RuntimeError:  # the loop was closed before the outcome came: nobody awaits it
        pass


def _on_receive(message: Optional[int], status: Any, user_data: Any) -> None:
    """A receiving call's outcome: the message (ours now) or None, or the call's Error."""
    with _lock:
        entry = _by_token.pop(user_data or 0, None)
    ok = status.contents.success
    if entry is None or not ok:
        if message:
            lib.email_message_free(message)
        if entry is not None:
            _post(entry[0], from_status(status))
        return
    convert = entry[2]
    if convert is None and message:
        lib.email_message_free(message)
    _post(entry[0], convert(message) if convert and message else None)


def _on_mailbox(result: Any, status: Any, user_data: Any) -> None:
    """A mailbox call's outcome, read now (the result lives during the callback only)."""
    with _lock:
        entry = _by_token.pop(user_data or 0, None)
    if entry is None:
        return
    convert = entry[2]
    ok = status.contents.success
    _post(entry[0], (convert(result.contents) if convert else None) if ok
          else from_status(status))


ON_SEND = SEND_CB(_on_send)
ON_RECEIVE = RECEIVE_CB(_on_receive)
ON_MAILBOX = MAILBOX_CB(_on_mailbox)
ON_SESSION_SEND = SEND_CB(_on_session_send)
ON_RESUME = SEND_CB(_on_resume)


def resume(start: Callable[[Any, int], int],
           callback: Optional[Callable[[int, Union[Result, Error]], None]], keep: Any) -> int:
    """Runs start(ON_RESUME, token), a resume whose outcomes go to callback(message_id,
    outcome); returns how many entries it took. The outcomes may come before start returns
    (another thread dispatching): they are counted from the first."""
    token = new_token()
    entry = _Resume(callback, keep)
    with _lock:
        _resumes[token] = entry
    taken = -1
    try:
        taken = start(ON_RESUME, token)
    finally:
        with _lock:
            entry.expected = max(taken, 0)  # a failed resume queued nothing
            if entry.seen >= entry.expected:
                _resumes.pop(token, None)
    if taken < 0:
        raise from_last_error(taken)
    return taken


def watch(loop: asyncio.AbstractEventLoop) -> None:
    """Makes loop run the library's callbacks whenever they wait (once per loop)."""
    if loop in _watching:
        return
    fd = lib.email_dispatch_fd()
    if fd < 0:
        raise from_last_error(fd)
    loop.add_reader(fd, run_waiting)
    _watching.add(loop)


def expect(token: int, keep: Any,
           convert: Optional[Callable[..., Any]] = None) -> "asyncio.Future[Any]":
    """A future for the call whose callback gets user_data token; keep stays alive with it;
    convert reads a receiving call's outcome (during the callback) into the future's value."""
    loop = asyncio.get_running_loop()
    watch(loop)
    future: "asyncio.Future[Any]" = loop.create_future()
    with _lock:
        _by_token[token] = (future, keep, convert)
    return future


async def queue(start: Callable[[int], int], keep: Any,
                convert: Optional[Callable[..., Any]] = None) -> Any:
    """start(token) queues a call whose callback gets user_data token; awaits its outcome."""
    token = new_token()
    future = expect(token, keep, convert)
    rc = start(token)
    if rc != 0:
        error = from_last_error(rc)
        forget(token)
        future.cancel()
        raise error
    return await future


def forget(token: int) -> None:
    """The send was refused before it was queued: its callback will never come."""
    with _lock:
        _by_token.pop(token, None)


def expect_message(session_token: int, send: Callable[[], int]) -> "asyncio.Future[Result]":
    """A future for a message that send() queues on an asynchronous session (send returns the
    message's id). The table is locked while it sends, so a thread that runs the callbacks
    meanwhile waits until the future is there to receive the outcome."""
    loop = asyncio.get_running_loop()
    watch(loop)
    future: "asyncio.Future[Result]" = loop.create_future()
    with _lock:
        message_id = send()
        _by_message.setdefault((session_token, message_id), collections.deque()).append(future)
    return future


def run_waiting() -> None:
    """Runs the callbacks that wait: for a watching loop, and after each synchronous call so
    that a program without an event loop gets its log callback's lines."""
    lib.email_dispatch()



def at_exit() -> None:
    """Delivers what is queued and stops the library's thread while the interpreter is whole,
    then runs the last callbacks (log lines)."""
    global exiting
    lib.email_shutdown()
    exiting = True
    run_waiting()
