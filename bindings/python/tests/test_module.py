"""Module-level functions, constants, loading the library, and the command line."""

import ctypes
import os
import subprocess
import sys

import pytest

import emailsession as es
from emailsession._lib import lib


def test_version_is_the_running_library_and_the_package():
    assert es.version() == lib.email_version().decode()
    # built from the same tree: a release bumps both
    assert es.version() == es.__version__


def test_command_line_version(python_env):
    out = subprocess.run([sys.executable, "-m", "emailsession", "--version"], env=python_env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"emailsession {es.__version__} (libemailsession {es.version()})"


def test_error_codes_match_the_header():
    for code in es.ErrorCode:
        assert lib.email_error_name(code).decode() == "EMAIL_" + code.name
        if code:
            assert lib.email_strerror(code).decode() != "unknown error"
    # one past the last code is unknown to the library: the table is complete
    last = min(es.ErrorCode)
    assert lib.email_strerror(last - 1).decode() == "unknown error"
    assert es.EAUTH == -11 and es.EUNKNOWN == es.ErrorCode.EUNKNOWN


def test_constants_match_the_header():
    assert (es.SECURITY_STARTTLS, es.SECURITY_TLS, es.SECURITY_NONE) == (0, 1, 2)
    assert (es.OPTION_DEFAULT, es.OPTION_STARTTLS, es.OPTION_TLS) == (0, 1, 2)
    assert (es.OPTION_ALLOW_INSECURE_AUTH, es.OPTION_NO_VERIFY) == (0x100, 0x200)
    assert es.PROTOCOL_SMTPS == es.OPTION_STARTTLS
    assert (es.PENDING, es.SENT, es.ERROR) == (1, 2, 3)


def test_timeout_set_and_checked():
    try:
        es.set_timeout(7)
        assert es.get_timeout() == 7
        with pytest.raises(ValueError, match="seconds must be between 1 and"):
            es.set_timeout(0)
        with pytest.raises(TypeError, match="seconds must be an int, not str"):
            es.set_timeout("60")
        with pytest.raises(TypeError, match="seconds must be an int, not float"):
            es.set_timeout(1.5)
        assert es.get_timeout() == 7
    finally:
        es.set_timeout(60)


def test_log_file_and_ca_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "log.txt"
    with pytest.raises(es.Error) as info:
        es.set_log(missing)
    assert info.value.code == es.EIO and str(missing) in info.value.text
    with pytest.raises(TypeError, match="path must be a path"):
        es.set_log(42)
    with pytest.raises(ValueError, match="path contains a NUL"):
        es.set_ca_file("a\0b")
    es.set_ca_file(None)


def test_log_callback_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match="callback must be callable or None, not str"):
        es.set_log_callback("print")


def test_message_status_of_an_unknown_id():
    with pytest.raises(es.Error) as info:
        es.message_status(2**63)
    assert info.value.code == es.ENOTFOUND
    with pytest.raises(ValueError, match="message_id must be between"):
        es.message_status(-1)


def test_explicit_library_path_that_does_not_load(python_env, tmp_path):
    stderr = _import_error(python_env, tmp_path / "libnothere.so")
    assert "ImportError: emailsession: cannot load libemailsession" in stderr
    assert "libnothere.so" in stderr and "EMAILSESSION_LIBRARY" in stderr


def _fake_library(tmp_path, version):
    """A shared library with only email_version(), answering version."""
    source = tmp_path / "fake.c"
    source.write_text(f'const char *email_version(void) {{ return "{version}"; }}\n')
    fake = tmp_path / "libfake.so"
    cc = subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-o", str(fake),
                         str(source)], capture_output=True, text=True)
    if cc.returncode != 0:
        pytest.skip(f"no C compiler for the fake library: {cc.stderr}")
    return fake


def _import_error(python_env, library):
    python_env["EMAILSESSION_LIBRARY"] = str(library)
    run = subprocess.run([sys.executable, "-c", "import emailsession"], env=python_env,
                         capture_output=True, text=True)
    assert run.returncode != 0
    return run.stderr


def test_a_library_of_another_major_version_is_refused(python_env, tmp_path):
    stderr = _import_error(python_env, _fake_library(tmp_path, "99.0.0"))
    assert "libfake.so is version 99.0.0; this package needs 1.x" in stderr


def test_a_library_without_a_function_is_refused(python_env, tmp_path):
    stderr = _import_error(python_env, _fake_library(tmp_path, "1.0.0"))
    assert "(version 1.0.0) has no email_strerror: the library is too old" in stderr


def test_errors_pickle_with_their_fields():
    import pickle
    e = es.RefusedError(es.ERECIPIENTS, "every recipient was refused", 550, "5.1.1",
                        [es.Refused("a@b", 550, "no")], [es.Cause(-7, "x", "transport")])
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is es.RefusedError
    assert (back.code, back.status, back.enhanced_code, back.refused, back.causes) == \
        (e.code, 550, "5.1.1", e.refused, e.causes)


def test_uses_only_the_public_api():
    declared = [name for name in dir(lib) if name.startswith("email")]
    assert declared and all(name.startswith("email_") and not name.startswith("email__")
                            for name in declared)
    assert isinstance(lib, ctypes.CDLL) and not isinstance(lib, ctypes.PyDLL)
