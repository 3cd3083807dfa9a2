//! The GX's devices and their latest values, for the stored paths only.

use std::collections::BTreeMap;

use super::paths::{PathId, PathTable};
use super::spec::{Role, ServiceKind};
use crate::gx::payload::GxValue;

/// Identifies a device on the GX: service kind and instance segment of its topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    pub kind: ServiceKind,
    pub instance: Box<str>,
}

impl DeviceId {
    pub fn new(kind: ServiceKind, instance: &str) -> DeviceId {
        DeviceId { kind, instance: instance.into() }
    }

    /// `battery/275`, as in topics; also the identity slots are stored under.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.instance)
    }

    /// Numeric instance for ordering, when the instance is a number.
    pub fn number(&self) -> Option<u32> {
        self.instance.parse().ok()
    }
}

/// One device and its stored values. `None` = never received in this session;
/// `Some(GxValue::Null)` = the GX reports the value as invalid right now.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: DeviceId,
    values: Vec<Option<GxValue>>,
    /// `Alarms/...` paths with their level: 0 ok, 1 warning, 2 alarm.
    pub alarms: BTreeMap<Box<str>, i64>,
    pub present: bool,
}

impl Device {
    fn new(id: DeviceId) -> Device {
        let count = PathTable::get().count(id.kind);
        Device { id, values: vec![None; count], alarms: BTreeMap::new(), present: true }
    }

    pub fn value(&self, path: &str) -> Option<&GxValue> {
        let id = PathTable::get().id(self.id.kind, path)?;
        self.values[id as usize].as_ref()
    }

    pub fn number(&self, path: &str) -> Option<f64> {
        self.value(path).and_then(GxValue::as_f64)
    }

    pub fn text(&self, path: &str) -> Option<&str> {
        self.value(path).and_then(GxValue::as_str)
    }

    /// Returns the name to show: the custom name if set, else the product name.
    pub fn display_name(&self) -> Option<&str> {
        let custom = self.text("CustomName").map(str::trim).filter(|s| !s.is_empty());
        custom.or_else(|| self.text("ProductName").map(str::trim).filter(|s| !s.is_empty()))
    }
}

/// Most devices of one service kind kept. A large yacht has a dozen tanks; more than this
/// is a broken or hostile publisher, whose extra devices are dropped and reported.
pub const MAX_DEVICES_PER_KIND: usize = 64;

/// Most distinct `Alarms/...` paths kept per device (a BMS has about 20).
pub const MAX_ALARMS_PER_DEVICE: usize = 64;

/// Effect of storing one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The value was stored (it may equal the previous one).
    Value { changed: bool, new_device: bool },
    /// An alarm level changed.
    Alarm,
    /// The device left (first zero-byte payload of a present device).
    DeviceGone,
    /// Nothing of interest.
    Ignored,
    /// Dropped: too many devices of this kind, or too many alarm paths on the device.
    TooMany,
}

/// All devices of the current GX.
#[derive(Debug, Default)]
pub struct GxState {
    devices: BTreeMap<DeviceId, Device>,
    /// Instance of the battery monitor `ActiveBatteryService` last named. While that path
    /// is null or the system service is away (systemcalc restarting), this monitor stays
    /// the main one, so no battery's entities show another battery's values meanwhile.
    last_main_battery: Option<Box<str>>,
}

impl GxState {
    pub fn device(&self, id: &DeviceId) -> Option<&Device> {
        self.devices.get(id).filter(|d| d.present)
    }

    pub fn system(&self) -> Option<&Device> {
        self.devices.values().find(|d| d.id.kind == ServiceKind::System && d.present)
    }

    /// Present devices of a kind, in instance order (numeric instances first).
    pub fn of_kind(&self, kind: ServiceKind) -> impl Iterator<Item = &Device> {
        let mut devices: Vec<&Device> =
            self.devices.values().filter(move |d| d.id.kind == kind && d.present).collect();
        devices.sort_by_key(|d| (d.id.number().unwrap_or(u32::MAX), d.id.instance.clone()));
        devices.into_iter()
    }

