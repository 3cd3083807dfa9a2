//! The sentences a van owner reads in the bridge status and in Home Assistant
//! notifications. Each sentence names what was found and what to do on the GX.

use std::net::IpAddr;

use super::GxSeen;

/// "Cerbo GX, portal id c0619ab0d0e1", or just the portal id part when the model is
/// unknown.
fn identity(model: Option<&str>, portal_id: Option<&str>) -> String {
    match (model, portal_id) {
        (Some(model), Some(id)) => format!(" ({model}, portal id {id})"),
        (Some(model), None) => format!(" ({model})"),
        (None, Some(id)) => format!(" (portal id {id})"),
        (None, None) => String::new(),
    }
}

pub fn searching(scan: bool) -> String {
    if scan {
        "Looking for a Victron GX on the local network (SSDP, mDNS, then a slow scan of the \
         local subnet)."
            .to_string()
    } else {
        "Scanning is off and no GX address is configured. Set the GX host in the add-on \
         options, or switch scanning on."
            .to_string()
    }
}

pub fn searching_for(portal_id: &str, last: Option<IpAddr>) -> String {
    match last {
        Some(host) => format!(
            "Looking for the adopted GX (portal id {portal_id}); it was last seen at {host}."
        ),
        None => format!("Looking for the GX with portal id {portal_id}."),
    }
}

pub fn validating(host: IpAddr) -> String {
    format!("Checking {host}: connecting to its MQTT broker to read the portal id.")
}

pub fn mqtt_disabled(host: IpAddr, model: Option<&str>, portal_id: Option<&str>) -> String {
    format!(
        "Found a Victron GX at {host}{}, but MQTT access is off. On the GX open Settings -> \
         Integrations and switch on MQTT Access.",
        identity(model, portal_id)
    )
}

pub fn auth_required(
    host: IpAddr,
    model: Option<&str>,
    portal_id: Option<&str>,
    password_given: bool,
) -> String {
    let fix = if password_given {
        "The GX rejected the password in the add-on options. Enter the GX's password (the \
         one for Remote Console and the web login, under Settings -> General -> Access & \
         Security) in the option gx_password."
    } else {
        "The GX needs a password. Enter the GX's password (the one for Remote Console and \
         the web login, under Settings -> General -> Access & Security) in the option \
         gx_password."
    };
    format!("Found a Victron GX at {host}{}. {fix}", identity(model, portal_id))
}

pub fn tls_untrusted(host: IpAddr, portal_id: &str) -> String {
    format!(
        "The GX at {host} (portal id {portal_id}) presented a different TLS certificate than \
         the one pinned when it was adopted. If the GX was reset or replaced, run \
         `roamcore-victron adopt {portal_id} --repin` to trust the new certificate; \
         otherwise check what device is answering at {host}."
    )
}

pub fn multiple_gx(seen: &[GxSeen]) -> String {
    let list: Vec<String> = seen
        .iter()
        .map(|gx| match &gx.model {
            Some(model) => format!("{} at {} ({model})", gx.portal_id, gx.host),
            None => format!("{} at {}", gx.portal_id, gx.host),
        })
        .collect();
    format!(
        "Found {} Victron GX devices: {}. Set the option portal_id to the one this bridge \
         should use.",
        seen.len(),
        list.join(", ")
    )
}

pub fn adopted(host: IpAddr, model: Option<&str>, portal_id: &str) -> String {
    format!("Adopted the Victron GX at {host}{}.", identity(model, Some(portal_id)))
}
