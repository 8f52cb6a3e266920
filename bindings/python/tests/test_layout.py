"""The ctypes structures have the C structures' layout: the size of each and the offset of every
field, measured by a C program compiled against the headers being tested. A struct that grew in C
(a field taken from reserved_) and not here would let the library write past Python's buffer."""

import ctypes
import os
import shutil
import subprocess

import pytest

from emailsession import _lib

STRUCTS = {"email_status_t": _lib.Status, "email_server_t": _lib.Server,
           "email_pop3_box_info_t": _lib.Pop3BoxInfo, "email_pop3_mail_info_t": _lib.Pop3MailInfo,
           "email_mailbox_result_t": _lib.MailboxResult, "email_imap_box_info_t": _lib.ImapBoxInfo,
           "email_imap_box_t": _lib.ImapBox}


def c_layout(tmp_path):
    srcdir = os.environ.get("EMAIL_TEST_SRCDIR")
    builddir = os.environ.get("EMAIL_TEST_BUILDDIR", srcdir)
    cc = os.environ.get("CC") or shutil.which("cc")
    if not srcdir or not cc:
        pytest.skip("needs EMAIL_TEST_SRCDIR and a C compiler (run through make check)")
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "emailsession.h"',
             "int main(void) {"]
    for cname, cls in STRUCTS.items():
        lines.append(f'printf("{cname} sizeof() %zu\\n", sizeof({cname}));')
        for field in cls._fields_:
            lines.append(f'printf("{cname} {field[0]} %zu\\n", offsetof({cname}, {field[0]}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run(cc.split() + [f"-I{srcdir}/include", f"-I{builddir}/include", "-o", str(exe),
                                 str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {tuple(line.split()[:2]): int(line.split()[2]) for line in out.splitlines()}


def test_ctypes_structures_match_the_c_headers(tmp_path):
    c = c_layout(tmp_path)
    for cname, cls in STRUCTS.items():
        assert ctypes.sizeof(cls) == c[(cname, "sizeof()")], f"sizeof({cname})"
        for field in cls._fields_:
            assert getattr(cls, field[0]).offset == c[(cname, field[0])], f"{cname}.{field[0]}"
