//! The words of each persistent notification: a fixed id per problem the user must fix
//! (`roamcore_victron_<status>`), a title and a Markdown message with the steps to take.

use crate::status::BridgeStatus;

/// One persistent notification: what the user sees in Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Stable per problem, e.g. `roamcore_victron_mqtt_disabled`.
    pub id: String,
    pub title: String,
    /// Markdown, as Home Assistant renders it.
    pub message: String,
}

/// Builds the notice for `status`, or `None` when the status needs nothing from the user.
/// `detail` is the bridge's own sentence about the case (GX address and portal id, the GX
/// devices seen, the invalid options). It becomes a paragraph of its own and may be empty.
pub fn notice_for(status: BridgeStatus, detail: &str) -> Option<Notice> {
    if !status.needs_user() {
        return None;
    }
    let detail = detail.trim();
    let (title, message) = match status {
        BridgeStatus::MqttDisabled => (
            "Victron GX: MQTT access is off",
            "RoamCore Victron found a Victron GX, but MQTT access is switched off on \
                 it, so no values can be read.\n\n\
                 On the GX (its screen or Remote Console), open **Settings → Integrations → \
                 MQTT Access** and switch it on. On Venus OS before 3.50 the switch is under \
                 **Settings → Services**. The bridge connects by itself once MQTT is on; \
                 nothing needs restarting.".to_string(),
        ),
        BridgeStatus::AuthRequired => (
            "Victron GX: password needed",
            "The Victron GX rejected RoamCore Victron's login. Its local network \
                 security profile (Secured or Weak) protects MQTT with the GX password.\n\n\
                 Open the RoamCore Victron add-on's **Configuration** tab, enter the GX \
                 password (the one for Remote Console and the GX web page) as **GX \
                 password**, switch on **Use TLS** if the profile is Secured, save and \
                 restart the add-on. The profile is shown on the GX under **Settings → \
                 General → Access & Security**.".to_string(),
        ),
        BridgeStatus::TlsUntrusted => (
            "Victron GX: certificate changed",
            "The Victron GX presented a TLS certificate that differs from the one \
                 RoamCore Victron stored when it first connected, so the bridge does not \
                 trust it and stays disconnected.\n\n\
                 This is expected after a factory reset or a replacement of the GX. It can \
                 also mean that another device answers at the GX's address. If you reset or \
                 replaced the GX, switch on the add-on option **Trust the GX's new \
                 certificate** once and restart the add-on.".to_string(),
        ),
        BridgeStatus::MultipleGx => (
            "Victron GX: more than one found",
            "RoamCore Victron sees more than one Victron GX on the network and will \
                 not guess which one belongs to this vehicle.\n\n\
                 Enter the portal id of yours as **GX portal id** in the RoamCore Victron \
                 add-on's **Configuration** tab, save and restart the add-on. The GX shows \
                 its portal id under **Settings → VRM**, and it is printed on its label.".to_string(),
        ),
        BridgeStatus::ConfigError => (
            "RoamCore Victron: invalid option",
            "Some options of the RoamCore Victron add-on are invalid and were ignored.\n\n\
                 Correct them in the add-on's **Configuration** tab, save and restart the \
                 add-on. The add-on log names each invalid option.".to_string(),
        ),
        _ => return None,
    };
    let message = if detail.is_empty() { message } else { format!("{message}\n\n**What the bridge reports:** {detail}") };
    Some(Notice {
        id: format!("roamcore_victron_{}", status.as_str()),
        title: title.to_string(),
        message,
    })
}

/// A `config_error` that comes from where the options point the bridge, not from an
/// invalid value. Each case has its own notice under the `config_error` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupProblem {
    /// The broker at `host` belongs to the GX `found`, but the bridge is set to use the
    /// GX `expected` (the `portal_id` option, or the GX adopted before).
    WrongGx { host: String, found: String, expected: String },
    /// Scanning is off and no GX address is set or remembered, so there is no GX to use.
    NoGxToFind,
}

