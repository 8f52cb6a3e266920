"""Servers for the package's tests: the project's aiosmtpd server (tests/servers/smtpd.py), its
scripted faulty server (scripted.py), and throwaway certificates (tests/certs.sh).

Run by tests/python-check.sh with EMAILSESSION_LIBRARY naming the library just built. Every
server listens on 127.0.0.1 and stops when its stdin closes, so a crashed test leaves none
behind.
"""

import email
import email.policy
import json
import os
import pathlib
import socket
import subprocess

import pytest

TOP_SRCDIR = pathlib.Path(os.environ.get("EMAIL_TEST_SRCDIR",
                                         pathlib.Path(__file__).resolve().parents[3]))
SERVERS = pathlib.Path(os.environ.get("EMAIL_TEST_SERVERS", TOP_SRCDIR / "tests" / "servers"))
PYTHON3 = os.environ.get("PYTHON3", "/usr/bin/python3")


class Server:
    """A server process: port, and for smtpd.py the spool of what it accepted."""

    def __init__(self, script, args, workdir):
        self.workdir = workdir
        self.spool = workdir / "spool"
        self.record = workdir / "record"
        argv = [PYTHON3, str(SERVERS / script), "--port", "0"]
        argv += ["--spool", str(self.spool)] if script == "smtpd.py" else \
            ["--record", str(self.record)]
        self.proc = subprocess.Popen(argv + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{script} did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # EOF on stdin stops either server
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def messages(self):
        """[(envelope dict, email.message.EmailMessage)] in the order they were accepted."""
        if not self.spool.is_dir():
            return []
        out = []
        for meta in sorted(self.spool.glob("*.json")):
            raw = meta.with_suffix(".eml").read_bytes()
            out.append((json.loads(meta.read_text()),
                        email.message_from_bytes(raw, policy=email.policy.default)))
        return out


@pytest.fixture
def smtpd(tmp_path):
    """smtpd(*args) starts tests/servers/smtpd.py with those options."""
    started = []

    def start(*args):
        server = Server("smtpd.py", args, tmp_path / f"smtpd{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def scripted(tmp_path):
    """scripted(text) starts tests/servers/scripted.py playing that script."""
    started = []

    def start(script):
        workdir = tmp_path / f"scripted{len(started)}"
        workdir.mkdir()
        path = workdir / "script"
        path.write_text(script)
        server = Server("scripted.py", ["--script", str(path)], workdir)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dovecot(tmp_path, smtpd):
    """dovecot() starts dovecot's submission service (tests/servers/dovecot_submission.py:
    SCRAM-SHA-256 and SCRAM-SHA-1 accounts, password "pencil") relaying to a fresh smtpd.py;
    returns (its port, the relay). Skipped where dovecot is not installed."""
    started = []

    def start():
        if not os.path.exists(os.environ.get("DOVECOT", "/usr/sbin/dovecot")):
            pytest.skip("dovecot is not installed (tools/setup.sh installs it)")
        relay = smtpd()
        proc = subprocess.Popen([PYTHON3, str(SERVERS / "dovecot_submission.py"), "--port", "0",
                                 "--relay-port", str(relay.port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"dovecot_submission.py did not start: {line!r}")
        return int(line.split()[1]), relay

    yield start
    for proc in started:
        proc.stdin.close()  # EOF stops it, and dovecot with it
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A directory of test certificates (ca.pem, good.pem, self.pem... see tests/certs.sh)."""
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run(["sh", str(TOP_SRCDIR / "tests" / "certs.sh"), str(directory)], check=True)
    return directory


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 where nothing listens (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (the kernel's backlog) but never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def python_env():
    """The environment for a child interpreter that imports the package under test."""
    env = dict(os.environ)
    package_root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env
