//! One customer's invoice for one billing period: usage lines from its
//! rated records, recurring fees prorated by the days each subscription
//! was active, invoice discounts and tax — each figure rounded once.
//!
//! Unrounded amounts are kept exactly as integers of `Exact` (a
//! billionth of the currency divided by the period's days and by 10^5, so
//! that a fee × days / days-in-period and a percentage of it are whole
//! numbers). A line is rounded once from its exact amount; a discount is
//! taken off the exact amounts of the lines it covers and rounded once; the
//! tax is computed on the exact sum of the lines and discounts and rounded
//! once (Lago's off-by-a-cent VAT came from taxing already-rounded lines).
//! The totals are sums of rounded figures, so the lines add up to them.

use std::collections::BTreeMap;

use super::config::{BillingConfig, DiscountBase};
use crate::model::Kind;
use crate::money::Rounding;
use crate::normalize::{Day, EpochMillis, Msisdn};
use crate::reference::{BillingPeriod, Customer, Payment, ReferenceData, Status};

const DAY_MS: EpochMillis = 86_400_000;
/// Percentages are thousandths of a percent: 100% is this.
const WHOLE_MILLI: i128 = 100_000;

/// The order of usage lines' kinds on an invoice.
const LINE_KINDS: [Kind; 5] = [
    Kind::Voice,
    Kind::Sms,
    Kind::Data,
    Kind::Activation,
    Kind::Recharge,
];

/// An exact amount: billionths of the currency × the period's days × 10^5.
type Exact = i128;

/// A rated record an invoice may bill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub record_id: Box<str>,
    pub kind: Kind,
    /// `national`, `mobile`, … (`None`: data, SMS without a destination, fees).
    pub class: Option<&'static str>,
    /// The period the record happened in (earlier than the invoice's when it came late).
    pub period: BillingPeriod,
    pub cost_micros: i64,
}

/// A billing period's first day and the first day after it, for a customer's bill-cycle day.
pub fn period_days(period: BillingPeriod, cycle_day: u8) -> (Day, Day) {
    let (year, month) = if period.month == 12 {
        (period.year + 1, 1)
    } else {
        (period.year, period.month + 1)
    };
    let day = u32::from(cycle_day.clamp(1, 28));
    (
        Day::from_ymd(period.year, period.month, day).expect("days 1-28 are in every month"),
        Day::from_ymd(year, month, day).expect("days 1-28 are in every month"),
    )
}

/// A plan's monthly fee, in billionths, in force at an instant (`None`: no fee).
pub trait MonthlyFees {
    fn monthly_fee_nanos(&self, plan: &str, at: EpochMillis) -> Option<i128>;
}

/// Days one subscription spent on one plan at one fee within a period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecurringDays {
    pub msisdn: Msisdn,
    pub plan: String,
    pub fee_nanos: i128,
    pub days: u32,
    pub first: Day,
    pub last: Day,
}

/// The postpaid subscriptions `customer_id` pays for, day by day over
/// `[starts, ends)`: a day counts for the subscription row in force at
/// its last instant (UTC) when that row names the customer, is postpaid,
/// not terminated, and the activation date is not after the day — so the
/// activation day is billed and the termination day is not. Days with the
/// same plan and fee are one entry; `numbers` are the customer's numbers.
pub fn recurring_days(
    reference: &ReferenceData,
    fees: &dyn MonthlyFees,
    customer_id: &str,
    numbers: &[Msisdn],
    (starts, ends): (Day, Day),
) -> Vec<RecurringDays> {
    let mut spans: Vec<RecurringDays> = Vec::new();
    for &msisdn in numbers {
        for day in starts.0..ends.0 {
            let at = i64::from(day) * DAY_MS + DAY_MS - 1;
            let Some(row) = reference.subscriber_at(msisdn, at) else {
                continue;
            };
            let billed = &*row.customer_id == customer_id
                && row.payment == Payment::Postpaid
                && row.status != Status::Terminated
                && row.activation_date.is_none_or(|a| a.0 <= day);
            if !billed {
                continue;
            }
            let Some(fee_nanos) = fees.monthly_fee_nanos(&row.plan_id, at) else {
                continue;
            };
            match spans
                .iter_mut()
                .find(|s| s.msisdn == msisdn && s.fee_nanos == fee_nanos && *s.plan == *row.plan_id)
            {
                Some(span) => {
                    span.days += 1;
                    span.last = Day(day);
                }
                None => spans.push(RecurringDays {
                    msisdn,
                    plan: row.plan_id.to_string(),
                    fee_nanos,
                    days: 1,
                    first: Day(day),
                    last: Day(day),
                }),
            }
        }
    }
    spans
}

/// What a line is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Rated records of one kind and destination class in one period
    /// (an earlier period's: prior-period usage, records that came late).
    Usage {
        kind: Kind,
        class: Option<&'static str>,
        period: BillingPeriod,
        records: u64,
    },
    Recurring(RecurringDays),
    Discount {
        id: String,
        percent_milli: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// From 1, in the invoice's order.
    pub number: u32,
    pub what: LineKind,
    /// Rounded once, in micro-units.
    pub amount_micros: i64,
}

