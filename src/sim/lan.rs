//! The simulated GX as it shows itself on a LAN. It runs an SSDP responder with a UPnP
//! device description shaped like simple-upnpd's and a web server with the GX page
//! signatures. Optionally it adds HTTPS with a self-signed `O=Victron Energy,
//! OU=Venus OS, CN=venus.local` certificate, a Modbus TCP server for unit 100 registers
//! 800-805, and an mDNS responder for `venus.local`. The MQTT side is a separate broker.
//!
//! It binds to one address (`--bind`), so several simulated GX devices can share a test
//! LAN. Blocking threads keep it simple; it is a test tool, not part of the daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::discovery::ssdp::{DEVICE_TYPE, MULTICAST, PORT as SSDP_PORT};

/// The behaviour of the GX web server on port 80.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebMode {
    /// `/` redirects to `/gui-v2` (Unsecured and Weak profiles).
    Gui,
    /// `/` redirects to the login page.
    Login,
    /// Secured profile: only the certificate note.
    Secured,
    Off,
}

/// Flags of `sim-lan`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimLanArgs {
    /// Address of the simulated GX; every server binds to it.
    #[arg(long, value_name = "IPV4")]
    pub bind: Ipv4Addr,
    /// Portal id announced by SSDP and Modbus.
    #[arg(long, default_value = "c0619ab0d0e1")]
    pub portal_id: String,
    /// GX serial number (HQ...).
    #[arg(long, default_value = "HQ2234ABCDE")]
    pub serial: String,
    #[arg(long, default_value = "Cerbo GX")]
    pub model: String,
    #[arg(long, default_value = "v3.70")]
    pub firmware: String,
    /// `X_MqttOnLan` in the description: 1 MQTT access on, 0 off.
    #[arg(long, default_value_t = 1)]
    pub mqtt_on_lan: u8,
    /// Answer SSDP M-SEARCH and send NOTIFY.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub ssdp: bool,
    /// Seconds between NOTIFY announcements.
    #[arg(long, default_value_t = 30)]
    pub notify_interval: u64,
    /// Port 80 behaviour.
    #[arg(long, value_enum, default_value = "gui")]
    pub web: WebMode,
    /// Serve HTTPS on 443 with a GX-like self-signed certificate.
    #[arg(long)]
    pub https: bool,
    /// Serve Modbus TCP on 502.
    #[arg(long)]
    pub modbus: bool,
    /// Answer mDNS queries for venus.local.
    #[arg(long)]
    pub mdns: bool,
}

/// Renders the UPnP description with the fields simple-upnpd fills in.
pub fn description_xml(args: &SimLanArgs) -> String {
    let udn: Vec<String> = args
        .portal_id
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect();
    format!(
        r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" xmlns:ve="urn:schemas-victronenergy-com:venusinfo-1">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>{DEVICE_TYPE}</deviceType>
<friendlyName>{model} ({portal})</friendlyName>
<manufacturer>Victron Energy</manufacturer>
<manufacturerURL>https://www.victronenergy.com</manufacturerURL>
<modelName>{model}</modelName>
<modelNumber>C00A</modelNumber>
<serialNumber>{serial}</serialNumber>
<UDN>uuid:com.victronenergy.ccgx.{udn}</UDN>
<ve:X_VenusVersion>{firmware}</ve:X_VenusVersion>
<ve:X_VrmPortalId>{portal}</ve:X_VrmPortalId>
<ve:X_MqttOnLan>{mqtt}</ve:X_MqttOnLan>
<ve:X_MqttWssOnLan>1</ve:X_MqttWssOnLan>
</device>
</root>
"#,
        model = args.model,
        portal = args.portal_id,
        serial = args.serial,
        firmware = args.firmware,
        mqtt = args.mqtt_on_lan,
        udn = udn.join(":"),
    )
}

pub fn main(args: SimLanArgs) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("sim-lan: {err:#}");
            1
        }
    }
}

