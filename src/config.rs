//! Settings of the daemon, merged from three sources in this order of precedence:
//! command-line flags (and their environment variables), the add-on options file, and
//! built-in defaults.
//!
//! Invalid command-line values are rejected by `validate_args` (exit status 2). An invalid
//! value in the options file is different: the Supervisor wrote it from the add-on's
//! configuration page, so the daemon logs it, ignores that one key, reports
//! `config_error` on the bridge-status entity and keeps running with the rest.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{LogLevel, RunArgs};

/// Default MQTT port of the GX, plain and TLS (Venus OS FlashMQ listeners).
pub const GX_PORT_PLAIN: u16 = 1883;
pub const GX_PORT_TLS: u16 = 8883;

/// A host with an optional port, as given by `--gx` or `--ha-broker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Parses `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
pub fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the host is empty".into());
    }

    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{text}' has '[' without a closing ']'"))?;
        let port = match tail.strip_prefix(':') {
            Some(port) => Some(parse_port(port, text)?),
            None if tail.is_empty() => None,
            None => return Err(format!("'{text}' has text after ']' that is not ':PORT'")),
        };
        return Ok(HostPort { host: host.to_string(), port });
    }

    match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            // A bare IPv6 address without brackets: no port.
            Ok(HostPort { host: text.to_string(), port: None })
        }
        Some((host, port)) => {
            if host.is_empty() {
                return Err(format!("'{text}' has no host before ':'"));
            }
            Ok(HostPort { host: host.to_string(), port: Some(parse_port(port, text)?) })
        }
        None => {
            if text.contains(char::is_whitespace) || text.contains('/') {
                return Err(format!("'{text}' is not a host name or address"));
            }
            Ok(HostPort { host: text.to_string(), port: None })
        }
    }
}

fn parse_port(port: &str, whole: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{whole}' has an invalid port '{port}' (expected 1-65535)")),
        Ok(port) => Ok(port),
    }
}

/// An IPv4 subnet in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

pub fn parse_ipv4_net(text: &str) -> Result<Ipv4Net, String> {
    let (addr, prefix) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("'{text}' is not a CIDR subnet (expected e.g. 192.168.1.0/24)"))?;
    let addr: Ipv4Addr =
        addr.parse().map_err(|_| format!("'{text}' has an invalid IPv4 address '{addr}'"))?;
    let prefix: u8 = match prefix.parse() {
        Ok(p) if p <= 32 => p,
        _ => return Err(format!("'{text}' has an invalid prefix length '{prefix}' (0-32)")),
    };
    Ok(Ipv4Net { addr, prefix })
}

/// GX location: a fixed address, or found by scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GxTarget {
    Fixed(HostPort),
    Discover,
}

/// Everything the daemon needs to run, after merging.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gx: GxTarget,
    pub gx_username: Option<String>,
    pub gx_password: Option<String>,
    pub gx_tls: bool,
    pub portal_id: Option<String>,
    pub scan: bool,
    pub scan_subnets: Vec<Ipv4Net>,
    pub scan_large_subnets: bool,
    /// Home Assistant's broker; `None` means "ask the Supervisor".
    pub ha_broker: Option<HostPort>,
    pub ha_username: Option<String>,
    pub ha_password: Option<String>,
    pub discovery_prefix: String,
    pub data_dir: PathBuf,
    /// Path of the health file that `roamcore-victron health` reads.
    pub health_file: PathBuf,
    pub log_level: LogLevel,
    pub forget_after_days: u32,
    /// Forget pinned GX certificates once, when this option is switched on (a reset GX
    /// has a new certificate).
    pub trust_new_certificate: bool,
    pub throttle: bool,
    pub time_scale: f64,
    /// Problems found in the options file, already described for the user.
    pub config_errors: Vec<String>,
    /// Keys of the options file that were read and applied, for the start-up log.
    pub applied_options: Vec<String>,
}

impl Settings {
    /// Port to dial on the GX when none was given.
    pub fn gx_default_port(&self) -> u16 {
        if self.gx_tls {
            GX_PORT_TLS
        } else {
            GX_PORT_PLAIN
        }
    }
}

