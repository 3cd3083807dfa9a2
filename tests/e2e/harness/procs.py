"""Child processes of the runner: started with their output in a log file, stopped by pid.

The runner is the first process of its own PID namespace (scripts/e2e-ha starts it with
`unshare --pid --fork --kill-child`), so whatever a test leaves running is killed by the
kernel when the runner exits, even after a crash.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Service:
    """One long-running child process with its output appended to `log_path`."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
                 stdin_pipe: bool = False):
        """With `stdin_pipe`, send_line() writes to the process's standard input."""
        self.name = name
        self.stdin_pipe = stdin_pipe
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.process.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            output.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {self.argv}\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def send_line(self, line: str) -> None:
        if not self.running() or self.process.stdin is None:
            raise RuntimeError(f"{self.name} is not running with a standard-input pipe")
        self.process.stdin.write((line + "\n").encode())
        self.process.stdin.flush()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Sends `sig`, waits up to `timeout` s, then SIGKILLs. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.process.pid}) still runs {timeout} s after "
                    f"signal {sig}; sending SIGKILL")
                self.process.kill()
                self.process.wait()
        status = self.process.returncode
        self.process = None
        return status

    def pause(self) -> None:
        """Freezes the process (SIGSTOP): its sockets stay open but nothing responds, as
        when a network cable is pulled."""
        if self.running():
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Stops the process with SIGKILL, as a power cut would."""
        self.stop(timeout=5.0, sig=signal.SIGKILL)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Polls `condition()` until it returns a truthy value; raises TimeoutError after
    `timeout` s, naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
