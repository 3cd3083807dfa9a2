"""Scenario: Home Assistant's own victron_gx integration discovers the GX by SSDP."""

from pathlib import Path

from harness.lan import TestLan
from harness.procs import Service, log
from harness.supervisor import SupervisorStandIn

from .common import BOAT_PORTAL_ID, running_stack, wait_settled

GX_SSDP = Path(__file__).resolve().parents[1] / "gx_ssdp.py"
SUPERVISOR_PORT = 8099


def victron_flows(stack) -> list[dict]:
    (flows,) = stack.ha.ws({"type": "config_entries/flow/progress"})
    return [f for f in flows if f.get("handler") == "victron_gx"]


def victron_entries(stack) -> list[dict]:
    return stack.ha.api("GET", "/api/config/config_entries/entry?domain=victron_gx")


def victron_gx_discovery(env, checks):
    """victron_gx discovers the simulated GX by SSDP; once the bridge runs, that discovery
    is not left for the owner to confirm into a duplicate set of entities.

    The GX's SSDP announcement comes from tests/e2e/gx_ssdp.py on a test LAN (a veth pair
    into a second network namespace), and Home Assistant runs with `ssdp:` configured. The
    bridge runs as the add-on does, reaching Home Assistant through a stand-in for the
    Supervisor's Core proxy (harness/supervisor.py).
    """
    lan = TestLan(env.out / "victron_gx-lan")
    ssdp = None
    try:
        with running_stack(env, "victron_gx", ha_extra_config="ssdp:\n", lan=lan) as stack:
            lan.start()
            ssdp = Service("gx-ssdp", lan.in_gx(["python3", str(GX_SSDP), lan.gx_address,
                                                 BOAT_PORTAL_ID]),
                           stack.dir / "gx-ssdp.log")
            ssdp.start()
            stack.start_home_assistant()

            # Precondition: Home Assistant discovers the GX, or this scenario proves nothing.
            checks.eventually(lambda: victron_flows(stack), 60,
                              "Home Assistant's victron_gx discovers the simulated GX")
            log(f"victron_gx flows before the bridge runs: {victron_flows(stack)}")

            # The bridge ignores the discovery through the Supervisor's Core proxy, so it runs
            # as the add-on does, with a stand-in for the Supervisor.
            supervisor = SupervisorStandIn(SUPERVISOR_PORT, stack.ha.http_port, stack.ha.token)
            supervisor.start()
            stack.bridge_env = supervisor.bridge_environment()
            stack.start_simulator("boat")
            stack.start_bridge()
            wait_settled(stack)

            def discovery_handled() -> bool:
                pending = victron_flows(stack)
                entries = [e for e in victron_entries(stack) if e.get("source") != "ignore"]
                return not pending and not entries

            checks.eventually(discovery_handled, 30,
                              "no victron_gx discovery waits for the owner and no victron_gx "
                              "entry exists besides an ignored one")
            log(f"victron_gx flows: {victron_flows(stack)}; entries: {victron_entries(stack)}")
            log(f"requests to the Supervisor stand-in: {supervisor.requests}")
            supervisor.stop()
    finally:
        if ssdp:
            ssdp.stop()
        lan.stop()
