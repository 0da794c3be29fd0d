//! Prices computed by hand from the catalogues' figures (the comments show
//! the arithmetic), not by the code under test.

use cdrflow_core::normalize::{normalize_msisdn, parse_timestamp, CountryCode, Msisdn};

use crate::{Catalogue, PricingError, Usage, EXAMPLE_CATALOGUE_TOML};

fn at(text: &str) -> i64 {
    parse_timestamp(text).unwrap()
}

fn number(text: &str) -> Msisdn {
    normalize_msisdn(text, CountryCode::parse("212").unwrap()).unwrap()
}

fn call(to: &str, start: &str, seconds: u64) -> Usage {
    Usage::Voice {
        to: number(to),
        start: at(start),
        seconds,
    }
}

/// One version, every number a destination, one voice rate.
fn one_rate(rate: &str) -> Catalogue {
    Catalogue::from_toml(&format!(
        r#"
[[version]]
id = "v1"
effective_from = "2020-01-01T00:00:00Z"
currency = "USD"
zone = "UTC"
[[version.destination]]
id = "world"
class = "international"
prefixes = ["1", "2", "3", "4", "5", "6", "7", "8", "9"]
[[version.band]]
id = "any"
[[version.plan]]
id = "p"
[[version.plan.voice]]
id = "r"
{rate}
"#
    ))
    .unwrap()
}

fn cost(catalogue: &Catalogue, usage: Usage) -> i64 {
    catalogue.price("p", &usage).unwrap().cost_micros
}

#[test]
fn cgrates_118_thirty_six_increments_at_0_006_a_minute() {
    let c = one_rate(
        r#"price = "0.006"
increments = "30/6"
rounding = "half_up"
decimals = 6"#,
    );
    let t = "2024-03-04T10:00:00Z";
    // 32 s → 30 + 6 = 36 s × 0.006 / 60 = 0.0036
    assert_eq!(cost(&c, call("+14155550100", t, 32)), 3_600);
    // 57 s → 30 + 5 × 6 = 60 s → 0.006
    assert_eq!(cost(&c, call("+14155550100", t, 57)), 6_000);
    // 75 s → 30 + 8 × 6 = 78 s → 0.0078
    assert_eq!(cost(&c, call("+14155550100", t, 75)), 7_800);
    assert_eq!(
        cost(&c, call("+14155550100", t, 0)),
        0,
        "an unanswered call is free"
    );
}

#[test]
fn cgrates_260_the_total_is_rounded_once() {
    let c = one_rate(
        r#"connect_fee = "0.15"
price = "0.05"
increments = "1/1"
rounding = "up"
decimals = 2"#,
    );
    // 0.15 + 0.05 × 24 / 60 = 0.15 + 0.02 = 0.17, rounded up to cents once
    // (rounding each span up, as the reporter did, would give 0.18).
    assert_eq!(
        cost(&c, call("+14155550100", "2024-03-04T10:00:00Z", 24)),
        170_000
    );
}

#[test]
fn slots_price_each_stretch_of_a_call_at_its_own_rate() {
    // CGRateS' tutorial RT_10CNT: 0.20 to connect, the first minute 0.10 in
    // one 60 s increment, then 0.05 a minute by the second.
    let c = one_rate(
        r#"connect_fee = "0.2"
rounding = "up"
decimals = 4
[[version.plan.voice.slot]]
from_seconds = 0
price = "0.1"
increment = 60
[[version.plan.voice.slot]]
from_seconds = 60
price = "0.05"
increment = 1"#,
    );
    let t = "2024-03-04T10:00:00Z";
    // 30 s: 0.2 + 0.1 = 0.3; 90 s: 0.2 + 0.1 + 0.05 × 30 / 60 = 0.325;
    // 61 s: 0.2 + 0.1 + 0.05 / 60 = 0.300833… up → 0.3009.
    assert_eq!(cost(&c, call("+14155550100", t, 30)), 300_000);
    assert_eq!(cost(&c, call("+14155550100", t, 90)), 325_000);
    assert_eq!(cost(&c, call("+14155550100", t, 61)), 300_900);
}