/// Checks the flags that clap cannot check by type; the message names the bad value.
pub fn validate_args(args: &RunArgs) -> Result<(), String> {
    if let Some(gx) = &args.gx {
        parse_host_port(gx).map_err(|e| format!("invalid value for --gx: {e}"))?;
    }
    if let Some(broker) = &args.ha_broker {
        parse_host_port(broker).map_err(|e| format!("invalid value for --ha-broker: {e}"))?;
    }
    if let Some(portal) = &args.portal_id {
        validate_portal_id(portal).map_err(|e| format!("invalid value for --portal-id: {e}"))?;
    }
    if let Some(subnets) = &args.scan_subnets {
        for subnet in subnets {
            parse_ipv4_net(subnet).map_err(|e| format!("invalid value for --scan-subnets: {e}"))?;
        }
    }
    if let Some(prefix) = &args.discovery_prefix {
        validate_discovery_prefix(prefix)
            .map_err(|e| format!("invalid value for --discovery-prefix: {e}"))?;
    }
    if let Some(scale) = args.time_scale {
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(format!("invalid value for --time-scale: '{scale}' (expected >= 1)"));
        }
    }
    Ok(())
}

/// Checks a portal id: the GX's 12-character VRM id, lower-case hex in practice.
pub fn validate_portal_id(text: &str) -> Result<(), String> {
    let ok = text.len() == 12 && text.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("'{text}' is not a portal id (expected 12 letters or digits, e.g. c0619ab0d0e1)"))
    }
}

fn validate_discovery_prefix(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && !text.starts_with('/')
        && !text.ends_with('/')
        && !text.contains(['+', '#', '\0']);
    if ok {
        Ok(())
    } else {
        Err(format!("'{text}' is not a valid MQTT topic prefix"))
    }
}

/// Merges flags, the options file and defaults. `supervised` is true when a
/// SUPERVISOR_TOKEN is present, which changes the default data directory.
pub fn merge(args: &RunArgs, supervised: bool) -> Settings {
    let options_path = args
        .options
        .clone()
        .unwrap_or_else(|| PathBuf::from("/data/options.json"));
    let mut file = OptionsFile::load(&options_path, args.options.is_some());

    let gx_host = args.gx.as_deref().map(parse_host_port).and_then(Result::ok);
    let gx = match gx_host {
        Some(host) => GxTarget::Fixed(host),
        None => match file.string("gx_host") {
            Some(host) => match parse_host_port(&host) {
                Ok(mut parsed) => {
                    if let Some(port) = file.port("gx_port") {
                        parsed.port = Some(port);
                    }
                    GxTarget::Fixed(parsed)
                }
                Err(e) => {
                    file.error("gx_host", &e);
                    GxTarget::Discover
                }
            },
            None => GxTarget::Discover,
        },
    };

    let portal_id = args.portal_id.clone().or_else(|| {
        let id = file.string("portal_id")?;
        match validate_portal_id(&id) {
            Ok(()) => Some(id.to_ascii_lowercase()),
            Err(e) => {
                file.error("portal_id", &e);
                None
            }
        }
    });

    let scan_subnets = match &args.scan_subnets {
        Some(list) => list.iter().filter_map(|s| parse_ipv4_net(s).ok()).collect(),
        None => file.subnets("scan_subnets"),
    };

    let discovery_prefix = args.discovery_prefix.clone().unwrap_or_else(|| {
        match file.string("discovery_prefix") {
            Some(prefix) => match validate_discovery_prefix(&prefix) {
                Ok(()) => prefix,
                Err(e) => {
                    file.error("discovery_prefix", &e);
                    "homeassistant".into()
                }
            },
            None => "homeassistant".into(),
        }
    });

    let data_dir = args.data_dir.clone().unwrap_or_else(|| default_data_dir(supervised));

    let settings = Settings {
        gx,
        gx_username: args.gx_username.clone().or_else(|| file.string("gx_username")),
        gx_password: args.gx_password.clone().or_else(|| file.string("gx_password")),
        gx_tls: args.gx_tls.or_else(|| file.boolean("gx_tls")).unwrap_or(false),
        portal_id: portal_id.map(|p| p.to_ascii_lowercase()),
        scan: args.scan.or_else(|| file.boolean("scan")).unwrap_or(true),
        scan_subnets,
        scan_large_subnets: args
            .scan_large_subnets
            .or_else(|| file.boolean("scan_large_subnets"))
            .unwrap_or(false),
        ha_broker: args.ha_broker.as_deref().and_then(|b| parse_host_port(b).ok()),
        ha_username: args.ha_username.clone(),
        ha_password: args.ha_password.clone(),
        discovery_prefix,
        data_dir,
        health_file: args
            .health_file
            .clone()
            .filter(|path| !path.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(crate::health::DEFAULT_PATH)),
        log_level: args.log_level.or_else(|| file.log_level("log_level")).unwrap_or(LogLevel::Info),
        forget_after_days: args
            .forget_after_days
            .or_else(|| file.uint("forget_after_days"))
            .unwrap_or(0),
        trust_new_certificate: args
            .gx_trust_new_certificate
            .or_else(|| file.boolean("gx_trust_new_certificate"))
            .unwrap_or(false),
        throttle: !args.no_throttle,
        time_scale: args.time_scale.unwrap_or(1.0),
        config_errors: Vec::new(),
        applied_options: Vec::new(),
    };

    file.finish(settings)
}

