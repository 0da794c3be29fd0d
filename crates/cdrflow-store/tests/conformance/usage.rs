//! Usage: date ranges, ordering and paging of summaries.

use super::*;

fn open_date_ranges_and_lookups(store: &mut dyn Store) {
    commit_lines(store, &LINES);
    let cp = checkpoint(&LINES);
    let msisdn = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
    let day = Day::parse("2024-03-01").unwrap();
    assert_eq!(
        store
            .usage(msisdn, Day(i32::MIN), Day(i32::MAX))
            .unwrap()
            .len(),
        3
    );
    assert_eq!(store.usage(msisdn, Day(i32::MIN), day).unwrap().len(), 3);
    assert!(store
        .usage(msisdn, Day(day.0 + 1), Day(i32::MAX))
        .unwrap()
        .is_empty());

    let data_row = RowKey {
        kind: Kind::Data,
        msisdn,
        day,
        service_type: "video".into(),
    };
    let absent = RowKey {
        day: Day(day.0 + 1),
        ..data_row.clone()
    };
    let (first, last) = cdrflow_core::dedup::day_minutes(day.0);
    let mut keys: Vec<_> = stored_identities(store, FILES_SCOPE, first, last)
        .iter()
        .map(|e| e.key)
        .collect();
    keys.sort_by_key(|k| k.0);
    let mut expected: Vec<_> = handed_over_identities(&cp).iter().map(|e| e.key).collect();
    expected.sort_by_key(|k| k.0);
    assert_eq!(keys, expected, "the day's identities");
    let (next_first, next_last) = cdrflow_core::dedup::day_minutes(day.0 + 1);
    assert!(
        stored_identities(store, FILES_SCOPE, next_first, next_last).is_empty(),
        "none of other days"
    );
    let totals = store.stored_totals(&[data_row, absent]).unwrap();
    assert_eq!(totals.len(), 2);
    assert_eq!(totals[0].unwrap().up_bytes, 1_000_000_000_000_000);
    assert_eq!(totals[1], None);
}

for_every_store!(
    open_date_ranges_and_lookups,
    sqlite_open_date_ranges_and_lookups,
    postgres_open_date_ranges_and_lookups,
    "ranges"
);

/// Both stores list summaries in one order: kind, number by value, day, type byte-wise.
fn summaries_come_out_in_one_order(store: &mut dyn Store) {
    let line = |n: &str, t: &str| {
        format!(
            r#"{{"msisdn":"{n}","start_time":"2024-03-01T10:00:00Z","call_type":"{t}","call_duration_sec":1}}"#
        )
    };
    let lines = [
        line("+27821234567", "ab"),
        line("+3312345678", "ab"),
        line("+27821234567", "a_b"),
        line("+447700900123", "ab"),
        line("+27821234567", "b"),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    commit_lines(store, &refs);
    let mut seen = Vec::new();
    store
        .for_each_summary(&mut |r| seen.push((r.msisdn, r.service_type)))
        .unwrap();
    let mut expected: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["msisdn"].as_str().unwrap().to_string(),
                v["call_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    expected.sort_by(|a, b| {
        let digits = |m: &str| m[1..].parse::<u64>().unwrap();
        (digits(&a.0), a.1.as_bytes()).cmp(&(digits(&b.0), b.1.as_bytes()))
    });
    assert_eq!(seen, expected);
}

for_every_store!(
    summaries_come_out_in_one_order,
    sqlite_summaries_come_out_in_one_order,
    postgres_summaries_come_out_in_one_order,
    "order"
);

/// `usage_page` hands out whole days, at most `limit` rows unless one day
/// alone holds more, and every row exactly once across the pages; checked
/// against a greedy split of the days computed here.
fn usage_pages_split_at_whole_days(store: &mut dyn Store) {
    // Rows per day: 02-01 data + voice, 02-02 voice, 02-04 data + voice +
    // recharge, 02-05 voice (02-03 has none).
    let lines = [
        r#"{"cdr_id":"a","msisdn":"0821234567","event_datetime":"2024-02-01T10:00:00Z","data_type":"video","up_bytes":1,"down_bytes":1}"#,
        r#"{"cdr_id":"b","msisdn":"0821234567","start_time":"2024-02-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"cdr_id":"c","msisdn":"0821234567","start_time":"2024-02-02T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"cdr_id":"d","msisdn":"0821234567","event_datetime":"2024-02-04T10:00:00Z","data_type":"web","up_bytes":1,"down_bytes":1}"#,
        r#"{"cdr_id":"e","msisdn":"0821234567","start_time":"2024-02-04T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"event_id":"f","msisdn":"0821234567","event_type":"balance_recharge","amount":5,"timestamp":"2024-02-04T10:00:00Z"}"#,
        r#"{"cdr_id":"g","msisdn":"0821234567","start_time":"2024-02-05T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
        r#"{"cdr_id":"h","msisdn":"0831112222","start_time":"2024-02-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#,
    ];
    commit_lines(store, &lines);
    let msisdn = normalize_msisdn("+27821234567", CountryCode::default()).unwrap();
    let day = |d: &str| Day::parse(d).unwrap();
    let days = [
        (day("2024-02-01"), 2),
        (day("2024-02-02"), 1),
        (day("2024-02-04"), 3),
        (day("2024-02-05"), 1),
    ];
    let all = store.usage(msisdn, Day(i32::MIN), Day(i32::MAX)).unwrap();
    assert_eq!(all.len(), 7);
    for limit in 1..=8u32 {
        // The expected pages: whole days while they fit, a too-big day alone.
        let mut expected: Vec<Vec<Day>> = Vec::new();
        let mut rows_in_page = 0;
        for &(d, n) in &days {
            match expected.last_mut() {
                Some(page) if rows_in_page + n <= limit => {
                    page.push(d);
                    rows_in_page += n;
                }
                _ => {
                    expected.push(vec![d]);
                    rows_in_page = n;
                }
            }
        }
        let mut from = Day(i32::MIN);
        let mut seen = Vec::new();
        for (i, page_days) in expected.iter().enumerate() {
            let page = store
                .usage_page(msisdn, from, Day(i32::MAX), limit)
                .unwrap();
            let mut got: Vec<Day> = page.rows.iter().map(|r| r.date).collect();
            got.dedup();
            got.sort();
            got.dedup();
            assert_eq!(&got, page_days, "limit {limit}, page {i}");
            assert_eq!(
                page.next_from,
                expected.get(i + 1).map(|p| p[0]),
                "limit {limit}, page {i}"
            );
            seen.extend(page.rows);
            if let Some(next) = page.next_from {
                from = next;
            }
        }
        seen.sort_by_key(|r| (r.date, r.kind as u8, r.service_type.clone()));
        let mut everything = all.clone();
        everything.sort_by_key(|r| (r.date, r.kind as u8, r.service_type.clone()));
        assert_eq!(seen, everything, "limit {limit}: every row once");
    }
    // A range that ends inside the data: no page beyond it.
    let page = store
        .usage_page(msisdn, day("2024-02-02"), day("2024-02-04"), 1)
        .unwrap();
    assert_eq!(
        (page.rows.len(), page.next_from),
        (1, Some(day("2024-02-04")))
    );
    let page = store
        .usage_page(msisdn, day("2024-02-04"), day("2024-02-04"), 1)
        .unwrap();
    assert_eq!((page.rows.len(), page.next_from), (3, None));
}

for_every_store!(
    usage_pages_split_at_whole_days,
    sqlite_usage_pages_split_at_whole_days,
    postgres_usage_pages_split_at_whole_days,
    "pages"
);