#[test]
fn the_example_catalogue_prices_by_prefix_band_and_version() {
    let c = Catalogue::from_toml(EXAMPLE_CATALOGUE_TOML).unwrap();
    let price = |usage: Usage| c.price("prepaid-basic", &usage).unwrap();
    let mobile = "+212612345678";

    // Monday 2024-03-04, Morocco at UTC+1: 07:00Z is 08:00, peak.
    let peak = price(call(mobile, "2024-03-04T07:00:00Z", 75));
    // 75 s at 30/6 → 78 s: 0.15 + 1.20 × 78 / 60 = 0.15 + 1.56 = 1.71
    assert_eq!(
        (peak.band, peak.rate, peak.billed_units),
        ("peak", "mobile-peak", 78)
    );
    assert_eq!(peak.cost_micros, 1_710_000);
    assert_eq!(peak.destination.unwrap().0, "ma-mobile");
    assert_eq!(peak.version, "2024-03");
    // A second earlier is 07:59:59 local: off peak, 0.60 × 78 / 60 = 0.78.
    let early = price(call(mobile, "2024-03-04T06:59:59Z", 75));
    assert_eq!((early.band, early.cost_micros), ("off_peak", 780_000));
    // 10 s in peak → 30 s: 0.15 + 0.60 = 0.75, under the 1.00 minimum.
    assert_eq!(
        price(call(mobile, "2024-03-04T07:00:00Z", 10)).cost_micros,
        1_000_000
    );

    // In Ramadan Morocco is at UTC+0: 07:30Z on Monday 2024-03-18 is 07:30, off peak.
    assert_eq!(
        price(call(mobile, "2024-03-18T07:30:00Z", 60)).band,
        "off_peak"
    );
    assert_eq!(price(call(mobile, "2024-03-18T08:00:00Z", 60)).band, "peak");
    // Friday 23:59:59 local is off peak; a second later it is Saturday.
    assert_eq!(
        price(call(mobile, "2024-03-08T22:59:59Z", 60)).band,
        "off_peak"
    );
    assert_eq!(
        price(call(mobile, "2024-03-08T23:00:00Z", 60)).band,
        "weekend"
    );
    // A holiday (Wednesday 2024-03-06) at 11:00 local is not peak.
    let holiday = price(call(mobile, "2024-03-06T10:00:00Z", 60));
    assert_eq!((holiday.band, holiday.rate), ("holiday", "mobile-other"));

    // Longest prefix: 2126610… is on-net, not mobile: 0.10 × 61 / 60 =
    // 0.10166… → 0.10.
    let on_net = price(call("+212661012345", "2024-03-04T07:00:00Z", 61));
    assert_eq!((on_net.rate, on_net.cost_micros), ("on-net", 100_000));
    // France by its own rate: 61 s at 60/1 → 61 s × 3.50 / 60 = 3.5583… up → 3.56.
    assert_eq!(
        price(call("+33612345678", "2024-03-04T07:00:00Z", 61)).cost_micros,
        3_560_000
    );
    // Elsewhere: 61 s at 60/60 → 120 s × 9.00 / 60 = 18.00.
    assert_eq!(
        price(call("+14155550100", "2024-03-04T07:00:00Z", 61)).cost_micros,
        18_000_000
    );
    // Fixed lines: 61 s at 60/60 → 120 s × 0.80 / 60 = 1.60, 20% off → 1.28;
    // 600 s → 8.00, capped at 2.00, 20% off → 1.60.
    assert_eq!(
        price(call("+212522123456", "2024-03-04T07:00:00Z", 61)).cost_micros,
        1_280_000
    );
    assert_eq!(
        price(call("+212522123456", "2024-03-04T07:00:00Z", 600)).cost_micros,
        1_600_000
    );
    // 212150… is zero-rated although 2125… is fixed.
    let emergency = price(call("+212150123456", "2024-03-04T07:00:00Z", 300));
    assert_eq!((emergency.rate, emergency.cost_micros), ("zero_rated", 0));
    // Premium numbers have no rate: never free.
    let premium = c.price(
        "prepaid-basic",
        &call("+212891234567", "2024-03-04T07:00:00Z", 60),
    );
    assert!(
        matches!(premium, Err(PricingError::NoRate { .. })),
        "{premium:?}"
    );

    let sms = |to| Usage::Sms {
        to: number(to),
        start: at("2024-03-04T07:00:00Z"),
    };
    assert_eq!(price(sms(mobile)).cost_micros, 350_000);
    assert_eq!(price(sms("+33612345678")).cost_micros, 1_500_000);
    // 1,500,000 bytes → 1,465 × 1,024 = 1,500,160 bytes × 10.00 / 10^9 =
    // 0.0150016 → 0.02.
    let data = price(Usage::Data {
        start: at("2024-03-04T07:00:00Z"),
        bytes: 1_500_000,
    });
    assert_eq!((data.billed_units, data.cost_micros), (1_500_160, 20_000));

    // The last second of March is the first version's (Sunday, weekend:
    // 0.60 a minute); April's first second the second's (0.90).
    let march = price(call(mobile, "2024-03-31T23:59:59Z", 60));
    assert_eq!((march.version, march.cost_micros), ("2024-03", 600_000));
    let april = price(call(mobile, "2024-04-01T00:00:00Z", 60));
    assert_eq!((april.version, april.cost_micros), ("2024-04", 900_000));
    assert!(matches!(
        c.price("prepaid-basic", &call(mobile, "2024-02-29T23:59:59Z", 60)),
        Err(PricingError::NoVersion(_))
    ));
}