fn default_data_dir(supervised: bool) -> PathBuf {
    if supervised {
        return PathBuf::from("/data");
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("roamcore-victron");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/state/roamcore-victron");
    }
    PathBuf::from("roamcore-data")
}

/// Keys the options file may contain. Anything else is reported as unknown.
pub const OPTION_KEYS: &[&str] = &[
    "gx_host",
    "gx_port",
    "gx_tls",
    "gx_username",
    "gx_password",
    "gx_trust_new_certificate",
    "portal_id",
    "scan",
    "scan_subnets",
    "scan_large_subnets",
    "discovery_prefix",
    "forget_after_days",
    "log_level",
];

/// Keys whose values are secrets: the start-up log names them but never shows them.
const SECRET_KEYS: &[&str] = &["gx_password"];

/// The add-on options file, read key by key so that one bad value spoils nothing else.
struct OptionsFile {
    values: serde_json::Map<String, Value>,
    errors: Vec<String>,
    applied: Vec<String>,
}

impl OptionsFile {
    fn load(path: &Path, explicit: bool) -> OptionsFile {
        let mut file = OptionsFile {
            values: serde_json::Map::new(),
            errors: Vec::new(),
            applied: Vec::new(),
        };

        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return file,
            Err(e) => {
                file.errors.push(format!("cannot read options file {}: {e}", path.display()));
                return file;
            }
        };

        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => file.values = map,
            Ok(_) => file
                .errors
                .push(format!("options file {} is not a JSON object; ignored", path.display())),
            Err(e) => file
                .errors
                .push(format!("options file {} is not valid JSON ({e}); ignored", path.display())),
        }

        for key in file.values.keys() {
            if !OPTION_KEYS.contains(&key.as_str()) {
                file.errors.push(format!("option '{key}' is unknown; ignored"));
            }
        }
        file
    }

    fn error(&mut self, key: &str, message: &str) {
        self.applied.retain(|k| k != key);
        self.errors.push(format!("option '{key}' is invalid: {message}; ignored"));
    }

    /// Returns a value that is present and not null; null and "" mean "not set".
    fn present(&self, key: &str) -> Option<&Value> {
        match self.values.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(value) => Some(value),
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.present(key)?.clone() {
            Value::String(s) => {
                self.applied.push(key.to_string());
                Some(s.trim().to_string())
            }
            other => {
                self.error(key, &format!("expected text, got {}", describe(&other, key)));
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.present(key)?.clone() {
            Value::Bool(b) => {
                self.applied.push(key.to_string());
                Some(b)
            }
            other => {
                self.error(key, &format!("expected true or false, got {}", describe(&other, key)));
                None
            }
        }
    }

    fn uint(&mut self, key: &str) -> Option<u32> {
        let value = self.present(key)?.clone();
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => {
                self.applied.push(key.to_string());
                Some(n)
            }
            None => {
                self.error(key, &format!("expected a whole number >= 0, got {}", describe(&value, key)));
                None
            }
        }
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        let value = self.present(key)?.clone();
        let port = match &value {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.trim().parse::<u16>().ok(),
            _ => None,
        };
        match port {
            Some(port) if port > 0 => {
                self.applied.push(key.to_string());
                Some(port)
            }
            _ => {
                self.error(key, &format!("expected a port 1-65535, got {}", describe(&value, key)));
                None
            }
        }
    }

    fn log_level(&mut self, key: &str) -> Option<LogLevel> {
        let value = self.present(key)?.clone();
        match serde_json::from_value::<LogLevel>(value.clone()) {
            Ok(level) => {
                self.applied.push(key.to_string());
                Some(level)
            }
            Err(_) => {
                self.error(
                    key,
                    &format!(
                        "expected one of trace, debug, info, notice, warning, error, fatal; got {}",
                        describe(&value, key)
                    ),
                );
                None
            }
        }
    }

    fn subnets(&mut self, key: &str) -> Vec<Ipv4Net> {
        let Some(value) = self.present(key).cloned() else {
            return Vec::new();
        };
        let items: Vec<Value> = match value {
            Value::Array(items) => items,
            Value::String(s) => s.split(',').map(|p| Value::String(p.trim().into())).collect(),
            other => {
                self.error(key, &format!("expected a list of CIDR subnets, got {}", describe(&other, key)));
                return Vec::new();
            }
        };

        let mut subnets = Vec::new();
        for item in items {
            match item.as_str().map(parse_ipv4_net) {
                Some(Ok(net)) => subnets.push(net),
                Some(Err(e)) => self.errors.push(format!("option '{key}' entry is invalid: {e}; ignored")),
                None => self.errors.push(format!(
                    "option '{key}' entry {} is not text; ignored",
                    describe(&item, key)
                )),
            }
        }
        if !subnets.is_empty() {
            self.applied.push(key.to_string());
        }
        subnets
    }

    fn finish(mut self, mut settings: Settings) -> Settings {
        self.applied.sort();
        self.applied.dedup();
        settings.config_errors = self.errors;
        settings.applied_options = self.applied;
        settings
    }
}