fn run(args: SimLanArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let description =
        TcpListener::bind((args.bind, 0)).context("binding the description server")?;
    let location =
        format!("http://{}:{}/description.xml", args.bind, description.local_addr()?.port());
    {
        let xml = description_xml(&args);
        std::thread::spawn(move || serve_http(description, move |_| (200, None, xml.clone())));
    }
    if args.web != WebMode::Off {
        let listener = TcpListener::bind((args.bind, 80)).context("binding port 80")?;
        let mode = args.web;
        std::thread::spawn(move || serve_http(listener, move |path| web_page(mode, path)));
    }
    if args.https {
        start_https(args.bind)?;
    }
    if args.modbus {
        let listener = TcpListener::bind((args.bind, 502)).context("binding port 502")?;
        let portal = args.portal_id.clone();
        std::thread::spawn(move || serve_modbus(listener, portal));
    }
    let _mdns = if args.mdns { Some(start_mdns(args.bind)?) } else { None };
    if args.ssdp {
        start_ssdp(args.clone(), location.clone())?;
    }
    println!("sim-lan: ready on {} ({})", args.bind, location);
    std::io::stdout().flush().ok();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn web_page(mode: WebMode, path: &str) -> (u16, Option<String>, String) {
    match (mode, path) {
        (WebMode::Secured, _) => (
            200,
            None,
            "<html><head><title>Venus GX - SSL certifcate note</title></head><body></body></html>"
                .to_string(),
        ),
        (_, p) if p.starts_with("/auth/login.php") => (
            200,
            None,
            "<html><head><title>Login</title></head><body><h1>GX device login</h1></body></html>"
                .to_string(),
        ),
        (WebMode::Login, _) => (302, Some("/auth/login.php?page=/gui-v2".into()), String::new()),
        _ => (302, Some("/gui-v2".into()), String::new()),
    }
}

/// Serves HTTP on `listener`, one request per connection, with pages from `page`.
fn serve_http<F>(listener: TcpListener, page: F)
where
    F: Fn(&str) -> (u16, Option<String>, String) + Send + 'static,
{
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => continue,
        });
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
            line.clear();
        }
        let (status, location, body) = page(&path);
        let reason = if status == 200 { "OK" } else { "Found" };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(location) = location {
            head.push_str(&format!("Location: {location}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
    }
}

/// Generates a GX-like self-signed certificate and its key, DER encoded.
pub fn gx_certificate() -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut params = rcgen::CertificateParams::new(vec!["venus.local".to_string()])?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CountryName, "NL");
    name.push(rcgen::DnType::StateOrProvinceName, "Flevoland");
    name.push(rcgen::DnType::LocalityName, "Almere");
    name.push(rcgen::DnType::OrganizationName, "Victron Energy");
    name.push(rcgen::DnType::OrganizationalUnitName, "Venus OS");
    name.push(rcgen::DnType::CommonName, "venus.local");
    params.distinguished_name = name;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// Serves HTTPS with a GX-like certificate on `bind:443`; the page is the login page.
pub fn start_https(bind: Ipv4Addr) -> anyhow::Result<u16> {
    start_https_on(SocketAddr::V4(SocketAddrV4::new(bind, 443)))
}

/// Like [`start_https`] on any address; returns the port (for tests on 127.0.0.1:0).
pub fn start_https_on(addr: SocketAddr) -> anyhow::Result<u16> {
    let (cert, key) = gx_certificate()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )?;
    let config = Arc::new(config);
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(mut connection) = rustls::ServerConnection::new(config) else { return };
                while connection.is_handshaking() {
                    if connection.complete_io(&mut stream).is_err() {
                        return;
                    }
                }
                let mut tls = rustls::Stream::new(&mut connection, &mut stream);
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf);
                let body = "<html><body><h1>GX device login</h1></body></html>";
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Ok(port)
}

