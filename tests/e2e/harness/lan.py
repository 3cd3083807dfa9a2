"""A test LAN: a second network namespace, the GX's, joined to the test namespace by a
veth pair. Addresses are private and exist only inside these two namespaces."""

import subprocess
from pathlib import Path

from .procs import Service, log, wait_until

HOST_INTERFACE = "rc-lan"
GX_INTERFACE = "rc-gx"


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, timeout=10)


class TestLan:
    def __init__(self, work_dir: Path, host_address: str = "10.77.0.1",
                 gx_address: str = "10.77.0.2", prefix_length: int = 24):
        self.host_address = host_address
        self.gx_address = gx_address
        self.prefix_length = prefix_length
        # The namespace lives as long as this process; it is in the runner's PID
        # namespace, so it never outlives the run.
        work_dir.mkdir(parents=True, exist_ok=True)
        self.holder = Service("gx-namespace", ["unshare", "--net", "sleep", "infinity"],
                              work_dir / "gx-namespace.log")

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.holder.process.pid}/ns/net"

    def in_gx(self, argv: list[str]) -> list[str]:
        """The command line that runs `argv` inside the GX's namespace."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def start(self) -> None:
        self.holder.start()
        wait_until(lambda: Path(self.netns_path).exists() and self._namespace_differs(),
                   5, 0.05, "the GX network namespace")
        pid = str(self.holder.process.pid)
        run("ip", "link", "add", HOST_INTERFACE, "type", "veth", "peer", "name", GX_INTERFACE)
        run("ip", "link", "set", GX_INTERFACE, "netns", pid)
        run("ip", "addr", "add", f"{self.host_address}/{self.prefix_length}",
            "dev", HOST_INTERFACE)
        run("ip", "link", "set", HOST_INTERFACE, "up", "multicast", "on")
        run(*self.in_gx(["ip", "link", "set", "lo", "up"]))
        run(*self.in_gx(["ip", "addr", "add", f"{self.gx_address}/{self.prefix_length}",
                         "dev", GX_INTERFACE]))
        run(*self.in_gx(["ip", "link", "set", GX_INTERFACE, "up", "multicast", "on"]))
        run(*self.in_gx(["ip", "route", "add", "224.0.0.0/4", "dev", GX_INTERFACE]))
        log(f"test LAN up: {HOST_INTERFACE} {self.host_address} <-> "
            f"{GX_INTERFACE} {self.gx_address} (GX namespace)")

    def _namespace_differs(self) -> bool:
        own = Path("/proc/self/ns/net").resolve()
        return Path(self.netns_path).resolve() != own

    def stop(self) -> None:
        # Deleting the namespace (its last process ends) deletes the veth pair too.
        self.holder.stop(timeout=5)