    pub fn present_devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values().filter(|d| d.present)
    }

    /// Stores a value for a path (already interned).
    pub fn store(&mut self, id: &DeviceId, path: PathId, value: GxValue) -> Stored {
        if id.kind == ServiceKind::System && Some(path) == active_battery_path() {
            if let GxValue::Text(service) = &value {
                self.last_main_battery = battery_instance(service).map(Into::into);
            }
        }
        let Some((device, new_device)) = self.entry(id) else {
            return Stored::TooMany;
        };
        let slot = &mut device.values[path as usize];
        let changed = slot.as_ref() != Some(&value);
        *slot = Some(value);
        Stored::Value { changed, new_device }
    }

    /// Marks the device present without storing anything (a topic we do not keep).
    /// Returns `Some(true)` for a new device, `None` when the device was rejected.
    pub fn touch(&mut self, id: &DeviceId) -> Option<bool> {
        self.entry(id).map(|(_, new_device)| new_device)
    }

    pub fn store_alarm(&mut self, id: &DeviceId, path: &str, level: i64) -> Stored {
        let Some((device, _)) = self.entry(id) else {
            return Stored::TooMany;
        };
        if !device.alarms.contains_key(path) && device.alarms.len() >= MAX_ALARMS_PER_DEVICE {
            return Stored::TooMany;
        }
        let previous = device.alarms.insert(path.into(), level);
        if previous == Some(level) {
            Stored::Ignored
        } else {
            Stored::Alarm
        }
    }

    /// Marks a device gone after a zero-byte payload (it left D-Bus) and drops its values.
    pub fn gone(&mut self, id: &DeviceId) -> Stored {
        // The entry is dropped, not kept as absent: a flood of short-lived instances must
        // not grow memory.
        match self.devices.remove(id) {
            Some(device) if device.present => Stored::DeviceGone,
            _ => Stored::Ignored,
        }
    }

    /// Forgets every device (new session with a GX that may have changed).
    /// Returns the instance of the battery monitor `ActiveBatteryService` last named.
    pub fn last_main_battery(&self) -> Option<&str> {
        self.last_main_battery.as_deref()
    }

    /// Restores the monitor last named as main from before a restart.
    pub fn set_last_main_battery(&mut self, instance: Option<&str>) {
        self.last_main_battery = instance.map(Into::into);
    }

    pub fn clear(&mut self) {
        self.devices.clear();
        self.last_main_battery = None;
    }

    /// Finds or creates a device; `None` when its kind already has the most devices we
    /// keep.
    fn entry(&mut self, id: &DeviceId) -> Option<(&mut Device, bool)> {
        if !self.devices.contains_key(id) {
            let of_kind = self.devices.keys().filter(|d| d.kind == id.kind).count();
            if of_kind >= MAX_DEVICES_PER_KIND {
                return None;
            }
        }
        let mut new_device = false;
        let device = self.devices.entry(id.clone()).or_insert_with(|| {
            new_device = true;
            Device::new(id.clone())
        });
        if !device.present {
            device.present = true;
            new_device = true;
        }
        Some((device, new_device))
    }

    /// Returns the device holding a role right now.
    pub fn role(&self, role: Role) -> Option<&Device> {
        match role {
            Role::MainBattery => self.main_battery(),
            Role::Inverter => self.inverter(),
            Role::MainSolar => self.of_kind(ServiceKind::SolarCharger).next(),
            Role::Gps => {
                let fixed = self.of_kind(ServiceKind::Gps).find(|d| d.number("Fix") == Some(1.0));
                fixed.or_else(|| self.of_kind(ServiceKind::Gps).next())
            }
        }
    }

    /// Returns the battery monitor systemcalc uses: `ActiveBatteryService` is
    /// `com.victronenergy.battery/275`. When the GX uses the inverter's SOC (a vebus
    /// service) there is no main battery monitor. Without the path (old firmware or a
    /// recording), the first battery monitor.
    fn main_battery(&self) -> Option<&Device> {
        let system = self.system();
        match system.and_then(|s| s.value("ActiveBatteryService")) {
            Some(GxValue::Text(service)) => {
                let instance = battery_instance(service)?;
                self.device(&DeviceId::new(ServiceKind::Battery, instance))
            }
            _ => self
                .last_main_battery
                .as_deref()
                .and_then(|instance| self.device(&DeviceId::new(ServiceKind::Battery, instance)))
                .or_else(|| self.of_kind(ServiceKind::Battery).next()),
        }
    }

    /// Returns the inverter/charger systemcalc uses (`VebusInstance`), else the first one.
    fn inverter(&self) -> Option<&Device> {
        let instance = self.system().and_then(|s| s.number("VebusInstance"));
        if let Some(instance) = instance {
            let id = DeviceId::new(ServiceKind::Vebus, &format!("{}", instance as i64));
            if let Some(device) = self.device(&id) {
                return Some(device);
            }
        }
        ServiceKind::INVERTERS.iter().find_map(|kind| self.of_kind(*kind).next())
    }
}