/// Serves Modbus TCP: "read holding registers" on unit 100 from register 800 returns the
/// portal id, and any other request gets exception 2 (illegal data address).
pub fn serve_modbus(listener: TcpListener, portal_id: String) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let portal = portal_id.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 12];
            while stream.read_exact(&mut request).is_ok() {
                let unit = request[6];
                let function = request[7];
                let start = u16::from_be_bytes([request[8], request[9]]);
                let count = u16::from_be_bytes([request[10], request[11]]);
                let mut reply = request[0..4].to_vec();
                if unit == 100 && function == 3 && start == 800 && count == 6 {
                    let mut data = portal.as_bytes().to_vec();
                    data.resize(12, 0);
                    reply.extend_from_slice(&15u16.to_be_bytes());
                    reply.extend_from_slice(&[unit, 3, 12]);
                    reply.extend_from_slice(&data);
                } else {
                    reply.extend_from_slice(&3u16.to_be_bytes());
                    reply.extend_from_slice(&[unit, function | 0x80, 2]);
                }
                if stream.write_all(&reply).is_err() {
                    return;
                }
            }
        });
    }
}

fn start_mdns(bind: Ipv4Addr) -> anyhow::Result<mdns_sd::ServiceDaemon> {
    let daemon = mdns_sd::ServiceDaemon::new()
        .map_err(|e| anyhow::anyhow!("starting the mDNS responder failed: {e}"))?;
    let _ = daemon.disable_interface(mdns_sd::IfKind::IPv6);
    let service = mdns_sd::ServiceInfo::new(
        "_http._tcp.local.",
        "venus",
        "venus.local.",
        IpAddr::V4(bind),
        80,
        None,
    )
    .map_err(|e| anyhow::anyhow!("invalid mDNS service for venus.local: {e}"))?;
    daemon
        .register(service)
        .map_err(|e| anyhow::anyhow!("registering venus.local with mDNS failed: {e}"))?;
    Ok(daemon)
}

fn start_ssdp(args: Arc<SimLanArgs>, location: String) -> anyhow::Result<()> {
    let listen = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    listen.set_reuse_address(true)?;
    listen.set_reuse_port(true)?;
    listen.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SSDP_PORT)).into())?;
    listen.join_multicast_v4(&MULTICAST, &args.bind)?;
    let listen: UdpSocket = listen.into();

    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    send.set_multicast_if_v4(&args.bind)?;
    send.set_multicast_ttl_v4(2)?;
    send.bind(&SocketAddr::V4(SocketAddrV4::new(args.bind, 0)).into())?;
    let send: UdpSocket = send.into();
    let usn = format!("uuid:com.victronenergy.ccgx.{}::{DEVICE_TYPE}", args.portal_id);
    let boot_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or(1);

    let notify_socket = send.try_clone()?;
    let notify = format!(
        "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n\
         LOCATION: {location}\r\nNT: {DEVICE_TYPE}\r\nNTS: ssdp:alive\r\nSERVER: Linux UPnP/1.0 sim-lan\r\n\
         USN: {usn}\r\nBOOTID.UPNP.ORG: {boot_id}\r\n\r\n"
    );
    let interval = Duration::from_secs(args.notify_interval.max(1));
    std::thread::spawn(move || loop {
        let _ = notify_socket.send_to(notify.as_bytes(), (MULTICAST, SSDP_PORT));
        std::thread::sleep(interval);
    });

    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = listen.recv_from(&mut buf) else { continue };
            let text = String::from_utf8_lossy(&buf[..n]);
            if !text.starts_with("M-SEARCH") {
                continue;
            }
            let st = text
                .split("\r\n")
                .find_map(|l| {
                    l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("ST"))
                })
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            if st != DEVICE_TYPE && st != "ssdp:all" && st != "upnp:rootdevice" {
                continue;
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: {location}\r\n\
                 SERVER: Linux UPnP/1.0 sim-lan\r\nST: {st}\r\nUSN: {usn}\r\nBOOTID.UPNP.ORG: {boot_id}\r\n\r\n"
            );
            std::thread::sleep(Duration::from_millis(u64::from(rand::random::<u16>() % 500)));
            let _ = send.send_to(reply.as_bytes(), from);
        }
    });
    Ok(())
}
