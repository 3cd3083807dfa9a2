"""A real Mosquitto broker (the host's /usr/sbin/mosquitto) inside the test namespace."""

import shutil
from pathlib import Path

from .procs import Service, log, port_open, wait_until


def mosquitto_binary() -> str:
    for candidate in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("mosquitto")
    if not found:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    return found


class Mosquitto:
    """Anonymous broker without persistence: a restart loses every retained message, as
    a power cut of the machine running it would."""

    def __init__(self, name: str, port: int, work_dir: Path, bind: str = "127.0.0.1",
                 wrap=lambda argv: argv):
        """`wrap` turns the broker's command line into the one to run, for example to
        start it inside another network namespace."""
        self.name = name
        self.port = port
        self.bind = bind
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = work_dir / f"{name}.conf"
        self.config_path.write_text(
            f"listener {port} {bind}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
            "max_queued_messages 100000\n"
            "message_size_limit 0\n"
        )
        self.wrap = wrap
        self.service = Service(name, [mosquitto_binary(), "-c", str(self.config_path)],
                               work_dir / f"{name}.log")

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "") else self.bind
        return f"{host}:{self.port}"

    def start(self) -> None:
        self.service.argv = self.wrap([mosquitto_binary(), "-c", str(self.config_path)])
        self.service.start()
        host = self.address.rsplit(":", 1)[0]
        wait_until(lambda: port_open(self.port, host), 10, 0.05,
                   f"{self.name} to listen on {self.address}")
        log(f"{self.name}: mosquitto listening on {self.address}")

    def stop(self) -> None:
        if not self.service.running():
            return
        self.service.stop(timeout=10)
        log(f"{self.name}: mosquitto stopped (retained messages are lost)")

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.service.running()