/// Describes a JSON value for an error message, hiding secrets.
fn describe(value: &Value, key: &str) -> String {
    if SECRET_KEYS.contains(&key) {
        return "a value of the wrong type".into();
    }
    let text = value.to_string();
    if text.chars().count() > 60 {
        let short: String = text.chars().take(60).collect();
        format!("{short}...")
    } else {
        text
    }
}

/// Names the options that were applied, with secrets shown as `***`, for the start-up log.
pub fn describe_applied(settings: &Settings) -> String {
    settings
        .applied_options
        .iter()
        .map(|key| {
            if SECRET_KEYS.contains(&key.as_str()) {
                format!("{key}=***")
            } else {
                key.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("venus.local").unwrap(),
            HostPort { host: "venus.local".into(), port: None }
        );
        assert_eq!(
            parse_host_port("10.0.0.5:8883").unwrap(),
            HostPort { host: "10.0.0.5".into(), port: Some(8883) }
        );
        assert_eq!(
            parse_host_port("[fe80::1]:1883").unwrap(),
            HostPort { host: "fe80::1".into(), port: Some(1883) }
        );
        assert_eq!(parse_host_port("fe80::1").unwrap().port, None);
    }

    #[test]
    fn host_port_rejects_bad_ports() {
        assert!(parse_host_port("host:0").is_err());
        assert!(parse_host_port("host:99999").is_err());
        assert!(parse_host_port("host:abc").is_err());
        assert!(parse_host_port(":1883").is_err());
        assert!(parse_host_port("").is_err());
    }

    #[test]
    fn cidr_parsing() {
        let net = parse_ipv4_net("192.168.1.77/24").unwrap();
        assert_eq!(net.to_string(), "192.168.1.0/24");
        assert!(net.contains("192.168.1.200".parse().unwrap()));
        assert!(!net.contains("192.168.2.1".parse().unwrap()));
        assert!(parse_ipv4_net("192.168.1.0/33").is_err());
        assert!(parse_ipv4_net("192.168.1.0").is_err());
    }

    #[test]
    fn options_file_bad_value_is_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("options.json");
        std::fs::write(
            &path,
            r#"{"gx_host": "10.1.2.3", "gx_port": "not a port", "scan": "yes",
                "log_level": "debug", "gx_password": 424242, "mystery": 1}"#,
        )
        .unwrap();
        let args = RunArgs { options: Some(path), ..Default::default() };
        let settings = merge(&args, false);

        assert_eq!(settings.gx, GxTarget::Fixed(HostPort { host: "10.1.2.3".into(), port: None }));
        assert!(settings.scan, "an invalid 'scan' keeps the default");
        assert_eq!(settings.log_level, LogLevel::Debug);
        assert_eq!(settings.config_errors.len(), 4, "{:?}", settings.config_errors);
        assert!(settings.config_errors.iter().all(|e| !e.contains("424242")), "secret value leaked");
    }

    #[test]
    fn flags_win_over_options_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("options.json");
        std::fs::write(&path, r#"{"gx_host": "10.1.2.3", "gx_tls": true}"#).unwrap();
        let args = RunArgs {
            options: Some(path),
            gx: Some("10.9.9.9:1884".into()),
            gx_tls: Some(false),
            ..Default::default()
        };
        let settings = merge(&args, false);
        assert_eq!(
            settings.gx,
            GxTarget::Fixed(HostPort { host: "10.9.9.9".into(), port: Some(1884) })
        );
        assert!(!settings.gx_tls);
    }
}
