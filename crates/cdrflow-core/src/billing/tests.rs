//! Invoice arithmetic against figures worked out by hand (in the comments).

use super::config::BillingConfig;
use super::invoice::*;
use super::*;
use crate::model::Kind;
use crate::normalize::{normalize_msisdn, parse_timestamp, CountryCode, Day, EpochMillis, Msisdn};
use crate::reference::{BillingPeriod, Customer, Payment, ReferenceData, Status, Subscriber};

fn number(text: &str) -> Msisdn {
    normalize_msisdn(text, CountryCode::SOUTH_AFRICA).unwrap()
}

fn customer(cycle_day: u8) -> Customer {
    Customer {
        customer_id: "C1".into(),
        effective_from: crate::reference::ALWAYS,
        name: "Ada".into(),
        billing_country: "MA".into(),
        bill_cycle_day: cycle_day,
    }
}

fn march() -> BillingPeriod {
    BillingPeriod::parse("2024-03").unwrap()
}

fn usage(kind: Kind, class: Option<&'static str>, period: &str, micros: i64) -> Usage {
    Usage {
        record_id: format!("r{micros}{}", kind.as_str()).into(),
        kind,
        class,
        period: BillingPeriod::parse(period).unwrap(),
        cost_micros: micros,
    }
}

/// 99.00 a month until 2024-03-16, then 120.00.
struct Fees;

impl MonthlyFees for Fees {
    fn monthly_fee_nanos(&self, plan: &str, at: EpochMillis) -> Option<i128> {
        let change = parse_timestamp("2024-03-16T00:00:00Z").unwrap();
        match plan {
            "gold" if at < change => Some(99_000_000_000),
            "gold" => Some(120_000_000_000),
            "flat" => Some(99_000_000_000),
            _ => None,
        }
    }
}

fn subscriber(
    msisdn: Msisdn,
    from: &str,
    customer: &str,
    plan: &str,
    status: Status,
    payment: Payment,
    activated: Option<&str>,
) -> Subscriber {
    Subscriber {
        msisdn,
        effective_from: if from.is_empty() {
            crate::reference::ALWAYS
        } else {
            parse_timestamp(from).unwrap()
        },
        customer_id: customer.into(),
        plan_id: plan.into(),
        region: None,
        status,
        payment,
        activation_date: activated.map(|d| Day::parse(d).unwrap()),
    }
}

fn bill(
    config: &BillingConfig,
    customer: &Customer,
    usage: &[Usage],
    recurring: Vec<RecurringDays>,
) -> (Invoice, Vec<u32>) {
    build_invoice(
        config,
        InvoiceInput {
            customer,
            period: march(),
            usage,
            recurring,
            currency: "MAD",
        },
    )
    .unwrap()
}

#[test]
fn tax_is_computed_on_the_unrounded_lines_and_the_lines_add_up_to_the_totals() {
    // Three lines of 0.005 each: each rounds (half up) to 0.01, subtotal
    // 0.03. The tax is 20% of the exact 0.015 = 0.003 → 0.00 (taxing the
    // rounded lines would give 0.006 → 0.01, Lago's off-by-a-cent).
    let usage = [
        usage(Kind::Voice, Some("mobile"), "2024-03", 5_000),
        usage(Kind::Voice, Some("fixed"), "2024-03", 5_000),
        usage(Kind::Sms, Some("mobile"), "2024-03", 5_000),
    ];
    let (invoice, lines) = bill(&BillingConfig::shipped(), &customer(1), &usage, Vec::new());
    let amounts: Vec<i64> = invoice.lines.iter().map(|l| l.amount_micros).collect();
    assert_eq!(amounts, [10_000, 10_000, 10_000]);
    assert_eq!(invoice.totals.voice, 20_000);
    assert_eq!(invoice.totals.sms, 10_000);
    assert_eq!(invoice.totals.subtotal, 30_000);
    assert_eq!(invoice.totals.tax, 0);
    assert_eq!(invoice.totals.total, 30_000);
    // Voice first, by class name: fixed before mobile.
    assert_eq!(lines, [2, 1, 3]);
}

#[test]
fn recurring_fees_are_prorated_by_the_days_active_at_the_fee_of_each_day() {
    // March 2024 (cycle day 1) has 31 days. The number is activated on
    // the 10th: 10–15 (6 days) at 99.00, 16–31 (16 days) at 120.00.
    //   99 × 6 / 31 = 19.161290… → 19.16;  120 × 16 / 31 = 61.935483… → 61.94
    //   tax 20% of the exact 81.096774… = 16.219354… → 16.22
    //   total 19.16 + 61.94 + 16.22 = 97.32
    let mut reference = ReferenceData::default();
    let n = number("+27821234567");
    reference.put_subscriber(subscriber(
        n,
        "2024-03-10T09:30:00Z",
        "C1",
        "gold",
        Status::Active,
        Payment::Postpaid,
        Some("2024-03-10"),
    ));
    let span = period_days(march(), 1);
    let recurring = recurring_days(&reference, &Fees, "C1", &[n], span);
    let days: Vec<(u32, i128)> = recurring.iter().map(|r| (r.days, r.fee_nanos)).collect();
    assert_eq!(days, [(6, 99_000_000_000), (16, 120_000_000_000)]);
    let (invoice, _) = bill(&BillingConfig::shipped(), &customer(1), &[], recurring);
    let amounts: Vec<i64> = invoice.lines.iter().map(|l| l.amount_micros).collect();
    assert_eq!(amounts, [19_160_000, 61_940_000]);
    assert_eq!(invoice.totals.recurring, 81_100_000);
    assert_eq!(invoice.totals.tax, 16_220_000);
    assert_eq!(invoice.totals.total, 97_320_000);
}

