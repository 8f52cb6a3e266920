#!/usr/bin/python3
"""Python smtplib side of the benchmarks (standard library only).

  py_bench.py warm PORT N MSG        one smtplib.SMTP object, sendmail per message
  py_bench.py big-file PORT FILE     email.message.EmailMessage with FILE attached, send_message
  py_bench.py big-mime PORT FILE     FILE is a prebuilt message, sendmail from memory

Prints one "RESULT key=value ..." line like the C drivers; failures go to stderr as "FAIL ...".
"""
import email.message
import os
import smtplib
import sys
import time

HOST = "127.0.0.1"
FROM = "bench@example.test"
RCPT = "sink@example.test"


def maxrss_kb():
    """Peak RSS in KiB: VmHWM, since ru_maxrss keeps the forking parent's peak across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def warm(port, n, msgfile):
    with open(msgfile, "rb") as f:
        msg = f.read()
    s = smtplib.SMTP(HOST, port, timeout=60)
    s.sendmail(FROM, [RCPT], msg)  # warm-up: EHLO and the first transaction are not timed
    t0 = time.monotonic()
    for _ in range(n):
        refused = s.sendmail(FROM, [RCPT], msg)
        if refused:
            raise RuntimeError("recipients refused: %r" % refused)
    secs = time.monotonic() - t0
    s.quit()
    print("RESULT msgs=%d secs=%.6f rate=%.2f" % (n, secs, n / secs))


def big_file(port, path):
    size = os.path.getsize(path)
    s = smtplib.SMTP(HOST, port, timeout=60)
    s.ehlo()
    t0 = time.monotonic()
    # the standard library's composer has no streaming: the file and its base64 live in memory
    m = email.message.EmailMessage()
    m["From"] = "Bench <%s>" % FROM
    m["To"] = RCPT
    m["Subject"] = "emailsession benchmark"
    m.set_content("Hello,\n\nThe attachment follows.\n")
    with open(path, "rb") as f:
        m.add_attachment(f.read(), maintype="application", subtype="octet-stream",
                         filename="big.bin")
    s.send_message(m)
    secs = time.monotonic() - t0
    s.quit()
    print("RESULT bytes=%d secs=%.6f mbps=%.2f maxrss_kb=%d"
          % (size, secs, size / 1e6 / secs, maxrss_kb()))


def big_mime(port, path):
    with open(path, "rb") as f:
        msg = f.read()
    s = smtplib.SMTP(HOST, port, timeout=60)
    s.ehlo()
    t0 = time.monotonic()
    s.sendmail(FROM, [RCPT], msg)
    secs = time.monotonic() - t0
    s.quit()
    print("RESULT bytes=%d secs=%.6f mbps=%.2f maxrss_kb=%d"
          % (len(msg), secs, len(msg) / 1e6 / secs, maxrss_kb()))


def main():
    a = sys.argv[1:]
    try:
        if len(a) == 4 and a[0] == "warm":
            warm(int(a[1]), int(a[2]), a[3])
        elif len(a) == 3 and a[0] == "big-file":
            big_file(int(a[1]), a[2])
        elif len(a) == 3 and a[0] == "big-mime":
            big_mime(int(a[1]), a[2])
        else:
            sys.exit("FAIL usage: py_bench.py warm PORT N MSG | big-file|big-mime PORT FILE")
    except Exception as e:  # one line the runner can quote, not a traceback
        sys.exit("FAIL %s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