impl SetupProblem {
    /// Builds the notice for this problem. Its text names everything the owner needs, so
    /// no detail paragraph is added.
    pub fn notice(&self) -> Notice {
        let (title, message) = match self {
            SetupProblem::WrongGx { host, found, expected } => (
                "Victron GX: a different GX answers",
                format!(
                    "The Victron GX at {host} has portal id **{found}**, but RoamCore Victron \
                     is set to use the GX with portal id **{expected}**, so it does not read \
                     this one.\n\n\
                     If the GX at {host} is yours (for example a replacement), enter \
                     **{found}** as **GX portal id** in the RoamCore Victron add-on's \
                     **Configuration** tab. Otherwise set **GX address** to the address of \
                     the GX {expected}. Then save and restart the add-on."
                ),
            ),
            SetupProblem::NoGxToFind => (
                "Victron GX: no address and no search",
                "**Search the network** is switched off and no **GX address** is set, so \
                 RoamCore Victron has no GX to connect to.\n\n\
                 In the RoamCore Victron add-on's **Configuration** tab, enter the GX's \
                 address (for example 192.168.1.20 or venus.local) as **GX address**, or \
                 switch **Search the network** back on. Then save and restart the add-on."
                    .to_string(),
            ),
        };
        Notice {
            id: format!("roamcore_victron_{}", BridgeStatus::ConfigError.as_str()),
            title: title.to_string(),
            message,
        }
    }
}

/// Returns the id of every notice that [`notice_for`] can build, one per status that
/// waits for the user.
pub fn notice_ids() -> Vec<String> {
    BridgeStatus::ALL
        .into_iter()
        .filter(|status| status.needs_user())
        .map(|status| format!("roamcore_victron_{}", status.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_status_has_a_notice() {
        for status in BridgeStatus::ALL {
            let notice = notice_for(status, "10.0.0.5, portal c0619ab0d0e1");
            assert_eq!(notice.is_some(), status.needs_user(), "{status}");
            if let Some(notice) = notice {
                assert_eq!(notice.id, format!("roamcore_victron_{}", status.as_str()));
                assert!(notice.message.contains("10.0.0.5"), "{status}: detail missing");
                assert!(!notice.title.is_empty());
            }
        }
    }

    #[test]
    fn notice_without_detail_reads_cleanly() {
        let notice = notice_for(BridgeStatus::MqttDisabled, "").unwrap();
        assert!(notice.message.starts_with("RoamCore Victron found a Victron GX, but"));
        let notice = notice_for(BridgeStatus::ConfigError, " ").unwrap();
        assert!(notice.message.contains("were ignored.\n"), "{}", notice.message);
    }

    #[test]
    fn wrong_gx_notice_names_both_portals() {
        let problem = SetupProblem::WrongGx {
            host: "192.0.2.10:1883".into(),
            found: "c0619ab0d0e1".into(),
            expected: "c0619ab0aaaa".into(),
        };
        let notice = problem.notice();
        assert_eq!(notice.id, "roamcore_victron_config_error");
        assert!(!notice.title.contains("invalid"), "{}", notice.title);
        assert!(notice.message.contains("192.0.2.10:1883"), "{}", notice.message);
        assert!(notice.message.contains("**c0619ab0d0e1**"), "{}", notice.message);
        assert!(notice.message.contains("**c0619ab0aaaa**"), "{}", notice.message);
        assert!(notice.message.contains("**GX portal id**"), "{}", notice.message);
        assert!(!notice.message.contains("ignored"), "{}", notice.message);
    }

    #[test]
    fn no_gx_notice_names_both_options() {
        let notice = SetupProblem::NoGxToFind.notice();
        assert_eq!(notice.id, "roamcore_victron_config_error");
        assert!(!notice.title.contains("invalid"), "{}", notice.title);
        assert!(notice.message.contains("**GX address**"), "{}", notice.message);
        assert!(notice.message.contains("**Search the network**"), "{}", notice.message);
        assert!(!notice.message.contains("ignored"), "{}", notice.message);
    }

    #[test]
    fn notice_ids_cover_user_statuses() {
        let ids = notice_ids();
        assert_eq!(ids.len(), 5, "{ids:?}");
        for status in BridgeStatus::ALL.into_iter().filter(|status| status.needs_user()) {
            let notice = notice_for(status, "").unwrap();
            assert!(ids.contains(&notice.id), "{} missing from {ids:?}", notice.id);
        }
    }
}
