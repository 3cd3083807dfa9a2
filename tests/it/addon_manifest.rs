//! The add-on manifest (`roamcore_victron/config.json`) against the rules that decide
//! whether Home Assistant accepts it, and the options against the daemon, the docs and
//! the translations.
//!
//! The rules are restated here from their sources, not loaded from them:
//! * the Supervisor's manifest schema, `supervisor/apps/validate.py` and
//!   `supervisor/apps/options.py` (home-assistant/supervisor, August 2026);
//! * the add-on linter, `src/lint.py` and `src/config.schema.json` of
//!   frenck/action-addon-linter v2.21, which the workflow runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use roamcore_victron::config::OPTION_KEYS;
use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn addon_dir() -> PathBuf {
    repo_root().join("roamcore_victron")
}

fn manifest() -> Map<String, Value> {
    let text = std::fs::read_to_string(addon_dir().join("config.json")).expect("read config.json");
    match serde_json::from_str(&text).expect("config.json is valid JSON") {
        Value::Object(map) => map,
        other => panic!("config.json is not an object: {other}"),
    }
}

fn read_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{} must hold one YAML document", path.display());
    docs.remove(0)
}

/// Every key that the linter's JSON schema allows (`additionalProperties: false`).
const KNOWN_KEYS: &[&str] = &[
    "advanced", "apparmor", "arch", "audio", "auth_api", "auto_uart", "backup",
    "backup_exclude", "backup_pre", "backup_post", "boot", "breaking_versions", "codenotary",
    "description", "devices", "devicetree", "discovery", "docker_api", "environment",
    "full_access", "gpio", "hassio_api", "hassio_role", "homeassistant", "homeassistant_api",
    "host_dbus", "host_ipc", "host_network", "host_pid", "host_uts", "image", "ingress",
    "ingress_entry", "ingress_port", "ingress_stream", "init", "journald", "kernel_modules",
    "legacy", "machine", "map", "name", "options", "panel_admin", "panel_icon", "panel_title",
    "ports", "ports_description", "privileged", "realtime", "schema", "services", "slug",
    "stage", "startup", "stdin", "timeout", "tmpfs", "uart", "udev", "ulimits", "url", "usb",
    "version", "video", "watchdog", "webui",
];

/// Keys whose value equals the default: the linter reports "should be removed, it uses
/// a default value" for each of these.
fn default_values() -> BTreeMap<&'static str, Value> {
    let mut defaults = BTreeMap::new();
    for key in [
        "advanced", "audio", "auth_api", "auto_uart", "devicetree", "docker_api", "full_access",
        "gpio", "hassio_api", "homeassistant_api", "host_dbus", "host_ipc", "host_network",
        "host_pid", "host_uts", "ingress", "ingress_stream", "journald", "kernel_modules",
        "legacy", "realtime", "stdin", "tmpfs", "uart", "udev", "usb", "video",
    ] {
        defaults.insert(key, json!(false));
    }
    for key in ["apparmor", "init", "panel_admin"] {
        defaults.insert(key, json!(true));
    }
    defaults.insert("backup", json!("hot"));
    defaults.insert("boot", json!("auto"));
    defaults.insert("hassio_role", json!("default"));
    defaults.insert("homeassistant", json!(false));
    defaults.insert("ingress_port", json!(8099));
    defaults.insert("options", json!({}));
    defaults.insert("panel_icon", json!("mdi:puzzle"));
    defaults.insert("schema", json!({}));
    defaults.insert("stage", json!("stable"));
    defaults.insert("startup", json!("application"));
    defaults.insert("timeout", json!(10));
    defaults.insert("ulimits", json!({}));
    defaults
}

#[test]
fn manifest_has_required_keys() {
    let config = manifest();
    for key in ["name", "version", "slug", "description", "arch"] {
        let value = config.get(key).unwrap_or_else(|| panic!("required key '{key}' is missing"));
        match value {
            Value::String(s) => assert!(!s.trim().is_empty(), "'{key}' is empty"),
            Value::Array(items) => assert!(!items.is_empty(), "'{key}' is empty"),
            other => panic!("'{key}' has an unexpected type: {other}"),
        }
    }
}

