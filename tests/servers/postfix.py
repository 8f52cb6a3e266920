#!/usr/bin/python3
"""A private postfix instance for the emailsession integration tests.

Postfix's smtpd listens on 127.0.0.1 and relays everything it accepts at once to the project's
aiosmtpd (smtpd.py, started here with --spool DIR), so the tests read what postfix delivered
exactly as they read smtpd.py's spool. Everything lives in a temporary folder (its own
config_directory, queue_directory, data_directory and maillog_file): /etc/postfix, the system's
queue and port 25 are never touched, and the folder is removed on exit (by a guardian process
if this script is killed). The next hop offers PIPELINING, DSN and SMTPUTF8, so postfix relays
NOTIFY/ORCPT/RET/ENVID and UTF-8 addresses as it received them.

Like smtpd.py: prints "PORT <n>" once postfix accepts connections, stops everything on
SIGTERM/SIGINT or when its stdin (a pipe, socket or tty) reaches EOF. Needs root (postfix's
master runs as root and drops to mail_owner); otherwise exits with status 77 (a skip).
Run with --help for the options.
"""

import argparse
import contextlib
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
POSTFIX = "/usr/sbin/postfix"
SKIP = 77
START_TIMEOUT = 8.0  # within the harness's 10 s, so that our reason reaches its stderr


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="smtpd's port; 0 picks a free one")
    p.add_argument("--spool", metavar="DIR", required=True,
                   help="where the next hop (smtpd.py) writes the messages postfix relayed")
    p.add_argument("--next-hop-arg", metavar="ARG", action="append", default=[],
                   help="an extra option for smtpd.py (repeatable), e.g. --next-hop-arg=--log=FILE")
    p.add_argument("--reject-rcpt", metavar="ADDRESS", action="append", default=[],
                   help="smtpd refuses this recipient: 550 5.1.1 (repeatable)")
    p.add_argument("--hide", metavar="KEYWORD", action="append", default=[],
                   help="smtpd does not offer this EHLO keyword (smtpd_discard_ehlo_keywords; "
                        "repeatable), e.g. dsn, chunking, smtputf8")
    p.add_argument("--size", type=int, metavar="N", help="message_size_limit (default 50 MB)")
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"), help="offer STARTTLS")
    p.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="any other main.cf parameter (repeatable; wins over the defaults here)")
    p.add_argument("--maillog", metavar="FILE",
                   help="postfix's log (maillog_file; default: maillog beside the spool)")
    args = p.parse_args(argv)
    for item in args.set:
        if "=" not in item:
            p.error(f"--set {item!r}: expected NAME=VALUE")
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    with socket.socket() as s:
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        # smtpd answers with its greeting: the master and smtpd are both ready
        try:
            return s.recv(4).startswith(b"220")
        except OSError:
            return False


def start_next_hop(args):
    """smtpd.py with PIPELINING, DSN, SMTPUTF8 and 8BITMIME: what postfix's smtp client uses."""
    argv = [sys.executable, os.path.join(HERE, "smtpd.py"), "--port", "0",
            "--spool", args.spool, "--dsn", "--smtputf8", "--pipelining"] + args.next_hop_arg
    # it stops when its stdin closes: when this script exits, however it does
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"smtpd.py did not start: {line!r}")
    return proc, int(line.split()[1])


def inline_map(entries):
    return "inline:{ " + ", ".join(f"{{ {k} = {v} }}" for k, v in entries) + " }"


def main_cf(args, base, next_port):
    refuse = [(a, "550 5.1.1 refused by the test") for a in args.reject_rcpt]
    restrictions = "permit_mynetworks, reject_unauth_destination"
    if refuse:
        restrictions = f"check_recipient_access {inline_map(refuse)}, " + restrictions
    cf = {
        "compatibility_level": "3.6",
        "queue_directory": f"{base}/queue",
        "data_directory": f"{base}/data",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "multi_instance_enable": "no",
        "maillog_file": args.maillog,
        "maillog_file_prefixes": os.path.dirname(args.maillog),
        "syslog_name": "postfix-emailsession",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "myhostname": "postfix.test",
        "mydomain": "test",
        "mydestination": "",
        "mynetworks": "127.0.0.0/8",
        "relay_domains": "",
        "relayhost": f"[127.0.0.1]:{next_port}",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "smtpd_recipient_restrictions": restrictions,
        "smtpd_discard_ehlo_keywords": ", ".join(args.hide),
        "message_size_limit": str(args.size or 50 * 1024 * 1024),
        "smtputf8_enable": "yes",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "biff": "no",
        # no DNS at all: the next hop is an address, and nothing else is looked up
        "smtp_dns_support_level": "disabled",
        "smtp_host_lookup": "native",
        "smtpd_peername_lookup": "no",
        # deliver at once and keep going fast: no tarpitting of the test client, no backoff
        "in_flow_delay": "0",
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "1000",
        "smtpd_hard_error_limit": "1000",
        "smtpd_client_connection_count_limit": "0",
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "smtp_connection_cache_on_demand": "yes",
        "default_destination_concurrency_limit": "4",
        "default_destination_recipient_limit": "50",
        "smtp_tls_security_level": "none",
        # the relayed message is the accepted one: no 8bit-to-7bit rewriting on the way
        "disable_mime_output_conversion": "yes",
        "notify_classes": "",
    }
    if args.starttls:
        cf.update(smtpd_tls_security_level="may", smtpd_tls_cert_file=args.starttls[0],
                  smtpd_tls_key_file=args.starttls[1], smtpd_tls_loglevel="1")
    cf.update(item.split("=", 1) for item in args.set)
    return "".join(f"{k} = {v}\n" for k, v in cf.items())


