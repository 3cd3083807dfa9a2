//! Venus OS MQTT topic grammar.
//!
//! Values arrive as `N/<portal>/<service type>/<instance>/<D-Bus path>`. The service type
//! is the third dot-component of the D-Bus service name (`com.victronenergy.battery.ttyS7`
//! -> `battery`); the instance is the service's `/DeviceInstance`, or the text of
//! `/Identifier`, so it is not always a number (`vecan0` occurs on real systems); the
//! D-Bus path keeps its slashes, so a topic splits into at most five parts
//! (dbus-flashmq `splitToVector(topic, '/', 4)`). Besides values, dbus-flashmq publishes
//! `N/<portal>/heartbeat`, `N/<portal>/full_publish_completed` and `N/<portal>/keepalive`.

/// Longest topic we look at. Real topics are under 120 bytes; longer ones are dropped
/// before any parsing so a hostile or broken publisher cannot make us hash megabytes.
pub const MAX_TOPIC_LEN: usize = 512;

/// A parsed GX topic, borrowing from the topic string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GxTopic<'a> {
    Value { portal: &'a str, service: &'a str, instance: &'a str, path: &'a str },
    Heartbeat { portal: &'a str },
    FullPublishCompleted { portal: &'a str },
    Keepalive { portal: &'a str },
}

/// Why a topic was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    NotNotification,
    TooLong,
    Malformed,
}

impl TopicError {
    pub fn describe(self) -> &'static str {
        match self {
            TopicError::NotNotification => "not an N/ notification topic",
            TopicError::TooLong => "topic longer than 512 bytes",
            TopicError::Malformed => "topic does not match N/<portal>/<type>/<instance>/<path>",
        }
    }
}

pub fn parse(topic: &str) -> Result<GxTopic<'_>, TopicError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let rest = topic.strip_prefix("N/").ok_or(TopicError::NotNotification)?;

    let mut parts = rest.splitn(4, '/');
    let portal = parts.next().filter(|p| !p.is_empty()).ok_or(TopicError::Malformed)?;
    let second = parts.next().ok_or(TopicError::Malformed)?;
    let instance = match parts.next() {
        Some(instance) => instance,
        None => {
            return match second {
                "heartbeat" => Ok(GxTopic::Heartbeat { portal }),
                "full_publish_completed" => Ok(GxTopic::FullPublishCompleted { portal }),
                "keepalive" => Ok(GxTopic::Keepalive { portal }),
                _ => Err(TopicError::Malformed),
            };
        }
    };
    let path = parts.next().ok_or(TopicError::Malformed)?;

    if second.is_empty() || instance.is_empty() || path.is_empty() {
        return Err(TopicError::Malformed);
    }
    Ok(GxTopic::Value { portal, service: second, instance, path })
}

/// The topics the bridge sends and subscribes to for one GX.
pub fn keepalive_topic(portal: &str) -> String {
    format!("R/{portal}/keepalive")
}

/// Subscribed before the portal id is known; the GX retains this one topic.
pub const SERIAL_FILTER: &str = "N/+/system/0/Serial";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_topics() {
        assert_eq!(
            parse("N/c0619ab0d0e1/battery/275/Dc/0/Voltage"),
            Ok(GxTopic::Value {
                portal: "c0619ab0d0e1",
                service: "battery",
                instance: "275",
                path: "Dc/0/Voltage"
            })
        );
        assert_eq!(
            parse("N/c0619ab0d0e1/vecan/vecan0/Link/0/Status"),
            Ok(GxTopic::Value {
                portal: "c0619ab0d0e1",
                service: "vecan",
                instance: "vecan0",
                path: "Link/0/Status"
            })
        );
    }

    #[test]
    fn special_topics() {
        assert_eq!(parse("N/x/heartbeat"), Ok(GxTopic::Heartbeat { portal: "x" }));
        assert_eq!(
            parse("N/x/full_publish_completed"),
            Ok(GxTopic::FullPublishCompleted { portal: "x" })
        );
        assert_eq!(parse("N/x/keepalive"), Ok(GxTopic::Keepalive { portal: "x" }));
    }

    #[test]
    fn malformed_topics() {
        assert_eq!(parse("R/x/keepalive"), Err(TopicError::NotNotification));
        assert_eq!(parse("N/"), Err(TopicError::Malformed));
        assert_eq!(parse("N/x/other"), Err(TopicError::Malformed));
        assert_eq!(parse("N/x/battery/1"), Err(TopicError::Malformed));
        assert_eq!(parse("N/x/battery//Soc"), Err(TopicError::Malformed));
        assert_eq!(parse("N//battery/1/Soc"), Err(TopicError::Malformed));
        let long = format!("N/x/battery/1/{}", "a".repeat(600));
        assert_eq!(parse(&long), Err(TopicError::TooLong));
    }
}