#[test]
fn manifest_keys_are_known() {
    let config = manifest();
    for key in config.keys() {
        assert!(KNOWN_KEYS.contains(&key.as_str()), "unknown manifest key '{key}'");
    }
}

#[test]
fn manifest_has_no_default_values() {
    let config = manifest();
    for (key, default) in default_values() {
        if let Some(value) = config.get(key) {
            assert_ne!(value, &default, "'{key}' should be removed, it uses the default value");
        }
    }
}

#[test]
fn manifest_has_no_deprecated_keys() {
    let config = manifest();
    // The linter errors on these, or warns and the Supervisor ignores them.
    for key in ["watchdog", "codenotary", "auto_uart", "advanced", "full_access", "devices"] {
        assert!(!config.contains_key(key), "'{key}' is deprecated or obsolete");
    }
    for key in ["snapshot", "snapshot_exclude", "snapshot_pre", "snapshot_post"] {
        assert!(!config.contains_key(key), "'{key}' was renamed to backup*");
    }
    if config.get("ingress") == Some(&json!(true)) {
        assert!(!config.contains_key("webui"), "'webui' must go when ingress is on");
    }
}

#[test]
fn manifest_values_are_allowed() {
    let config = manifest();

    // Only aarch64 and amd64 are current; armhf, armv7 and i386 are unsupported since
    // Home Assistant 2025.12.
    let arch: BTreeSet<&str> =
        config["arch"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(arch, BTreeSet::from(["aarch64", "amd64"]));

    let slug = config["slug"].as_str().unwrap();
    assert!(
        slug.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "slug '{slug}' does not match [-_.A-Za-z0-9]+"
    );

    let startup = config["startup"].as_str().unwrap();
    assert!(["initialize", "system", "services", "application", "once"].contains(&startup));

    for service in config["services"].as_array().unwrap() {
        let service = service.as_str().unwrap();
        let (name, rights) = service.split_once(':').unwrap_or(("", ""));
        assert!(["mqtt", "mysql"].contains(&name), "service '{service}'");
        assert!(["provide", "want", "need"].contains(&rights), "service '{service}'");
    }

    if let Some(privileged) = config.get("privileged") {
        for capability in privileged.as_array().unwrap() {
            assert!(
                [
                    "BPF", "DAC_READ_SEARCH", "IPC_LOCK", "NET_ADMIN", "NET_RAW", "PERFMON",
                    "SYS_ADMIN", "SYS_MODULE", "SYS_NICE", "SYS_PTRACE", "SYS_RAWIO",
                    "SYS_RESOURCE", "SYS_TIME"
                ]
                .contains(&capability.as_str().unwrap()),
                "capability {capability}"
            );
        }
    }
    assert!(config["tmpfs"].is_boolean(), "tmpfs must be a boolean (the string form is deprecated)");
}

/// The Supervisor's rule for `image`: a registry (lower case) and path components of
/// `[a-z0-9{][a-z0-9.\-_{}]*`, with no tag, since the tag is the `version`.
#[test]
fn manifest_image_name_is_valid() {
    let config = manifest();
    let image = config["image"].as_str().expect("prebuilt images need 'image'");
    let (registry, path) = image.split_once('/').expect("image has a registry and a path");
    assert_eq!(registry, registry.to_lowercase(), "registry must be lower case");
    assert!(registry.contains('.'), "registry '{registry}' is not a domain");
    assert!(!path.contains(':'), "image '{image}' must not carry a tag");
    for component in path.split('/') {
        let mut chars = component.chars();
        let first = chars.next().expect("empty image path component");
        assert!(first.is_ascii_lowercase() || first.is_ascii_digit() || first == '{', "{component}");
        assert!(
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_{}".contains(c)),
            "invalid image path component '{component}'"
        );
    }
}

fn version_parts(text: &str) -> Vec<u32> {
    text.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("'{text}' is not a version"))).collect()
}

#[test]
fn manifest_version_matches_crate() {
    let config = manifest();
    let version = config["version"].as_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "image tag (= version) and crate version differ");

    // The Dockerfile's default BUILD_VERSION labels local builds; keep it in step.
    let dockerfile = std::fs::read_to_string(addon_dir().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("ARG BUILD_VERSION={version}")),
        "Dockerfile's ARG BUILD_VERSION differs from {version}"
    );
}

