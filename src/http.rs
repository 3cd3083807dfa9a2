//! A small HTTP/1.1 client for the few plain-HTTP requests the bridge makes: the
//! Supervisor API (`http://supervisor/...`), SSDP device descriptions and the GX web page.
//!
//! A general client (reqwest, ureq) would add a second TLS stack or a large dependency
//! tree for three GET/POST calls; this one speaks just enough HTTP/1.1: one request per
//! connection (`Connection: close`), `Content-Length` or chunked bodies, a size cap and
//! an overall timeout. HTTPS is not supported here.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body read; anything longer is an error. Supervisor and SSDP answers
/// are a few KiB.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL '{0}' (expected http://host[:port]/path)")]
    InvalidUrl(String),
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("I/O error talking to {host}: {source}")]
    Io { host: String, source: std::io::Error },
    #[error("invalid HTTP response from {0}: {1}")]
    InvalidResponse(String, &'static str),
    #[error("response from {0} is larger than {1} bytes")]
    TooLarge(String, usize),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::InvalidUrl(url.to_string()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let hp = crate::config::parse_host_port(authority)
            .map_err(|_| HttpError::InvalidUrl(url.to_string()))?;
        Ok(Url { host: hp.host, port: hp.port.unwrap_or(80), path: path.to_string() })
    }

    fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    pub timeout: Duration,
    pub max_body: usize,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            url,
            headers: &[],
            body: None,
            timeout: Duration::from_secs(5),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Sends one request and reads the whole response.
pub async fn send(request: &Request<'_>) -> Result<Response, HttpError> {
    let url = Url::parse(request.url)?;
    let label = url.authority();
    match tokio::time::timeout(request.timeout, exchange(&url, request)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(label)),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Response, HttpError> {
    send(&Request { headers, timeout, ..Request::get(url) }).await
}

pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let body = body.to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Content-Type", "application/json"));
    send(&Request {
        method: "POST",
        url,
        headers: &all,
        body: Some(body.as_bytes()),
        timeout,
        max_body: DEFAULT_MAX_BODY,
    })
    .await
}

async fn exchange(url: &Url, request: &Request<'_>) -> Result<Response, HttpError> {
    let label = url.authority();
    let io = |source| HttpError::Io { host: label.clone(), source };

    let mut stream = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(io)?;

    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: roamcore-victron/{}\r\n",
        request.method,
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = request.body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    if let Some(body) = request.body {
        stream.write_all(body).await.map_err(io)?;
    }

    let limit = request.max_body + 16 * 1024;
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > limit {
            return Err(HttpError::TooLarge(label, request.max_body));
        }
        if let Some(done) = complete_length(&raw) {
            if raw.len() >= done {
                break;
            }
        }
    }
    parse_response(&raw, request.max_body).map_err(|why| match why {
        ParseError::Invalid(reason) => HttpError::InvalidResponse(label.clone(), reason),
        ParseError::TooLarge => HttpError::TooLarge(label.clone(), request.max_body),
    })
}

/// With `Content-Length`, the total size of head and body once the head is complete.
fn complete_length(raw: &[u8]) -> Option<usize> {
    let end = find(raw, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    })?;
    Some(end + length)
}

#[derive(Debug)]
enum ParseError {
    Invalid(&'static str),
    TooLarge,
}

fn parse_response(raw: &[u8], max_body: usize) -> Result<Response, ParseError> {
    let end = find(raw, b"\r\n\r\n").ok_or(ParseError::Invalid("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ParseError::Invalid("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");

    let status_line = lines.next().ok_or(ParseError::Invalid("empty response"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(ParseError::Invalid("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ParseError::Invalid("invalid status code"))?;

    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();

    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { decode_chunked(rest, max_body)? } else { rest.to_vec() };
    if body.len() > max_body {
        return Err(ParseError::TooLarge);
    }
    Ok(Response { status, headers, body })
}

fn decode_chunked(mut data: &[u8], max_body: usize) -> Result<Vec<u8>, ParseError> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or(ParseError::Invalid("truncated chunk size"))?;
        let size_text = std::str::from_utf8(&data[..line_end])
            .map_err(|_| ParseError::Invalid("chunk size not text"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ParseError::Invalid("invalid chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size {
            return Err(ParseError::Invalid("truncated chunk"));
        }
        if body.len() + size > max_body {
            return Err(ParseError::TooLarge);
        }
        body.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).ok_or(ParseError::Invalid("truncated chunk end"))?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(
            Url::parse("http://supervisor/services/mqtt").unwrap(),
            Url { host: "supervisor".into(), port: 80, path: "/services/mqtt".into() }
        );
        assert_eq!(Url::parse("http://127.0.0.1:8080").unwrap().path, "/");
        assert!(Url::parse("https://x/").is_err());
    }

    #[test]
    fn parses_content_length_and_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi";
        let response = parse_response(raw, 100).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-a"), Some("b"));
        assert_eq!(response.body, b"hi");

        let raw = b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let response = parse_response(raw, 100).unwrap();
        assert_eq!(response.status, 400);
        assert_eq!(response.body, b"abcde");
        assert!(matches!(parse_response(raw, 4), Err(ParseError::TooLarge)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn round_trip_against_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(request.starts_with("POST /x HTTP/1.1\r\n"));
            assert!(request.contains("Authorization: Bearer t"));
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
                .await
                .unwrap();
        });
        let url = format!("http://127.0.0.1:{port}/x");
        let response = post_json(
            &url,
            &[("Authorization", "Bearer t")],
            &serde_json::json!({"a": 1}),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "{\"ok\":true}");
    }
}