#[test]
fn an_explanation_shows_each_step() {
    let c = Catalogue::from_toml(EXAMPLE_CATALOGUE_TOML).unwrap();
    let usage = call("+212612345678", "2024-03-04T07:00:00Z", 75);
    let version = c.version_for(&usage).unwrap();
    let explained = version.explain("prepaid-basic", &usage).unwrap();
    let text = explained.steps.join("\n");
    assert!(
        text.contains("from 30 s: 48 s billed in 6 s increments at 1.2 per 60 s"),
        "{text}"
    );
    assert!(
        text.contains("75 s billed as 78 s: 0.15 + usage 1.56 = 1.71"),
        "{text}"
    );
    assert!(
        text.contains("rounded half_up to 2 decimals: 1.710000"),
        "{text}"
    );
    assert_eq!(
        version.price("prepaid-basic", &usage).unwrap().steps,
        Vec::<String>::new()
    );
}

#[test]
fn mistakes_are_named_by_their_place() {
    let error = |from: &str, to: &str| {
        Catalogue::from_toml(&EXAMPLE_CATALOGUE_TOML.replacen(from, to, 1))
            .unwrap_err()
            .to_string()
    };
    let e = error(r#"prefixes = ["2125"]"#, r#"prefixes = ["2126"]"#);
    assert!(
        e.contains("destination `ma-fixed`") && e.contains("`ma-mobile`'s already"),
        "{e}"
    );
    let e = error(
        r#"zone = "Africa/Casablanca""#,
        r#"zone = "Africa/Atlantis""#,
    );
    assert!(
        e.contains("version `2024-03`.zone") && e.contains("Africa/Atlantis"),
        "{e}"
    );
    let e = error("[[version.band]]\nid = \"off_peak\"\n", "");
    assert!(e.contains("no band covers mon 00:00"), "{e}");
    let e = error(r#"increments = "30/6""#, r#"increments = "30""#);
    assert!(e.contains("voice rate `mobile-peak`.increments"), "{e}");
    let e = error(r#"price = "1.20""#, r#"price = "1.2000000001""#);
    assert!(e.contains("more than 9 decimal places"), "{e}");
    let e = error("units = 1800", r#"amount = "5.00""#);
    assert!(
        e.contains("allowance `april-mobile-minutes`") && e.contains("gives `units`"),
        "{e}"
    );
    let e = error(
        "kind = \"voice\"\nunits = 1800",
        "kind = \"money\"\namount = \"1.0000005\"",
    );
    assert!(
        e.contains("allowance `april-mobile-minutes`.amount")
            && e.contains("more than 6 decimal places"),
        "{e}"
    );
    let e = error(r#"validity = "period""#, r#"validity = "month""#);
    assert!(
        e.contains("allowance `april-mobile-minutes`.validity"),
        "{e}"
    );
    let e = error(
        r#"classes = ["mobile"]"#,
        r#"classes = ["mobile"]
bands = ["night"]"#,
    );
    assert!(e.contains("`night` is not a band of this version"), "{e}");
}

#[test]
fn allowances_that_cover_a_record_are_offered_in_priority_order() {
    let with_more = EXAMPLE_CATALOGUE_TOML.to_string()
        + r#"
[[version.plan.allowance]]
id = "daily-credit"
kind = "money"
amount = "0.50"
validity = "day"
priority = 1

[[version.plan.allowance]]
id = "international-minutes"
kind = "voice"
units = 60
classes = ["international"]
"#;
    let c = Catalogue::from_toml(&with_more).unwrap();
    let offered = |to: &str| -> Vec<String> {
        c.price("prepaid-basic", &call(to, "2024-04-04T07:00:00Z", 60))
            .unwrap()
            .allowances
            .iter()
            .map(|a| a.id.to_string())
            .collect()
    };
    // Priority 0 before 1; at priority 1 the day's grant expires before the period's.
    assert_eq!(
        offered("+14155550100"),
        ["international-minutes", "daily-credit"]
    );
    assert_eq!(
        offered("+212612345678"),
        ["daily-credit", "april-mobile-minutes"]
    );
    // March's plan has none.
    let march = c
        .price(
            "prepaid-basic",
            &call("+212612345678", "2024-03-04T07:00:00Z", 60),
        )
        .unwrap();
    assert!(march.allowances.is_empty());
    // The exact price is what the cost was rounded from: 0.90 × 60 / 60.
    let april = c
        .price(
            "prepaid-basic",
            &call("+212612345678", "2024-04-04T07:00:00Z", 60),
        )
        .unwrap();
    let exact = april.exact.unwrap();
    assert_eq!(exact.numerator / exact.denominator, 900_000_000);
    assert_eq!(exact.share(20, 60), Some(300_000), "a third of 0.90");
}

#[test]
fn a_number_no_prefix_covers_has_no_destination() {
    let c = Catalogue::from_toml(&EXAMPLE_CATALOGUE_TOML.replacen(
        r#"prefixes = ["1", "2", "3", "4", "5", "6", "7", "8", "9"]"#,
        r#"prefixes = ["44"]"#,
        1,
    ))
    .unwrap();
    let priced = c.price(
        "prepaid-basic",
        &call("+14155550100", "2024-03-04T07:00:00Z", 60),
    );
    assert!(
        matches!(priced, Err(PricingError::NoDestination { .. })),
        "{priced:?}"
    );
}

fn cgrates_fixture(
    replace: Option<(&str, &str, &str)>,
) -> Result<String, crate::cgrates::ImportError> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/cgrates");
    let read = |name: &str| {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).ok()?;
        Some(match replace {
            Some((file, from, to)) if file == name => text.replacen(from, to, 1),
            _ => text,
        })
    };
    let options = crate::cgrates::ImportOptions {
        currency: "USD".into(),
        zone: "UTC".into(),
        class: "international".into(),
    };
    crate::cgrates::import(&read, &options)
}

#[test]
fn a_cgrates_tariff_plan_imports_and_prices_its_issues_figures() {
    let text = cgrates_fixture(None).unwrap();
    let c = Catalogue::from_toml(&text).unwrap();
    let price = |to: &str, start: &str, seconds: u64| {
        c.price("*any", &call(to, start, seconds))
            .unwrap()
            .cost_micros
    };
    // Saturday: no PEAK, so RT_118 (*any): 30 s then 6 s increments at
    // 0.006 a minute — 32 s → 36 s = 0.0036, 57 s → 60 s = 0.006, 75 s →
    // 78 s = 0.0078 (#118).
    let saturday = "2024-03-09T10:00:00Z";
    assert_eq!(price("+14155550100", saturday, 32), 3_600);
    assert_eq!(price("+14155550100", saturday, 57), 6_000);
    assert_eq!(price("+14155550100", saturday, 75), 7_800);
    // Monday 10:00 is PEAK, weight 20 before 10: RT_10CNT, 0.2 + 0.1 for
    // the first minute + 0.05 × 30 / 60 = 0.325.
    assert_eq!(price("+14155550100", "2024-03-04T10:00:00Z", 90), 325_000);
    // 19:00 is OFFPEAK_EVENING: RT_118 again, 60 s → 0.006.
    assert_eq!(price("+14155550100", "2024-03-04T19:00:00Z", 60), 6_000);
    // #260: 24 s, 0.15 connect, 0.05 a minute by the second, *up to 2
    // decimals: 0.15 + 0.02 = 0.17, rounded once.
    assert_eq!(price("+447911123456", saturday, 24), 170_000);
    // SMS from the sms profile, to any number: 0.01.
    let sms = Usage::Sms {
        to: number("+447911123456"),
        start: at(saturday),
    };
    assert_eq!(c.price("*any", &sms).unwrap().cost_micros, 10_000);
}

#[test]
fn what_the_import_does_not_take_is_named_by_file_line_and_field() {
    let error = |file, from, to| {
        cgrates_fixture(Some((file, from, to)))
            .unwrap_err()
            .to_string()
    };
    let e = error("Timings.csv", "PEAK,*any,*any,*any", "PEAK,2024,*any,*any");
    assert_eq!(
        e,
        "Timings.csv line 2, Years: `2024`: timings by Years are not supported (only *any)"
    );
    let e = error(
        "DestinationRates.csv",
        "RT_260,*up,2,0,",
        "RT_260,*up,2,5,*free",
    );
    assert!(
        e.starts_with("DestinationRates.csv line 4, MaxCost:"),
        "{e}"
    );
    let e = error(
        "Rates.csv",
        "RT_260,0.15,0.05,60s",
        "RT_260,0.15,0.05,sixty",
    );
    assert!(e.starts_with("Rates.csv line 4, RateUnit: `sixty`"), "{e}");
    let e = error("RatingPlans.csv", "DR_UK_260", "DR_NOWHERE");
    assert!(
        e.starts_with("RatingPlans.csv line 4, DestinationRatesId: `DR_NOWHERE`"),
        "{e}"
    );
}

#[test]
fn a_bought_bundle_is_offered_from_its_purchase_until_it_expires() {
    use cdrflow_core::reference::BundlePurchase;
    let with_bundles = EXAMPLE_CATALOGUE_TOML.to_string()
        + r#"
[[version.bundle]]
id = "mobile-minutes"
kind = "voice"
units = 600
classes = ["mobile"]
days = 2
priority = 1
"#;
    let c = Catalogue::from_toml(&with_bundles).unwrap();
    let buyer = number("+212612345670");
    let purchase = |id: &str, bundle: &str, from: &str, expires: Option<&str>| BundlePurchase {
        purchase_id: id.into(),
        effective_from: at(from),
        msisdn: buyer,
        bundle_id: bundle.into(),
        expires_at: expires.map(at),
    };
    let purchases = [
        purchase("P1", "mobile-minutes", "2024-04-01T10:00:00Z", None),
        purchase(
            "P2",
            "mobile-minutes",
            "2024-04-02T00:00:00Z",
            Some("2024-04-05T00:00:00Z"),
        ),
        purchase("P3", "no-such-bundle", "2024-04-01T00:00:00Z", None),
    ];
    let offered = |to: &str, start: &str| -> Vec<String> {
        let usage = call(to, start, 60);
        let version = c.version_for(&usage).unwrap();
        let mut priced = version.price("prepaid-basic", &usage).unwrap();
        let all: Vec<&BundlePurchase> = purchases.iter().collect();
        version.offer_bundles(
            &mut priced,
            cdrflow_core::model::Kind::Voice,
            &all,
            at(start),
        );
        priced
            .allowances
            .iter()
            .map(|a| match &a.validity {
                cdrflow_core::rating::Validity::Purchase(p) => format!("{}@{p}", a.id),
                _ => a.id.to_string(),
            })
            .collect()
    };
    // The plan's own allowance of priority 1 first, then the purchases,
    // oldest first; the unknown bundle offers nothing.
    assert_eq!(
        offered("+212612345678", "2024-04-02T09:00:00Z"),
        [
            "april-mobile-minutes",
            "mobile-minutes@P1",
            "mobile-minutes@P2"
        ]
    );
    // P1 lasts 2 days from 2024-04-01T10:00: gone at 2024-04-03T10:00.
    assert_eq!(
        offered("+212612345678", "2024-04-03T09:59:59Z"),
        [
            "april-mobile-minutes",
            "mobile-minutes@P1",
            "mobile-minutes@P2"
        ]
    );
    assert_eq!(
        offered("+212612345678", "2024-04-03T10:00:00Z"),
        ["april-mobile-minutes", "mobile-minutes@P2"]
    );
    // P2's own expiry wins over the bundle's days.
    assert_eq!(
        offered("+212612345678", "2024-04-05T00:00:00Z"),
        ["april-mobile-minutes"]
    );
    // A call abroad is not the bundle's class.
    assert!(offered("+14155550100", "2024-04-02T09:00:00Z").is_empty());
    // The bundle is April's: March's version does not define it.
    assert!(offered("+212612345678", "2024-03-31T09:00:00Z").is_empty());
    for (change, expected) in [("days = 2", "days = 0"), ("days = 2", "validity = \"day\"")] {
        let e = Catalogue::from_toml(&with_bundles.replace(change, expected))
            .unwrap_err()
            .to_string();
        let place = if expected.starts_with("days") {
            "days"
        } else {
            "validity"
        };
        assert!(
            e.contains(&format!("bundle `mobile-minutes`.{place}")),
            "{e}"
        );
    }
}