/// The tax of one rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tax {
    pub percent_milli: u64,
    /// The lines' sum it was computed on, rounded for display only.
    pub base_micros: i64,
    pub amount_micros: i64,
}

/// Sums of rounded figures, in micro-units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub voice: i64,
    pub sms: i64,
    pub data: i64,
    /// Activations, recharges.
    pub other: i64,
    pub recurring: i64,
    pub discounts: i64,
    /// Every line.
    pub subtotal: i64,
    pub tax: i64,
    /// What the customer pays: subtotal plus tax, or the subtotal when
    /// prices hold the tax.
    pub total: i64,
}

impl Totals {
    /// The figures' names, in the order of [`Totals::in_order`] (the
    /// order of the CSV export, the stores' columns and the lake's).
    pub const NAMES: [&'static str; 9] = [
        "voice",
        "sms",
        "data",
        "other",
        "recurring",
        "discounts",
        "subtotal",
        "tax",
        "total",
    ];

    pub fn in_order(&self) -> [i64; 9] {
        [
            self.voice,
            self.sms,
            self.data,
            self.other,
            self.recurring,
            self.discounts,
            self.subtotal,
            self.tax,
            self.total,
        ]
    }

    /// Figure by figure, `self + other` (`None`: one does not fit).
    pub fn checked_add(&self, other: &Totals) -> Option<Totals> {
        self.zip(other, i64::checked_add)
    }

    /// Figure by figure, `self − other` (`None`: one does not fit).
    pub fn checked_sub(&self, other: &Totals) -> Option<Totals> {
        self.zip(other, i64::checked_sub)
    }

    fn zip(&self, other: &Totals, f: fn(i64, i64) -> Option<i64>) -> Option<Totals> {
        let (a, b) = (self.in_order(), other.in_order());
        let mut out = [0i64; 9];
        for i in 0..9 {
            out[i] = f(a[i], b[i])?;
        }
        Some(Totals::from_order(out))
    }

    pub fn from_order(f: [i64; 9]) -> Totals {
        Totals {
            voice: f[0],
            sms: f[1],
            data: f[2],
            other: f[3],
            recurring: f[4],
            discounts: f[5],
            subtotal: f[6],
            tax: f[7],
            total: f[8],
        }
    }
}

/// A computed invoice (numbering and status are the store's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub customer: Customer,
    pub entity: String,
    pub period: BillingPeriod,
    pub starts: Day,
    /// The first day after the period.
    pub ends: Day,
    pub currency: String,
    pub prices_include_tax: bool,
    pub decimals: u32,
    pub lines: Vec<Line>,
    pub taxes: Vec<Tax>,
    pub totals: Totals,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BillingError {
    #[error("customer {customer}'s invoice for {period} does not fit in 64-bit micro-units")]
    Overflow {
        customer: String,
        period: BillingPeriod,
    },
}

/// `exact / (days × 10^5 × 10^(9 − decimals))` rounded to a whole number
/// of steps, in micro-units; negative amounts round as their magnitude.
fn round_exact(exact: Exact, days: i128, config: &BillingConfig) -> Option<i64> {
    let step = days * WHOLE_MILLI * 10i128.pow(9 - config.decimals);
    let steps = signed_divide(config.rounding, exact, step);
    i64::try_from(steps.checked_mul(10i128.pow(6 - config.decimals))?).ok()
}

fn signed_divide(rounding: Rounding, numerator: i128, denominator: i128) -> i128 {
    if numerator < 0 {
        -rounding.divide(-numerator, denominator)
    } else {
        rounding.divide(numerator, denominator)
    }
}

/// What a customer's invoice for `period` is made of.
pub struct InvoiceInput<'a> {
    pub customer: &'a Customer,
    pub period: BillingPeriod,
    /// The customer's billable records (any order).
    pub usage: &'a [Usage],
    pub recurring: Vec<RecurringDays>,
    /// The records' currency (the catalogue's for an invoice without usage).
    pub currency: &'a str,
}