#[test]
fn only_postpaid_active_days_of_the_customers_own_subscriptions_are_billed() {
    // Cycle day 15: the period 2024-03 is 03-15 .. 04-14, 31 days.
    let mut reference = ReferenceData::default();
    let (a, b, c) = (
        number("+27821000001"),
        number("+27821000002"),
        number("+27821000003"),
    );
    reference.put_subscriber(subscriber(
        a,
        "",
        "C1",
        "flat",
        Status::Active,
        Payment::Postpaid,
        None,
    ));
    // Terminated during 2024-04-01: billed 03-15 .. 03-31 (17 days).
    reference.put_subscriber(subscriber(
        a,
        "2024-04-01T12:00:00Z",
        "C1",
        "flat",
        Status::Terminated,
        Payment::Postpaid,
        None,
    ));
    reference.put_subscriber(subscriber(
        b,
        "",
        "C1",
        "flat",
        Status::Active,
        Payment::Prepaid,
        None,
    ));
    // Moves to another customer on 03-20: billed 03-15 .. 03-19 (5 days).
    reference.put_subscriber(subscriber(
        c,
        "",
        "C1",
        "flat",
        Status::Suspended,
        Payment::Postpaid,
        None,
    ));
    reference.put_subscriber(subscriber(
        c,
        "2024-03-20T00:00:00Z",
        "C2",
        "flat",
        Status::Active,
        Payment::Postpaid,
        None,
    ));
    let span = period_days(march(), 15);
    assert_eq!(span.1 .0 - span.0 .0, 31);
    let recurring = recurring_days(&reference, &Fees, "C1", &[a, b, c], span);
    let days: Vec<(Msisdn, u32, String, String)> = recurring
        .iter()
        .map(|r| (r.msisdn, r.days, r.first.to_string(), r.last.to_string()))
        .collect();
    assert_eq!(
        days,
        [
            (a, 17, "2024-03-15".into(), "2024-03-31".into()),
            (c, 5, "2024-03-15".into(), "2024-03-19".into())
        ]
    );
}

#[test]
fn a_discount_is_taken_off_the_exact_lines_and_rounded_once() {
    // 99 × 10 / 31 = 31.935483… → 31.94; 10% off the exact: −3.193548… → −3.19;
    // tax 20% of 28.741935… = 5.748387… → 5.75; total 31.94 − 3.19 + 5.75 = 34.50.
    let config = BillingConfig::parse(
        "[[discount]]\nid = \"loyalty\"\npercent = \"10\"\non = \"recurring\"\n",
    )
    .unwrap();
    let recurring = vec![RecurringDays {
        msisdn: number("+27821234567"),
        plan: "flat".into(),
        fee_nanos: 99_000_000_000,
        days: 10,
        first: Day::parse("2024-03-22").unwrap(),
        last: Day::parse("2024-03-31").unwrap(),
    }];
    let (invoice, _) = bill(&config, &customer(1), &[], recurring);
    let amounts: Vec<i64> = invoice.lines.iter().map(|l| l.amount_micros).collect();
    assert_eq!(amounts, [31_940_000, -3_190_000]);
    assert_eq!(invoice.totals.discounts, -3_190_000);
    assert_eq!(invoice.totals.tax, 5_750_000);
    assert_eq!(invoice.totals.total, 34_500_000);
}

#[test]
fn with_tax_included_the_total_is_the_lines_and_the_tax_is_the_part_of_it() {
    // 120.00 gross at 20%: tax 120 × 20 / 120 = 20.00. 10.01 gross: 1.668333… → 1.67.
    let config = BillingConfig::parse("prices_include_tax = true\n").unwrap();
    let (invoice, _) = bill(
        &config,
        &customer(1),
        &[usage(Kind::Data, None, "2024-03", 120_000_000)],
        Vec::new(),
    );
    assert_eq!(invoice.totals.tax, 20_000_000);
    assert_eq!(invoice.totals.total, 120_000_000);
    let (invoice, _) = bill(
        &config,
        &customer(1),
        &[usage(Kind::Data, None, "2024-03", 10_010_000)],
        Vec::new(),
    );
    assert_eq!(invoice.totals.tax, 1_670_000);
}

#[test]
fn late_usage_of_an_earlier_period_is_its_own_line() {
    let usage = [
        usage(Kind::Voice, Some("mobile"), "2024-03", 1_500_000),
        usage(Kind::Voice, Some("mobile"), "2024-02", 700_000),
        usage(Kind::Voice, Some("mobile"), "2024-03", 300_000),
    ];
    let (invoice, lines) = bill(&BillingConfig::shipped(), &customer(1), &usage, Vec::new());
    assert_eq!(lines, [1, 2, 1]);
    let document = InvoiceDocument::of(&invoice, "C1:2024-03:1", None, InvoiceStatus::Draft);
    assert_eq!(document.lines[1].category, "prior_period_usage");
    assert_eq!(document.lines[1].usage_period.as_deref(), Some("2024-02"));
    assert_eq!(document.lines[0].amount, "1.80");
    assert_eq!(document.totals.voice, "2.50");
    // 2.50 × 20% = 0.50.
    assert_eq!(document.totals.total, "3.00");
}
