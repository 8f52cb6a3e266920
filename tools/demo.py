#!/usr/bin/python3
"""make demo: start aiosmtpd on a free loopback port, send with the library, show the result.

Usage: demo.py PATH-TO-send-demo
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "..", "tests", "servers", "smtpd.py")


def main():
    demo = sys.argv[1]
    spool = tempfile.mkdtemp(prefix="emailsession-demo-")
    server = subprocess.Popen(
        ["/usr/bin/python3", SERVER, "--host", "127.0.0.1", "--port", "0",
         "--spool", spool, "--auth", "demo:s3cret-pass"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            sys.exit("demo: the local SMTP server did not start")
        port = line[1]
        print(f"A local SMTP server (aiosmtpd, AUTH PLAIN/LOGIN) listens on 127.0.0.1:{port}\n",
              flush=True)
        rc = subprocess.call([demo, "127.0.0.1", port, "demo", "s3cret-pass",
                              "Demo Sender <sender@example.org>",
                              "Ada Lovelace <ada@example.org>"])
        eml = [f for f in sorted(os.listdir(spool)) if f.endswith(".eml")]
        if eml:
            print("\nThe message as the server received it:\n")
            with open(os.path.join(spool, eml[0]), "rb") as f:
                sys.stdout.write(f.read().decode("utf-8", "replace").replace("\r\n", "\n"))
        sys.exit(rc)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(spool, ignore_errors=True)


if __name__ == "__main__":
    main()
