use super::*;

const PORTAL: &str = "c0619ab0d0e1";

fn flow(handler: &str, source: &str, unique_id: Option<&str>) -> Flow {
    Flow {
        flow_id: format!("{handler}-{source}-{}", unique_id.unwrap_or("none")),
        handler: handler.into(),
        source: Some(source.into()),
        unique_id: unique_id.map(str::to_string),
    }
}

fn schedule() -> Schedule {
    Schedule {
        period: Duration::from_secs(600),
        follow_ups: vec![
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(180),
        ],
        retry: (Duration::from_secs(10), Duration::from_secs(300)),
        timeout: Duration::from_secs(15),
    }
}

#[test]
fn parse_flows_reads_core_listing() {
    // The shape of one entry as Home Assistant 2026.11 lists a discovered flow.
    let listing = json!([
        {"flow_id": "01JF", "handler": "victron_gx", "step_id": "ssdp_confirm",
         "context": {"source": "ssdp", "unique_id": "c0619ab0d0e1",
                     "title_placeholders": {"name": "Cerbo GX"}}},
        {"flow_id": "02AB", "handler": "mqtt", "step_id": "hassio_confirm",
         "context": {"source": "hassio", "unique_id": null}},
        {"handler": "broken-entry-without-id"},
        {"flow_id": "03CD", "handler": "hue"}
    ]);
    let flows = parse_flows(&listing).unwrap();
    assert_eq!(flows.len(), 3);
    assert_eq!(
        flows[0],
        Flow {
            flow_id: "01JF".into(),
            handler: "victron_gx".into(),
            source: Some("ssdp".into()),
            unique_id: Some(PORTAL.into()),
        }
    );
    assert_eq!(flows[1].unique_id, None);
    assert_eq!(flows[2].source, None);
}

#[test]
fn parse_flows_rejects_non_list() {
    assert!(parse_flows(&json!({"flows": []})).is_err());
    assert!(parse_flows(&Value::Null).is_err());
    assert_eq!(parse_flows(&json!([])).unwrap(), vec![]);
}

#[test]
fn classify_cases() {
    let cases = [
        (flow("victron_gx", "ssdp", Some(PORTAL)), Verdict::Ignore),
        (
            flow("victron_gx", "ssdp", Some("C0619AB0D0E1")),
            Verdict::Ignore,
        ),
        (
            flow("victron_gx", "zeroconf", Some(PORTAL)),
            Verdict::Ignore,
        ),
        (
            flow("victron_gx", "ssdp", Some("48e7da000001")),
            Verdict::OtherGx,
        ),
        (flow("victron_gx", "ssdp", None), Verdict::OtherGx),
        (
            flow("victron_gx", "reauth", Some(PORTAL)),
            Verdict::Unrelated,
        ),
        (flow("victron_gx", "user", Some(PORTAL)), Verdict::Unrelated),
        (flow("mqtt", "hassio", Some(PORTAL)), Verdict::Unrelated),
        (
            flow("victron_ble", "bluetooth", Some(PORTAL)),
            Verdict::Unrelated,
        ),
    ];
    for (flow, expected) in cases {
        assert_eq!(classify(&flow, PORTAL), expected, "{flow:?}");
    }
    let no_source = Flow {
        source: None,
        ..flow("victron_gx", "ssdp", Some(PORTAL))
    };
    assert_eq!(classify(&no_source, PORTAL), Verdict::Unrelated);
}

#[test]
fn ignore_title_names_portal() {
    assert_eq!(
        ignore_title(PORTAL),
        "Victron GX c0619ab0d0e1 (bridged by the RoamCore Victron add-on)"
    );
}

#[test]
fn planner_idle_until_triggered() {
    let planner = Planner::new(schedule());
    assert_eq!(planner.next_due(), None);
}

#[test]
fn planner_follow_ups_then_period() {
    let t0 = Instant::now();
    let mut planner = Planner::new(schedule());
    planner.trigger(t0);
    assert_eq!(planner.next_due(), Some(t0));

    planner.finished(t0, true);
    assert_eq!(planner.next_due(), Some(t0 + Duration::from_secs(60)));

    let t1 = t0 + Duration::from_secs(60);
    planner.finished(t1, true);
    assert_eq!(planner.next_due(), Some(t0 + Duration::from_secs(180)));

    let t2 = t0 + Duration::from_secs(180);
    planner.finished(t2, true);
    assert_eq!(
        planner.next_due(),
        Some(t2 + Duration::from_secs(600)),
        "regular period"
    );

    let t3 = t2 + Duration::from_secs(600);
    planner.finished(t3, true);
    assert_eq!(planner.next_due(), Some(t3 + Duration::from_secs(600)));
}

#[test]
fn planner_new_trigger_replaces_follow_ups() {
    let t0 = Instant::now();
    let mut planner = Planner::new(schedule());
    planner.trigger(t0);
    planner.finished(t0, true);

    let t1 = t0 + Duration::from_secs(30);
    planner.trigger(t1);
    assert_eq!(planner.next_due(), Some(t1));
    planner.finished(t1, true);
    assert_eq!(
        planner.next_due(),
        Some(t1 + Duration::from_secs(60)),
        "not t0 + 60 s"
    );
}

#[test]
fn planner_retries_with_backoff_then_resets() {
    let t0 = Instant::now();
    let mut planner = Planner::new(Schedule {
        follow_ups: vec![Duration::ZERO],
        ..schedule()
    });
    planner.trigger(t0);

    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        planner.finished(now, false);
        let due = planner.next_due().unwrap();
        delays.push(due - now);
        now = due;
    }
    assert!(delays[0] >= Duration::from_secs(8), "{delays:?}");
    assert!(delays[0] <= Duration::from_secs(12), "{delays:?}");
    assert!(delays[1] >= Duration::from_secs(16), "{delays:?}");
    assert!(
        delays.iter().all(|d| *d <= Duration::from_secs(360)),
        "{delays:?}"
    );
    assert!(
        delays[7] >= Duration::from_secs(240),
        "capped near 300 s: {delays:?}"
    );

    planner.finished(now, true);
    assert_eq!(planner.next_due(), Some(now + Duration::from_secs(600)));
    planner.finished(now, false);
    let first_retry = planner.next_due().unwrap() - now;
    assert!(
        first_retry <= Duration::from_secs(12),
        "backoff reset: {first_retry:?}"
    );
}

#[test]
fn schedule_scaled_divides_and_keeps_timeout_floor() {
    let scaled = Schedule::scaled(20.0);
    assert_eq!(scaled.period, Duration::from_secs(30));
    assert_eq!(
        scaled.follow_ups,
        vec![
            Duration::ZERO,
            Duration::from_secs(3),
            Duration::from_secs(9)
        ]
    );
    assert_eq!(
        scaled.retry,
        (Duration::from_millis(500), Duration::from_secs(15))
    );
    assert_eq!(scaled.timeout, Duration::from_secs(1));
    assert_eq!(Schedule::scaled(0.5).period, Schedule::standard().period);
}