/// The invoice, and for each record of `input.usage` (in its order) the
/// number of the line it is on.
pub fn build_invoice(
    config: &BillingConfig,
    input: InvoiceInput<'_>,
) -> Result<(Invoice, Vec<u32>), BillingError> {
    let customer = &input.customer.customer_id;
    let (starts, ends) = period_days(input.period, input.customer.bill_cycle_day);
    let days = i128::from(ends.0 - starts.0);
    let overflow = || BillingError::Overflow {
        customer: customer.to_string(),
        period: input.period,
    };

    // Usage lines: this period's first, then earlier periods', each by
    // kind (in LINE_KINDS' order) and class; each key's micro-units,
    // records and, once numbered, line.
    let key_of = |u: &Usage| {
        let kind = LINE_KINDS.iter().position(|k| *k == u.kind);
        (std::cmp::Reverse(u.period), kind, u.class)
    };
    let mut usage: BTreeMap<_, (i128, u64, u32)> = BTreeMap::new();
    for u in input.usage {
        let entry = usage.entry(key_of(u)).or_default();
        entry.0 += i128::from(u.cost_micros);
        entry.1 += 1;
    }
    let mut lines = Vec::new();
    let mut exact_of_line: Vec<Exact> = Vec::new();
    let mut usage_exact: Exact = 0;
    for ((period, kind, class), (micros, records, line)) in usage.iter_mut() {
        let exact = *micros * 1000 * days * WHOLE_MILLI;
        usage_exact += exact;
        let number = lines.len() as u32 + 1;
        *line = number;
        lines.push(Line {
            number,
            what: LineKind::Usage {
                kind: LINE_KINDS[kind.expect("every kind is in LINE_KINDS")],
                class: *class,
                period: period.0,
                records: *records,
            },
            amount_micros: round_exact(exact, days, config).ok_or_else(overflow)?,
        });
        exact_of_line.push(exact);
    }
    let mut recurring = input.recurring;
    recurring.sort_by(|a, b| (a.msisdn, a.first).cmp(&(b.msisdn, b.first)));
    let mut recurring_exact: Vec<(Exact, &str)> = Vec::new();
    for r in &recurring {
        // fee × days active / days in the period, in units of Exact.
        let exact = r.fee_nanos * i128::from(r.days) * WHOLE_MILLI;
        recurring_exact.push((exact, r.plan.as_str()));
        lines.push(Line {
            number: lines.len() as u32 + 1,
            what: LineKind::Recurring(r.clone()),
            amount_micros: round_exact(exact, days, config).ok_or_else(overflow)?,
        });
        exact_of_line.push(exact);
    }
    for d in &config.discounts {
        let recurring_base: Exact = recurring_exact
            .iter()
            .filter(|(_, plan)| d.plans.is_empty() || d.plans.iter().any(|p| p == plan))
            .map(|(e, _)| e)
            .sum();
        let base = match d.on {
            DiscountBase::Usage if d.plans.is_empty() => usage_exact,
            DiscountBase::Usage => 0,
            DiscountBase::Recurring => recurring_base,
            DiscountBase::All if d.plans.is_empty() => usage_exact + recurring_base,
            DiscountBase::All => recurring_base,
        };
        if base == 0 || d.percent_milli == 0 {
            continue;
        }
        // Every line's Exact amount holds a factor 10^5, so a percentage
        // (thousandths of a percent) of their sum is whole: still exact.
        let exact = -(base * i128::from(d.percent_milli) / WHOLE_MILLI);
        lines.push(Line {
            number: lines.len() as u32 + 1,
            what: LineKind::Discount {
                id: d.id.clone(),
                percent_milli: d.percent_milli,
            },
            amount_micros: round_exact(exact, days, config).ok_or_else(overflow)?,
        });
        exact_of_line.push(exact);
    }

    // The tax: on the exact sum of every line and discount, rounded once.
    let percent = config.tax_milli(&input.customer.billing_country);
    let base_exact: Exact = exact_of_line.iter().sum();
    let tax_steps = {
        let denominator = days * WHOLE_MILLI * 10i128.pow(9 - config.decimals);
        if config.prices_include_tax {
            signed_divide(
                config.rounding,
                base_exact * i128::from(percent),
                denominator * (WHOLE_MILLI + i128::from(percent)),
            )
        } else {
            signed_divide(
                config.rounding,
                base_exact * i128::from(percent),
                denominator * WHOLE_MILLI,
            )
        }
    };
    let tax_micros =
        i64::try_from(tax_steps * 10i128.pow(6 - config.decimals)).map_err(|_| overflow())?;
    let taxes = vec![Tax {
        percent_milli: percent,
        base_micros: round_exact(base_exact, days, config).ok_or_else(overflow)?,
        amount_micros: tax_micros,
    }];

    let mut totals = Totals::default();
    for line in &lines {
        let slot = match &line.what {
            LineKind::Usage { kind, .. } => match kind {
                Kind::Voice => &mut totals.voice,
                Kind::Sms => &mut totals.sms,
                Kind::Data => &mut totals.data,
                Kind::Activation | Kind::Recharge => &mut totals.other,
            },
            LineKind::Recurring(_) => &mut totals.recurring,
            LineKind::Discount { .. } => &mut totals.discounts,
        };
        *slot = slot.checked_add(line.amount_micros).ok_or_else(overflow)?;
        totals.subtotal = totals
            .subtotal
            .checked_add(line.amount_micros)
            .ok_or_else(overflow)?;
    }
    totals.tax = tax_micros;
    totals.total = if config.prices_include_tax {
        totals.subtotal
    } else {
        totals
            .subtotal
            .checked_add(tax_micros)
            .ok_or_else(overflow)?
    };

    let line_numbers = input.usage.iter().map(|u| usage[&key_of(u)].2).collect();
    let invoice = Invoice {
        customer: input.customer.clone(),
        entity: config
            .entity_for(&input.customer.billing_country)
            .id
            .clone(),
        period: input.period,
        starts,
        ends,
        currency: input.currency.to_string(),
        prices_include_tax: config.prices_include_tax,
        decimals: config.decimals,
        lines,
        taxes,
        totals,
    };
    Ok((invoice, line_numbers))
}
