"""A real Home Assistant Core, run from the Debian chroot, driven through its own APIs.

Facts this relies on (Home Assistant Core 2026.11.0):
- `http:` in configuration.yaml is migrated into `.storage/http` as a pending trial that
  is reverted, with a restart onto 0.0.0.0:8123, unless confirmed in the UI within five
  minutes. A version-1 `.storage/http` written before the first start is migrated by
  Home Assistant itself and binds only 127.0.0.1.
- The MQTT client logs `MQTT client initialized, birth message sent` at INFO once it has
  subscribed to every discovery topic, so that line marks "ready for discovery".
- Home Assistant renames home-assistant.log to home-assistant.log.1 on every start.
"""

import json
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .procs import Service, log, wait_until
from .websocket import WebSocket

CHROOT_VENV = "/opt/ha-venv"
CHROOT_STATE = "/e2e/ha"  # where the state directory is bind-mounted inside the chroot
BIRTH_LINE = "MQTT client initialized, birth message sent"

CONFIGURATION_YAML = """\
# Written by the end-to-end harness. No default_config: only what the tests need.
homeassistant:
  name: RoamCore e2e
  latitude: 52.3731
  longitude: 4.8922
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  currency: EUR
  language: en

# No http: section on purpose (see the module docstring of harness/homeassistant.py).

logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
    homeassistant.setup: info
    homeassistant.bootstrap: info
    homeassistant.requirements: info
    homeassistant.util.package: info
    # ffmpeg is not installed; only camera streams and TTS use it.
    haffmpeg: critical
{extra}"""

# One log record: "2026-12-04 19:40:01.123 WARNING (MainThread) [logger.name] message".
LOG_RECORD = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\(([^)]*)\) \[([^\]]+)\] (.*)$"
)


class HomeAssistantError(Exception):
    pass