/// Returns the instance of a battery monitor named like `com.victronenergy.battery/289`;
/// `None` for other services (a VE.Bus device used as the battery).
fn battery_instance(service: &str) -> Option<&str> {
    let (name, instance) = service.rsplit_once('/')?;
    name.ends_with(".battery").then_some(instance)
}

/// Returns the path id of `system/0/ActiveBatteryService`.
fn active_battery_path() -> Option<PathId> {
    static ID: std::sync::OnceLock<Option<PathId>> = std::sync::OnceLock::new();
    *ID.get_or_init(|| PathTable::get().id(ServiceKind::System, "ActiveBatteryService"))
}

/// True for paths that carry an alarm level: `Alarms/<Name>`, per-phase
/// `Alarms/L1/<Name>` and tank `Alarms/{Low,High}/State`. Other paths under `Alarms/`
/// (tank alarm `Delay`, `Restore`, `Enable`) are settings, not levels.
pub fn is_alarm_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("Alarms/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [_] => true,
        [phase, _] if matches!(*phase, "L1" | "L2" | "L3") => true,
        [_, "State"] => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_paths() {
        assert!(is_alarm_path("Alarms/LowVoltage"));
        assert!(is_alarm_path("Alarms/L1/Overload"));
        assert!(is_alarm_path("Alarms/High/State"));
        assert!(!is_alarm_path("Alarms/Low/Delay"));
        assert!(!is_alarm_path("Alarms/Low/Restore"));
        assert!(!is_alarm_path("Dc/0/Voltage"));
    }

    #[test]
    fn store_gone_and_return() {
        let table = PathTable::get();
        let soc = table.id(ServiceKind::Battery, "Soc").unwrap();
        let id = DeviceId::new(ServiceKind::Battery, "289");
        let mut state = GxState::default();

        assert_eq!(
            state.store(&id, soc, GxValue::Number(50.0)),
            Stored::Value { changed: true, new_device: true }
        );
        assert_eq!(
            state.store(&id, soc, GxValue::Number(50.0)),
            Stored::Value { changed: false, new_device: false }
        );
        assert_eq!(state.gone(&id), Stored::DeviceGone);
        assert_eq!(state.gone(&id), Stored::Ignored);
        assert!(state.device(&id).is_none());
        assert_eq!(
            state.store(&id, soc, GxValue::Number(51.0)),
            Stored::Value { changed: true, new_device: true }
        );
        assert_eq!(state.device(&id).unwrap().number("Soc"), Some(51.0));
    }

    #[test]
    fn main_battery_follows_active_battery_service() {
        let table = PathTable::get();
        let mut state = GxState::default();
        let system = DeviceId::new(ServiceKind::System, "0");
        let active = table.id(ServiceKind::System, "ActiveBatteryService").unwrap();
        let soc = table.id(ServiceKind::Battery, "Soc").unwrap();
        state.store(&DeviceId::new(ServiceKind::Battery, "275"), soc, GxValue::Number(1.0));
        state.store(&DeviceId::new(ServiceKind::Battery, "289"), soc, GxValue::Null);

        assert_eq!(&*state.role(Role::MainBattery).unwrap().id.instance, "275");
        state.store(&system, active, GxValue::Text("com.victronenergy.battery/289".into()));
        assert_eq!(&*state.role(Role::MainBattery).unwrap().id.instance, "289");
        // Null while systemcalc restarts: the monitor it last named stays the main one.
        state.store(&system, active, GxValue::Null);
        assert_eq!(&*state.role(Role::MainBattery).unwrap().id.instance, "289");
        state.gone(&system);
        assert_eq!(&*state.role(Role::MainBattery).unwrap().id.instance, "289");
        state.store(&system, active, GxValue::Text("com.victronenergy.vebus/274".into()));
        assert!(state.role(Role::MainBattery).is_none());
    }
}
