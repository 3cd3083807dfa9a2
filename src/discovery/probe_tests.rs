use super::*;
use crate::http::Response;

fn response(status: u16, location: Option<&str>, body: &str) -> Response {
    let mut headers = Vec::new();
    if let Some(location) = location {
        headers.push(("location".to_string(), location.to_string()));
    }
    Response { status, headers, body: body.as_bytes().to_vec() }
}

#[test]
fn web_signatures() {
    assert!(web_signature(&response(302, Some("/gui-v2"), "")).is_some());
    assert!(web_signature(&response(302, Some("http://192.168.1.20/gui-v1"), "")).is_some());
    assert!(web_signature(&response(302, Some("/auth/login.php?page=/gui-v2"), "")).is_some());
    assert!(web_signature(&response(200, None, "<h1>GX device login</h1>")).is_some());
    assert!(web_signature(&response(200, None, "<title>Venus GX - SSL certifcate note</title>"))
        .is_some());

    assert!(web_signature(&response(302, Some("/admin"), "")).is_none());
    assert!(web_signature(&response(200, None, "<title>Router login</title>")).is_none());
    assert!(web_signature(&response(301, Some("https://192.168.1.1/"), "")).is_none());
}

#[test]
fn modbus_round_trip() {
    let request = modbus_request(7);
    assert_eq!(request, [0, 7, 0, 0, 0, 6, 100, 3, 0x03, 0x20, 0, 6]);

    let mut reply = vec![0, 7, 0, 0, 0, 15, 100, 3, 12];
    reply.extend_from_slice(b"c0619ab0d0e1");
    assert_eq!(parse_modbus_response(&reply, 7).as_deref(), Some("c0619ab0d0e1"));
    assert_eq!(parse_modbus_response(&reply, 8), None, "other transaction");

    let exception = [0, 7, 0, 0, 0, 3, 100, 0x83, 2];
    assert_eq!(parse_modbus_response(&exception, 7), None);
}

#[tokio::test(flavor = "current_thread")]
async fn modbus_probe_against_simulated_gx() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || crate::sim::lan::serve_modbus(listener, "c0619ab0d0e1".into()));

    // probe_modbus dials the standard port 502; ask the same server on its test port.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let portal = tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        socket.write_all(&modbus_request(9)).unwrap();
        let mut buf = [0u8; 21];
        socket.read_exact(&mut buf).unwrap();
        parse_modbus_response(&buf, 9)
    })
    .await
    .unwrap();
    assert_eq!(portal.as_deref(), Some("c0619ab0d0e1"));
}

#[tokio::test(flavor = "current_thread")]
async fn certificate_probe_reads_gx_subject() {
    let port = crate::sim::lan::start_https_on(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(probe_certificate(ip, port, Duration::from_secs(3)).await, Some(true));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert_eq!(probe_certificate(ip, closed, Duration::from_secs(1)).await, None);
}
