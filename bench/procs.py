"""Processes under test and what /proc reports about them.

Every process listens on or connects to 127.0.0.1 only. Brokers are real Mosquitto
instances on free ports, and the simulated GX and the bridge are the release binary.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=5.0):
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing accepted connections on 127.0.0.1:{port} within {timeout} s")


def child_env(extra=None):
    """Return the environment for children plus `extra`, without the Supervisor's token
    and the bridge's own variables, so no child sends requests to a Supervisor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISOR", "ROAMCORE_"))}
    env.update(extra or {})
    return env


def mosquitto_binary():
    for candidate in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("mosquitto")
    if not found:
        raise FileNotFoundError("mosquitto not found: install the Debian package mosquitto")
    return found


class Output:
    """Lines a child writes, collected by a thread with the time each arrived."""

    def __init__(self, stream):
        self.lines = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append((time.monotonic(), line))

    def snapshot(self):
        with self._lock:
            return list(self.lines)

    def wait_for(self, predicate, timeout, after=0.0):
        """Return the first line arriving at or after `after` for which `predicate` is
        true, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for at, line in self.snapshot():
                if at >= after and predicate(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


class Child:
    """A started process, its output and the /proc figures the benchmark reads."""

    def __init__(self, name, argv, env=None, stdin=False):
        self.name = name
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
        )
        self.pid = self.proc.pid
        self.output = Output(self.proc.stdout)

    def send(self, line):
        """Write one control line to the child's standard input."""
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=5.0):
        """Send SIGTERM, wait, and SIGKILL when that was not enough."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.05)

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def thread_cpu_seconds(self):
        return thread_cpu_seconds(self.pid)

    def rss_bytes(self):
        return rss_bytes(self.pid)

    def context_switches(self):
        return context_switches(self.pid)


def cpu_seconds(pid):
    """User plus system CPU time of all threads of `pid`, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14 and stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid):
    """CPU time of the live threads of `pid` in nanosecond resolution, from
    /proc/<pid>/task/*/schedstat, and the set of thread ids it covers. Unlike
    /proc/<pid>/stat (10 ms ticks) it resolves the tiny figures of an idle process, but
    it misses threads that have exited, so compare only samples with the same threads."""
    total = 0
    tids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
            tids.append(task)
        except FileNotFoundError:
            continue
    return total / 1e9, frozenset(tids)


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def context_switches(pid):
    """Voluntary plus involuntary context switches summed over every thread of `pid`."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets():
    """Map inode -> (local port, remote port, tx queue bytes, rx queue bytes) for IPv4."""
    sockets = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local_port = int(parts[1].split(":")[1], 16)
            remote_port = int(parts[2].split(":")[1], 16)
            tx_queue, rx_queue = (int(x, 16) for x in parts[4].split(":"))
            sockets[parts[9]] = (local_port, remote_port, tx_queue, rx_queue)
    return sockets


def queued_bytes(pid, broker_port, towards_broker=False):
    """Bytes on their way between the broker and `pid` inside the kernel, over every
    connection that `pid` has to `broker_port`. By default the direction is from the
    broker to `pid` (the client socket's receive queue plus the broker socket's send
    queue), and a consumer that keeps up keeps this near zero. With `towards_broker`,
    the direction is from `pid` to the broker, which grows when the broker falls behind
    a publisher."""
    sockets = tcp_sockets()
    local_ports = []
    total = 0
    for inode in socket_inodes(pid):
        entry = sockets.get(inode)
        if entry and entry[1] == broker_port:
            local_ports.append(entry[0])
            total += entry[2] if towards_broker else entry[3]
    for local_port, remote_port, tx_queue, rx_queue in sockets.values():
        if local_port == broker_port and remote_port in local_ports:
            total += rx_queue if towards_broker else tx_queue
    return total


class Broker:
    """A Mosquitto broker on a free 127.0.0.1 port with $SYS updated every second."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"roamcore-bench-{name}-")
        conf = Path(self.dir) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "sys_interval 1\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        self.child = Child(f"mosquitto-{name}", [mosquitto_binary(), "-c", str(conf)])
        wait_for_port(self.port)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.child.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
