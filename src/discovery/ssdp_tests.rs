use super::*;

const DESCRIPTION: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" xmlns:ve="urn:schemas-victronenergy-com:venusinfo-1">
  <specVersion><major>1</major><minor>0</minor></specVersion>
  <device>
    <deviceType>urn:schemas-upnp-org:device:Basic:1</deviceType>
    <friendlyName>Cerbo GX (c0619ab0d0e1)</friendlyName>
    <manufacturer>Victron Energy</manufacturer>
    <manufacturerURL>https://www.victronenergy.com</manufacturerURL>
    <modelName>Cerbo GX</modelName>
    <modelNumber>C00A</modelNumber>
    <serialNumber>HQ2234ABCDE</serialNumber>
    <UDN>uuid:com.victronenergy.ccgx.C0:61:9A:B0:D0:E1</UDN>
    <ve:X_VenusVersion>v3.70</ve:X_VenusVersion>
    <ve:X_VrmPortalId>c0619ab0d0e1</ve:X_VrmPortalId>
    <ve:X_MqttOnLan>0</ve:X_MqttOnLan>
    <ve:X_MqttWssOnLan>1</ve:X_MqttWssOnLan>
  </device>
</root>"#;

#[test]
fn description_fields() {
    let description = parse_description(DESCRIPTION);
    assert!(description.is_victron());
    assert_eq!(description.model_name.as_deref(), Some("Cerbo GX"));
    assert_eq!(description.serial_number.as_deref(), Some("HQ2234ABCDE"));
    assert_eq!(description.portal_id.as_deref(), Some("c0619ab0d0e1"));
    assert_eq!(description.mqtt_on_lan, Some(false));
    assert_eq!(description.mqtt_wss_on_lan, Some(true));
    assert_eq!(description.venus_version.as_deref(), Some("v3.70"));

    let host: IpAddr = "192.168.1.20".parse().unwrap();
    let candidate = description.to_candidate(host).unwrap();
    assert_eq!(candidate.method, Method::Ssdp);
    assert_eq!(candidate.portal_hint.as_deref(), Some("c0619ab0d0e1"));
    assert_eq!(candidate.mqtt_on_lan, Some(false));
}

#[test]
fn other_manufacturer_is_no_candidate() {
    let xml = DESCRIPTION.replace("Victron Energy", "Acme Routers &amp; Co");
    let description = parse_description(&xml);
    assert_eq!(description.manufacturer.as_deref(), Some("Acme Routers & Co"));
    assert!(description.to_candidate("10.0.0.1".parse().unwrap()).is_none());
}

#[test]
fn parses_notify_and_response() {
    let notify = b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n\
LOCATION: http://192.168.1.20:41234/description.xml\r\nNT: urn:schemas-upnp-org:device:Basic:1\r\n\
NTS: ssdp:alive\r\nUSN: uuid:com.victronenergy.ccgx.C0:61:9A:B0:D0:E1::urn:schemas-upnp-org:device:Basic:1\r\n\
BOOTID.UPNP.ORG: 7\r\n\r\n";
    let announcement = parse_message(notify).unwrap();
    assert_eq!(announcement.location, "http://192.168.1.20:41234/description.xml");
    assert_eq!(announcement.nts, "ssdp:alive");
    assert_eq!(announcement.boot_id.as_deref(), Some("7"));
    assert!(announcement.is_interesting());

    let response = b"HTTP/1.1 200 OK\r\nLocation: http://10.1.1.5/desc.xml\r\nST: upnp:rootdevice\r\nUSN: uuid:abc\r\n\r\n";
    let announcement = parse_message(response).unwrap();
    assert_eq!(announcement.target, "upnp:rootdevice");
    assert!(!announcement.is_interesting(), "a root device of another vendor is skipped");

    assert!(parse_message(msearch().as_bytes()).is_none(), "our own M-SEARCH is no announcement");
    assert!(parse_message(b"\xff\xfe").is_none());
}

#[test]
fn host_from_location() {
    let source: IpAddr = "192.168.1.99".parse().unwrap();
    assert_eq!(
        location_host("http://192.168.1.20:80/x.xml", source),
        "192.168.1.20".parse::<IpAddr>().unwrap()
    );
    assert_eq!(location_host("http://venus.local/x.xml", source), source);
}

#[test]
fn description_cache_fetches_once_per_boot() {
    let mut cache = DescriptionCache::default();
    let t0 = Instant::now();
    let mut announcement = parse_message(
        b"NOTIFY * HTTP/1.1\r\nLOCATION: http://1.2.3.4/d.xml\r\nNT: x\r\nBOOTID.UPNP.ORG: 1\r\n\r\n",
    )
    .unwrap();
    assert!(cache.should_fetch(&announcement, t0));
    assert!(!cache.should_fetch(&announcement, t0 + Duration::from_secs(10)));
    announcement.boot_id = Some("2".into());
    assert!(cache.should_fetch(&announcement, t0 + Duration::from_secs(11)));
    assert!(cache.should_fetch(&announcement, t0 + Duration::from_secs(80)));
}

#[tokio::test(flavor = "current_thread")]
async fn fetches_description_over_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 2048];
        let _ = socket.read(&mut buf).await.unwrap();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{DESCRIPTION}",
            DESCRIPTION.len()
        );
        socket.write_all(reply.as_bytes()).await.unwrap();
    });
    let location = format!("http://127.0.0.1:{port}/description.xml");
    let description = fetch_description(&location, Duration::from_secs(2)).await.unwrap();
    assert_eq!(description.portal_id.as_deref(), Some("c0619ab0d0e1"));
}
