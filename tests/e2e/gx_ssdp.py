"""The SSDP side of a simulated GX: answers M-SEARCH, sends NOTIFY ssdp:alive, and serves
the UPnP device description that Venus OS's simple-upnpd serves.

The description carries what Home Assistant's victron_gx integration (2026.11.0) matches
on, manufacturer "Victron Energy" and X_MqttOnLan "1", and what its config flow reads:
X_VrmPortalId, friendlyName, serialNumber and the host of the LOCATION URL.

Usage: python3 gx_ssdp.py ADDRESS PORTAL_ID   (run inside the GX's network namespace)
"""

import http.server
import socket
import struct
import sys
import threading
import time

MULTICAST_GROUP = "239.255.255.250"
SSDP_PORT = 1900
HTTP_PORT = 8080
DEVICE_TYPE = "urn:schemas-upnp-org:device:Basic:1"

DESCRIPTION = """<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"
      xmlns:ve="urn:schemas-victronenergy-com:venusinfo-1">
  <specVersion><major>1</major><minor>0</minor></specVersion>
  <device>
    <deviceType>{device_type}</deviceType>
    <friendlyName>Simulated GX ({portal})</friendlyName>
    <manufacturer>Victron Energy</manufacturer>
    <manufacturerURL>https://www.victronenergy.com</manufacturerURL>
    <modelName>Cerbo GX</modelName>
    <modelNumber>C00A</modelNumber>
    <serialNumber>HQ0000TEST0</serialNumber>
    <UDN>{udn}</UDN>
    <ve:X_VenusVersion>v3.70</ve:X_VenusVersion>
    <ve:X_VrmPortalId>{portal}</ve:X_VrmPortalId>
    <ve:X_MqttOnLan>1</ve:X_MqttOnLan>
    <ve:X_MqttWssOnLan>0</ve:X_MqttWssOnLan>
  </device>
</root>
"""


def main() -> None:
    address, portal = sys.argv[1], sys.argv[2]
    udn = "uuid:com.victronenergy.ccgx." + ":".join(
        portal.upper()[i:i + 2] for i in range(0, len(portal), 2))
    location = f"http://{address}:{HTTP_PORT}/description.xml"
    description = DESCRIPTION.format(device_type=DEVICE_TYPE, portal=portal, udn=udn).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (name fixed by http.server)
            if self.path != "/description.xml":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", 'text/xml; charset="utf-8"')
            self.send_header("Content-Length", str(len(description)))
            self.end_headers()
            self.wfile.write(description)

    server = http.server.ThreadingHTTPServer((address, HTTP_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", SSDP_PORT))
    membership = struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP), socket.inet_aton(address))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)

    def headers(first_line: str, fields: dict[str, str]) -> bytes:
        lines = [first_line] + [f"{k}: {v}" for k, v in fields.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def notify_loop() -> None:
        while True:
            for target in ("upnp:rootdevice", udn, DEVICE_TYPE):
                usn = udn if target == udn else f"{udn}::{target}"
                sock.sendto(headers("NOTIFY * HTTP/1.1", {
                    "HOST": f"{MULTICAST_GROUP}:{SSDP_PORT}", "CACHE-CONTROL": "max-age=1800",
                    "LOCATION": location, "NT": target, "NTS": "ssdp:alive",
                    "SERVER": "Linux/5.10 UPnP/1.0 GUPnP/1.2.4", "USN": usn,
                }), (MULTICAST_GROUP, SSDP_PORT))
            time.sleep(5)

    threading.Thread(target=notify_loop, daemon=True).start()
    print(f"SSDP for portal {portal} on {address}, description at {location}", flush=True)

    while True:
        data, sender = sock.recvfrom(65535)
        text = data.decode(errors="replace")
        if not text.startswith("M-SEARCH"):
            continue
        search_target = ""
        for line in text.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().upper() == "ST":
                search_target = value.strip()
        if search_target not in ("ssdp:all", "upnp:rootdevice", DEVICE_TYPE, udn):
            continue
        reply_target = "upnp:rootdevice" if search_target == "ssdp:all" else search_target
        usn = udn if reply_target == udn else f"{udn}::{reply_target}"
        sock.sendto(headers("HTTP/1.1 200 OK", {
            "CACHE-CONTROL": "max-age=1800", "EXT": "", "LOCATION": location,
            "SERVER": "Linux/5.10 UPnP/1.0 GUPnP/1.2.4", "ST": reply_target, "USN": usn,
        }), sender)


if __name__ == "__main__":
    main()
