"""A stand-in for the Home Assistant Supervisor's Core proxy, so the bridge can run as it
does in the add-on and reach the real Home Assistant of the test.

Like the Supervisor, it accepts the add-on's token and talks to Home Assistant with a
token of its own. `/core/api/...` is forwarded to Home Assistant's REST API and
`/core/websocket` to its WebSocket API, where the add-on's token in the `auth` message is
replaced by Home Assistant's. Every other path returns HTTP 404.
"""

import http.client
import json
import os
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .procs import log

ADDON_TOKEN = "e2e-addon-token"


def _read_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Reads one masked client frame; returns (first byte, unmasked payload)."""
    first, second = _read_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(sock, 8))
    mask = _read_exact(sock, 4) if second & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(sock, length)))
    return first, payload


def _client_frame(first: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([first, 0x80 | 126]) + struct.pack("!H", length)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack("!Q", length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SupervisorStandIn:
    def __init__(self, port: int, ha_port: int, ha_token: str):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: requests are kept in stand_in.requests
                pass

            def _authorised(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {ADDON_TOKEN}"

            def _forward_rest(self, method: str) -> None:
                stand_in.requests.append(f"{method} {self.path}")
                if not self.path.startswith("/core/api/"):
                    self._reply(404, {"result": "error", "message": f"{self.path} not found"})
                    return
                if not self._authorised():
                    self._reply(401, {"result": "error", "message": "invalid add-on token"})
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection("127.0.0.1", ha_port, timeout=30)
                connection.request(method, self.path[len("/core"):], body=body or None, headers={
                    "Authorization": f"Bearer {ha_token}",
                    "Content-Type": self.headers.get("Content-Type", "application/json")})
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                self.send_header("Content-Type", response.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (name fixed by http.server)
                if self.path == "/core/websocket" and "websocket" in self.headers.get(
                        "Upgrade", "").lower():
                    stand_in.requests.append("WS /core/websocket")
                    self._relay_websocket()
                else:
                    self._forward_rest("GET")

            def do_POST(self):  # noqa: N802
                self._forward_rest("POST")

            def _relay_websocket(self) -> None:
                client = self.connection
                upstream = socket.create_connection(("127.0.0.1", ha_port), timeout=30)
                request = (
                    "GET /api/websocket HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{ha_port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {self.headers['Sec-WebSocket-Key']}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n")
                upstream.sendall(request.encode())
                upstream.settimeout(None)
                client.settimeout(None)
                # Home Assistant's frames go to the client unchanged, handshake included.
                threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
                # The client's first message is its auth message: swap the token.
                first, payload = _read_client_frame(client)
                message = json.loads(payload)
                if message.get("type") == "auth" and message.get("access_token") == ADDON_TOKEN:
                    message["access_token"] = ha_token
                upstream.sendall(_client_frame(first, json.dumps(message).encode()))
                _pipe(client, upstream)
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        log(f"Supervisor stand-in listening on {self.url}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bridge_environment(self) -> dict[str, str]:
        """The variables under which the bridge believes it runs as an add-on."""
        return {"SUPERVISOR_URL": self.url, "SUPERVISOR_TOKEN": ADDON_TOKEN}
