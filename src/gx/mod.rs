//! The GX side: Venus OS topics and payloads, the keepalive state machine and the MQTT
//! link to the GX's broker.

pub mod payload;
pub mod republish;
pub mod session;
pub mod tls;
pub mod topic;
