"""The package's version, and the library major version its ctypes declarations were written for."""

__version__ = "1.1.0"
# The C API's major version these bindings declare (email_version() must start with it).
LIBRARY_MAJOR = 1