class HomeAssistant:
    def __init__(self, chroot: Path, state_dir: Path, http_port: int = 8123,
                 extra_config: str = "", hass_args: list[str] | None = None):
        self.chroot = chroot
        self.state_dir = state_dir
        self.config_dir = state_dir / "config"
        self.http_port = http_port
        self.extra_config = extra_config
        self.base_url = f"http://127.0.0.1:{http_port}"
        self.secrets_path = state_dir / "secrets.json"
        self.token: str | None = None
        self.login_tokens: dict = {}
        self.start_count = 0
        self.service = Service(
            "home-assistant",
            [
                "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                # Private /proc, /sys and /dev mounts vanish with the process; the state
                # directory appears at /e2e/ha inside the chroot.
                'root="$1"; state="$2"; shift 2; '
                'mount -t proc proc "$root/proc" || exit 90; '
                'mount --bind -o ro /sys "$root/sys" || exit 91; '
                'mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm" || exit 92; '
                'mkdir -p "$root' + CHROOT_STATE + '"; '
                'mount --bind "$state" "$root' + CHROOT_STATE + '" || exit 93; '
                'exec chroot "$root" /usr/bin/env -i '
                "PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TZ=UTC "
                '"$@"',
                "sh", str(chroot), str(state_dir),
                f"{CHROOT_VENV}/bin/hass", "-c", f"{CHROOT_STATE}/config", *(hass_args or []),
            ],
            state_dir / "hass.stdout.log",
        )

    # --- files -----------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.config_dir / "home-assistant.log"

    def write_config(self) -> None:
        storage = self.config_dir / ".storage"
        storage.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            CONFIGURATION_YAML.format(extra=self.extra_config))
        http_store = storage / "http"
        if not http_store.exists():
            http_store.write_text(json.dumps({
                "version": 1,
                "minor_version": 1,
                "key": "http",
                "data": {"server_host": ["127.0.0.1"], "server_port": self.http_port},
            }))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self, min_level: str = "WARNING") -> list[dict[str, str]]:
        """Records of the current log at `min_level` or above, each with its traceback."""
        order = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
        records: list[dict[str, str]] = []
        for line in self.log_text().splitlines():
            match = LOG_RECORD.match(line)
            if match:
                time_text, level, _thread, logger, message = match.groups()
                records.append({"time": time_text, "level": level, "logger": logger,
                                "message": message, "text": line})
            elif records:
                records[-1]["text"] += "\n" + line
                records[-1]["message"] += "\n" + line
        threshold = order.index(min_level)
        return [r for r in records if order.index(r["level"]) >= threshold]

    # --- process -----------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        self.write_config()
        started = time.monotonic()
        self.service.start()
        self.start_count += 1

        def http_up() -> bool:
            if not self.service.running():
                raise HomeAssistantError(
                    "Home Assistant exited while starting:\n" + self.service.log_text()[-3000:])
            text = self.log_text()
            if "Attempting install of" in text or "core failed to initialize" in text:
                raise HomeAssistantError(
                    "Home Assistant tried to pip-install a requirement, which cannot work "
                    "without network; add the integration to EXTRA_INTEGRATIONS in "
                    "tests/e2e/ha_requirements.py:\n"
                    + "\n".join(l for l in text.splitlines()
                                if "Attempting install" in l or "ERROR" in l)[:3000])
            try:
                with urllib.request.urlopen(self.base_url + "/manifest.json", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(http_up, timeout, 0.25, "Home Assistant's HTTP server")
        log(f"home-assistant: HTTP up after {time.monotonic() - started:.1f} s")

    def stop(self, timeout: float = 90) -> None:
        started = time.monotonic()
        self.service.stop(timeout=timeout)
        log(f"home-assistant: stopped in {time.monotonic() - started:.1f} s")

    def running(self) -> bool:
        return self.service.running()

    # --- HTTP ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                form: dict | None = None) -> tuple[int, Any]:
        headers = {}
        data = None
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, result = self.request(method, path, body)
        if status >= 400:
            raise HomeAssistantError(f"{method} {path} failed with HTTP {status}: {result}")
        return result

    # --- WebSocket -------------------------------------------------------------------------

    def ws(self, *messages: dict, token: str | None = None) -> list[Any]:
        """Sends each command on one authenticated WebSocket; returns their results."""
        socket = WebSocket("127.0.0.1", self.http_port, "/api/websocket")
        try:
            hello = socket.receive_json()
            if hello.get("type") != "auth_required":
                raise HomeAssistantError(f"unexpected WebSocket greeting: {hello}")
            socket.send_json({"type": "auth", "access_token": token or self.token})
            answer = socket.receive_json()
            if answer.get("type") != "auth_ok":
                raise HomeAssistantError(f"WebSocket authentication failed: {answer}")
            results = []
            for number, message in enumerate(messages, 1):
                socket.send_json({"id": number, **message})
                while True:
                    reply = socket.receive_json()
                    if reply.get("id") == number and reply.get("type") == "result":
                        break
                if not reply.get("success"):
                    raise HomeAssistantError(
                        f"WebSocket command {message['type']} failed: {reply.get('error')}")
                results.append(reply.get("result"))
            return results
        finally:
            socket.close()

    # --- users and tokens --------------------------------------------------------------

    def _secrets(self) -> dict:
        if self.secrets_path.exists():
            return json.loads(self.secrets_path.read_text())
        return {}

    def authenticate(self) -> dict:
        """Creates the owner through onboarding on a fresh instance, or logs in with the
        saved password; keeps a long-lived token in self.token. Returns the OAuth tokens
        of this login (access and refresh token), which the browser needs."""
        saved = self._secrets()
        saved.setdefault("username", "e2e")
        saved.setdefault("password", secrets.token_urlsafe(18))
        self.secrets_path.write_text(json.dumps(saved))
        self.secrets_path.chmod(0o600)
        client_id = self.base_url + "/"

        status, steps = self.request("GET", "/api/onboarding", token="")
        user_step_done = status != 200 or any(
            s.get("step") == "user" and s.get("done") for s in steps)
        if not user_step_done:
            status, result = self.request("POST", "/api/onboarding/users", {
                "client_id": client_id, "name": "E2E Owner", "username": saved["username"],
                "password": saved["password"], "language": "en"}, token="")
            if status != 200:
                raise HomeAssistantError(f"onboarding (user step) failed: HTTP {status} {result}")
            code = result["auth_code"]
            log("home-assistant: owner user created through onboarding")
        else:
            code = self._login(client_id, saved)

        status, tokens = self.request("POST", "/auth/token", token="", form={
            "grant_type": "authorization_code", "code": code, "client_id": client_id})
        if status != 200:
            raise HomeAssistantError(f"POST /auth/token failed: HTTP {status} {tokens}")
        if not saved.get("token") or not self._token_valid(saved["token"]):
            (saved["token"],) = self.ws({
                "type": "auth/long_lived_access_token",
                "client_name": f"e2e-{int(time.time())}", "lifespan": 365},
                token=tokens["access_token"])
            self.secrets_path.write_text(json.dumps(saved))
        self.token = saved["token"]
        tokens["client_id"] = client_id
        self.login_tokens = tokens
        return tokens

    def finish_onboarding(self) -> None:
        """Completes the onboarding steps after the user step, so the web UI opens its
        pages instead of the onboarding wizard. The core_config step starts config flows
        for google_translate, met, radio_browser and shopping_list. Home Assistant then
        tries to pip-install their requirements, which fails without network and logs
        errors, so no entry is made. Only the demo calls this."""
        status, steps = self.request("GET", "/api/onboarding", token="")
        if status != 200:
            return  # onboarding is finished
        done = {s["step"] for s in steps if s.get("done")}
        for step in ("core_config", "analytics"):
            if step not in done:
                self.api("POST", f"/api/onboarding/{step}", {})
        if "integration" not in done:
            # This step needs a token bound to the owner's password credential, which a
            # long-lived token is not.
            status, result = self.request(
                "POST", "/api/onboarding/integration",
                {"client_id": self.base_url + "/", "redirect_uri": self.base_url + "/"},
                token=self.login_tokens["access_token"])
            if status != 200:
                raise HomeAssistantError(
                    f"onboarding (integration step) failed: HTTP {status} {result}")
        log("home-assistant: onboarding finished")

    def _login(self, client_id: str, saved: dict) -> str:
        status, flow = self.request("POST", "/auth/login_flow", token="", body={
            "client_id": client_id, "handler": ["homeassistant", None],
            "redirect_uri": client_id})
        if status != 200:
            raise HomeAssistantError(f"starting the login flow failed: HTTP {status} {flow}")
        status, result = self.request("POST", f"/auth/login_flow/{flow['flow_id']}", token="",
                                      body={"client_id": client_id,
                                            "username": saved["username"],
                                            "password": saved["password"]})
        if result.get("type") != "create_entry":
            raise HomeAssistantError(f"login with the saved password failed: {result}")
        return result["result"]

    def _token_valid(self, token: str) -> bool:
        status, _ = self.request("GET", "/api/", token=token)
        return status == 200

    # --- MQTT integration ------------------------------------------------------------------

    def birth_count(self) -> int:
        return self.log_text().count(BIRTH_LINE)

    def mqtt_entries(self) -> list[dict]:
        return self.api("GET", "/api/config/config_entries/entry?domain=mqtt")

    def setup_mqtt(self, broker_host: str, broker_port: int, timeout: float = 120) -> None:
        """Creates the MQTT config entry through Home Assistant's own config flow when
        there is none, then waits until the client has subscribed and sent its birth."""
        started = time.monotonic()
        births = self.birth_count()
        if not self.mqtt_entries():
            self._run_config_flow({"handler": "mqtt", "show_advanced_options": False},
                                  {"broker": broker_host, "port": broker_port})
            log(f"home-assistant: MQTT entry created for {broker_host}:{broker_port}")
        self.wait_mqtt_ready(births, timeout)
        log(f"home-assistant: MQTT ready after {time.monotonic() - started:.1f} s")

    def wait_mqtt_ready(self, births_before: int, timeout: float = 120) -> None:
        """Waits for a birth message logged after `births_before` were counted."""
        wait_until(lambda: self.birth_count() > births_before, timeout, 0.25,
                   f"'{BIRTH_LINE}' in {self.log_path}")

    def _run_config_flow(self, start: dict, answers: dict) -> dict:
        result = self.api("POST", "/api/config/config_entries/flow", start)
        for _ in range(5):
            if result.get("type") != "form":
                break
            if result.get("errors"):
                raise HomeAssistantError(f"config flow rejected the answers: {result['errors']}")
            reply = fill_form(result.get("data_schema", []), answers)
            result = self.api("POST", f"/api/config/config_entries/flow/{result['flow_id']}",
                              reply)
        if result.get("type") != "create_entry":
            raise HomeAssistantError(f"config flow did not create an entry: {result}")
        return result

    # --- registries and states -------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Entity registry, device registry, states and entity sources, in one call."""
        registry, devices, states, sources = self.ws(
            {"type": "config/entity_registry/list"},
            {"type": "config/device_registry/list"},
            {"type": "get_states"},
            {"type": "entity/source"},
        )
        return {"entities": registry, "devices": devices, "states": states,
                "sources": sources}


def fill_form(schema: list[dict], answers: dict) -> dict:
    """Builds the reply to a config-flow form. Each field gets the value from `answers`,
    else the suggested value, else the default, else a neutral value when it is required.
    Sections (type `expandable`) are filled recursively."""
    reply: dict[str, Any] = {}
    for field in schema:
        name = field["name"]
        if field.get("type") == "expandable":
            nested = answers.get(name) if isinstance(answers.get(name), dict) else {}
            reply[name] = fill_form(field.get("schema", []), nested)
        elif name in answers:
            reply[name] = answers[name]
        elif "suggested_value" in (field.get("description") or {}):
            reply[name] = field["description"]["suggested_value"]
        elif "default" in field:
            reply[name] = field["default"]
        elif field.get("required"):
            selector = field.get("selector", {})
            if "boolean" in selector:
                reply[name] = False
            elif "select" in selector and selector["select"].get("options"):
                option = selector["select"]["options"][0]
                reply[name] = option["value"] if isinstance(option, dict) else option
    return reply
