//! Log output in the form the Home Assistant add-on log viewer shows well:
//! `[HH:MM:SS] LEVEL: message key=value`, one line per event, on stdout.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::cli::LogLevel;

/// Maps the add-on's log levels (bashio's names) to tracing's.
pub fn tracing_level(level: LogLevel) -> Level {
    match level {
        LogLevel::Trace => Level::TRACE,
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info | LogLevel::Notice => Level::INFO,
        LogLevel::Warning => Level::WARN,
        LogLevel::Error | LogLevel::Fatal => Level::ERROR,
    }
}

/// Installs the global subscriber. Our crate logs at `level`; dependencies only at warn
/// and above unless the level is trace, because rumqttc logs every packet at debug.
/// `RUST_LOG`, when set, overrides both.
pub fn init(level: LogLevel) {
    let level = tracing_level(level);
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ => {
            let deps = if level == Level::TRACE { "debug" } else { "warn" };
            EnvFilter::new(format!("{deps},roamcore_victron={level}"))
        }
    };

    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .event_format(AddonFormat)
        .try_init();
}

/// `[HH:MM:SS] LEVEL: message field=value ...` in UTC.
struct AddonFormat;

impl<S, N> FormatEvent<S, N> for AddonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let day_secs = secs % 86_400;
        let level = match *event.metadata().level() {
            Level::TRACE => "TRACE",
            Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARNING",
            Level::ERROR => "ERROR",
        };
        write!(
            writer,
            "[{:02}:{:02}:{:02}] {level}: ",
            day_secs / 3600,
            day_secs / 60 % 60,
            day_secs % 60
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
