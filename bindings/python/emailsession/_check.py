"""Checks of the caller's arguments, made in Python before any C call.

A C string cannot hold a NUL (the library would see a shorter string than was given), a header
field must not hold CR or LF, and a wrong type must be a TypeError naming the argument rather
than whatever ctypes makes of it. Each check returns what the C call takes (UTF-8 bytes).
"""

import os
from typing import Any, Iterable, List, Optional, Union

PathArg = Union[str, "os.PathLike[str]"]


def _type_name(value: Any) -> str:
    return type(value).__name__


def string(value: Any, name: str, *, line: bool = True) -> bytes:
    """A str as UTF-8 bytes. line: one header line, so CR and LF are refused too."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_type_name(value)}")
    if "\0" in value:
        raise ValueError(f"{name} contains a NUL character")
    if line and ("\r" in value or "\n" in value):
        raise ValueError(f"{name} contains a line break (CR or LF)")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not valid Unicode text: {e.reason}") from None


def optional_string(value: Any, name: str, *, line: bool = True) -> Optional[bytes]:
    """string(), or None for None."""
    return None if value is None else string(value, name, line=line)


def path(value: Any, name: str) -> bytes:
    """A file name (str or os.PathLike) as the bytes the OS uses."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not {_type_name(value)}")
    raw = os.fsencode(value)
    if b"\0" in raw:
        raise ValueError(f"{name} contains a NUL character")
    return raw


def optional_path(value: Any, name: str) -> Optional[bytes]:
    """path(), or None for None."""
    return None if value is None else path(value, name)


def data(value: Any, name: str) -> bytes:
    """Bytes of an attachment or a prebuilt message (bytes, bytearray or memoryview)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes-like, not {_type_name(value)}")


def integer(value: Any, name: str, low: int, high: int) -> int:
    """An int (not a bool, not a float) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {_type_name(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


def boolean(value: Any, name: str) -> bool:
    """A bool (an int would hide a mistaken argument order)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {_type_name(value)}")
    return value


def addresses(value: Any, name: str) -> List[bytes]:
    """One address (str) or an iterable of them."""
    if isinstance(value, str):
        return [string(value, name)]
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a str or a list of str, not {_type_name(value)}")
    items = [string(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return items