/// `default_entity_id` in MQTT Discovery needs Home Assistant 2025.10 or later.
#[test]
fn manifest_requires_core_2025_10() {
    let config = manifest();
    let minimum = config["homeassistant"].as_str().expect("'homeassistant' sets the minimum Core version");
    assert!(version_parts(minimum) >= vec![2025, 10, 0], "minimum Core {minimum} is older than 2025.10.0");
}

#[test]
fn manifest_product_settings() {
    let config = manifest();
    assert_eq!(config["slug"], "roamcore_victron");
    assert_eq!(config["startup"], "services", "retained discovery must be in place before Core starts");
    assert_eq!(config["host_network"], true, "SSDP, mDNS and ARP need the LAN");
    assert_eq!(config["homeassistant_api"], true, "persistent notifications use the Core API proxy");
    assert_eq!(config["tmpfs"], true, "the health file must live in RAM");
    assert!(config["services"].as_array().unwrap().contains(&json!("mqtt:need")));
    assert!(!config.contains_key("privileged"), "the scanners need no extra capabilities");
    assert!(!config.contains_key("init"), "the image has no s6 init, so init stays at its default");
}

/// Checks one schema type string against the Supervisor's element grammar
/// (`RE_SCHEMA_ELEMENT` in `supervisor/apps/options.py`).
fn schema_element_is_valid(element: &str) -> bool {
    let element = element.strip_suffix('?').unwrap_or(element);
    let range = |inner: &str, number: fn(&str) -> bool| {
        let Some((min, max)) = inner.split_once(',') else { return false };
        (min.is_empty() || number(min)) && (max.is_empty() || number(max))
    };
    let integer = |s: &str| s.strip_prefix('-').unwrap_or(s).chars().all(|c| c.is_ascii_digit()) && !s.is_empty();
    let float = |s: &str| s.strip_prefix('-').unwrap_or(s).parse::<f64>().is_ok();
    let unsigned = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());

    if ["bool", "email", "url", "port", "str", "password", "int", "float", "device"].contains(&element) {
        return true;
    }
    let Some((kind, rest)) = element.split_once('(') else { return false };
    let Some(inner) = rest.strip_suffix(')') else { return false };
    match kind {
        "str" | "password" => range(inner, unsigned),
        "int" => range(inner, integer),
        "float" => range(inner, float),
        "match" => true,
        "list" => !inner.is_empty(),
        "device" => inner.starts_with("subsystem="),
        _ => false,
    }
}

/// Validates one option value against its schema type, as the Supervisor does before
/// it writes `options.json`.
fn option_value_is_valid(element: &str, value: &Value) -> bool {
    let element = element.strip_suffix('?').unwrap_or(element);
    let kind = element.split('(').next().unwrap();
    match (kind, value) {
        ("bool", Value::Bool(_)) => true,
        ("str" | "password" | "match", Value::String(_)) => true,
        ("int", Value::Number(n)) => n.is_i64(),
        ("port", Value::Number(n)) => n.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
        ("list", Value::String(s)) => {
            let inner = &element["list(".len()..element.len() - 1];
            inner.split('|').any(|choice| choice == s)
        }
        _ => false,
    }
}

#[test]
fn schema_elements_are_valid() {
    let config = manifest();
    let schema = config["schema"].as_object().unwrap();
    for (key, element) in schema {
        let elements: Vec<&str> = match element {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => {
                assert_eq!(items.len(), 1, "list schema '{key}' must have one element type");
                vec![items[0].as_str().unwrap()]
            }
            other => panic!("schema '{key}' has an unexpected form: {other}"),
        };
        for element in elements {
            assert!(schema_element_is_valid(element), "schema '{key}': '{element}' is not a valid type");
        }
    }
    assert!(schema_element_is_valid("int(0,3650)"));
    assert!(schema_element_is_valid("list(a|b)?"));
    assert!(!schema_element_is_valid("integer"));
    assert!(!schema_element_is_valid("int(a,3)"));
}