# Only what a relay needs; chroot off everywhere (the queue is not a chroot jail).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def write_config(args, base, port, next_port):
    conf = os.path.join(base, "conf")
    os.makedirs(conf, exist_ok=True)
    # postfix(1) chdirs into it first thing
    os.makedirs(os.path.join(base, "queue"), 0o755, exist_ok=True)
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(main_cf(args, base, next_port))
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write(MASTER_CF.format(port=port))
    return conf


def postfix(conf, *command):
    """postfix(1) on our instance only; its output is returned for error messages."""
    r = subprocess.run([POSTFIX, "-c", conf] + list(command), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return r.returncode, r.stdout.decode(errors="replace")


def daemon_directory(conf):
    r = subprocess.run(["/usr/sbin/postconf", "-c", conf, "-h", "daemon_directory"],
                       stdout=subprocess.PIPE, check=True)
    return r.stdout.decode().strip()


def start_master(conf):
    """The master in the foreground as our child (not `postfix start`, which detaches it), so
    that we see it exit. `postfix check` first creates the instance's queue directories with
    their owners and modes (post-install create-missing)."""
    rc, out = postfix(conf, "check")
    if rc != 0:
        raise RuntimeError("postfix check failed:\n" + out)
    master = os.path.join(daemon_directory(conf), "master")
    return subprocess.Popen([master, "-c", conf, "-s"], stdin=subprocess.DEVNULL)


def wait_ready(master, port, log):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f"postfix master exited ({master.returncode}):\n" + tail(log))
        if accepts(port):
            return
        time.sleep(0.05)
    raise RuntimeError("postfix did not accept connections in time:\n" + tail(log))


def tail(path):
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return "".join(f.readlines()[-20:])
    return "(no maillog)"


def wait_for_stop():
    done = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.append(1))
    watch = [0] if stdin_watchable() else []
    while not done:
        try:
            ready, _, _ = select.select(watch, [], [], 0.5)
        except InterruptedError:
            continue
        if ready and not os.read(0, 4096):
            return


def stdin_watchable():
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)


def stop(proc):
    """SIGTERM (the master's handler stops its children, as `postfix stop` would), then
    SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    if proc.stdin:
        proc.stdin.close()
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_postfix(args, base, next_port):
    """Writes the instance and starts it on a free port (another may take the one picked before
    smtpd binds it: then a few more tries). Returns the master and the port."""
    for attempt in range(5):
        port = args.port or free_port()
        conf = write_config(args, base, port, next_port)
        master = start_master(conf)
        try:
            wait_ready(master, port, args.maillog)
            return master, port
        except RuntimeError:
            stop(master)
            if args.port or attempt == 4:
                raise


def run(args, base):
    os.chmod(base, 0o755)  # the daemons run as mail_owner and must reach the queue
    next_hop, master = None, None
    try:
        next_hop, next_port = start_next_hop(args)
        master, port = start_postfix(args, base, next_port)
        print(f"PORT {port}", flush=True)
        wait_for_stop()
    finally:
        stop(master)
        stop(next_hop)


def master_pid(base):
    with contextlib.suppress(OSError, ValueError), \
            open(os.path.join(base, "queue", "pid", "master.pid")) as f:
        return int(f.read().split()[0])
    return None


def alive(pid):
    """Running, not a zombie (an orphan's is reaped by whoever adopted it, in its own time)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def guard(base):
    """Forks a guardian that outlives this script: when it exits, even by SIGKILL (the harness
    does that to a script that ignores SIGTERM, and the master resets the parent-death signal
    when it changes credentials), the guardian stops the master still running and removes the
    folder."""
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(r)
        return w  # kept open, never written: its end is this process's end
    os.close(w)
    os.setsid()  # a signal to the test's process group is not for it
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # holds none of the harness's pipes
        os.dup2(devnull, fd)
    while os.read(r, 1):
        pass
    pid = master_pid(base)
    with contextlib.suppress(OSError):
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not alive(pid):
                    break
                time.sleep(0.05)
            else:
                os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)
    os._exit(0)


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("postfix.py: a private postfix needs root (its master runs as root): skipped",
              file=sys.stderr)
        return SKIP
    if not os.access(POSTFIX, os.X_OK):
        print(f"postfix.py: {POSTFIX} not found: skipped", file=sys.stderr)
        return SKIP
    os.makedirs(args.spool, exist_ok=True)
    spool = os.path.abspath(args.spool)
    args.maillog = os.path.abspath(args.maillog or os.path.join(os.path.dirname(spool), "maillog"))
    base = tempfile.mkdtemp(prefix="emailsession-postfix-")
    guard(base)
    try:
        run(args, base)
    except RuntimeError as e:
        print(f"postfix.py: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