#[test]
fn options_match_schema() {
    let config = manifest();
    let schema = config["schema"].as_object().unwrap();
    let options = config["options"].as_object().unwrap();

    for (key, value) in options {
        let element = schema.get(key).unwrap_or_else(|| panic!("option '{key}' has no schema entry"));
        match (element, value) {
            (Value::Array(types), Value::Array(items)) => {
                let element = types[0].as_str().unwrap();
                for item in items {
                    assert!(option_value_is_valid(element, item), "option '{key}' item {item}");
                }
            }
            (Value::String(element), value) => {
                assert!(option_value_is_valid(element, value), "option '{key}' = {value} vs {element}")
            }
            other => panic!("option '{key}': schema and value forms differ: {other:?}"),
        }
    }

    // The Supervisor refuses to start an add-on whose required (no '?') options are missing.
    for (key, element) in schema {
        let element = match element {
            Value::Array(types) => types[0].as_str().unwrap(),
            other => other.as_str().unwrap(),
        };
        let optional = element.ends_with('?') || schema[key].is_array();
        assert!(optional || options.contains_key(key), "required option '{key}' has no default");
    }

    assert_eq!(schema["gx_password"], "password?", "the GX password must be a password field");
}

#[test]
fn options_cover_daemon_keys() {
    let config = manifest();
    let schema: BTreeSet<&str> = config["schema"].as_object().unwrap().keys().map(String::as_str).collect();
    let daemon: BTreeSet<&str> = OPTION_KEYS.iter().copied().collect();
    assert_eq!(schema, daemon, "manifest schema and the daemon's OPTION_KEYS differ");
}

#[test]
fn options_are_documented() {
    let docs = std::fs::read_to_string(addon_dir().join("DOCS.md")).unwrap();
    for key in OPTION_KEYS {
        assert!(docs.contains(&format!("### Option: `{key}`")), "DOCS.md has no section for '{key}'");
    }
}

#[test]
fn options_are_translated() {
    let translations = read_yaml(&addon_dir().join("translations/en.yaml"));
    let configuration = &translations["configuration"];
    assert!(!configuration.is_badvalue(), "en.yaml has no 'configuration' map");
    for key in OPTION_KEYS {
        let entry = &configuration[*key];
        let name = entry["name"].as_str().unwrap_or_else(|| panic!("en.yaml: '{key}' has no name"));
        let description =
            entry["description"].as_str().unwrap_or_else(|| panic!("en.yaml: '{key}' has no description"));
        assert!(!name.trim().is_empty(), "en.yaml: '{key}' name is empty");
        assert!(!description.trim().is_empty(), "en.yaml: '{key}' description is empty");
    }
}

#[test]
fn repository_yaml_is_valid() {
    let repository = read_yaml(&repo_root().join("repository.yaml"));
    let name = repository["name"].as_str().expect("repository.yaml needs 'name'");
    assert!(!name.trim().is_empty());
    if let Some(url) = repository["url"].as_str() {
        assert!(url.starts_with("https://"), "url '{url}'");
    }
}

#[test]
fn addon_folder_is_complete() {
    let dir = addon_dir();
    for file in [
        "config.json", "Dockerfile", "apparmor.txt", "DOCS.md", "README.md", "CHANGELOG.md",
        "translations/en.yaml", "icon.png", "logo.png",
    ] {
        assert!(dir.join(file).is_file(), "roamcore_victron/{file} is missing");
    }
    // The Supervisor reads any config.* in the repository as an add-on manifest.
    for file in ["config.yaml", "config.yml"] {
        assert!(!dir.join(file).exists(), "a second manifest {file} would conflict");
    }
}

/// Reads width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (width, height)
}

#[test]
fn icon_and_logo_sizes() {
    assert_eq!(png_size(&addon_dir().join("icon.png")), (128, 128));
    assert_eq!(png_size(&addon_dir().join("logo.png")), (250, 100));
}

#[test]
fn apparmor_profile_has_one_profile() {
    // The Supervisor renames the single top-level `profile NAME` to the installed slug
    // and rejects a file with none or several.
    let text = std::fs::read_to_string(addon_dir().join("apparmor.txt")).unwrap();
    let profiles: Vec<&str> = text.lines().filter(|line| line.starts_with("profile ")).collect();
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    assert!(profiles[0].starts_with("profile roamcore_victron "), "{}", profiles[0]);
}
