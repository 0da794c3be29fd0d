//! Credit and debit notes: how a re-rating corrects an issued invoice
//! without editing it (issue 13, item 2).
//!
//! An issued invoice **stands at** its own figures plus those of every
//! note issued against it. When the invoice, recomputed from the records
//! it holds at their current prices, differs from where it stands, one
//! note carries the difference figure by figure: a credit note when the
//! customer is owed (the total falls or stays), a debit note when the
//! customer owes more. Each figure of the recomputed invoice was rounded
//! once, so the note's figures are exact differences of rounded figures:
//! invoice plus notes always equals the invoice as it would be issued
//! today. A second re-rating with nothing new finds it standing there and
//! issues nothing.

use serde::Serialize;

use super::document::{amount_text, TotalsPart};
use super::invoice::Totals;
use crate::normalize::Day;
use crate::reference::BillingPeriod;

pub const NOTE_SCHEMA: &str = "cdrflow.credit_note/1";

/// Which way a note corrects its invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteKind {
    /// The customer is owed: the invoice's total fell (or its figures moved and the total did not).
    Credit,
    /// The customer owes more.
    Debit,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Credit => "credit",
            NoteKind::Debit => "debit",
        }
    }

    pub fn parse(text: &str) -> Option<NoteKind> {
        [NoteKind::Credit, NoteKind::Debit]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The key of the entity's sequence for this kind in the numbers table
    /// (invoices use the entity's id itself).
    pub fn sequence(self, entity: &str) -> String {
        format!("{entity}/{}", self.as_str())
    }
}

/// Where an issued invoice stands: its figures plus every note's.
pub fn standing<'a>(
    issued: &Totals,
    notes: impl IntoIterator<Item = &'a Totals>,
) -> Option<Totals> {
    notes
        .into_iter()
        .try_fold(*issued, |sum, note| sum.checked_add(note))
}

/// The note that takes an invoice from where it stands to `now`, figure
/// by figure (`None`: nothing differs).
pub fn note_between(standing: &Totals, now: &Totals) -> Option<(NoteKind, Totals)> {
    let difference = now.checked_sub(standing)?;
    if difference == Totals::default() {
        return None;
    }
    let kind = match difference.total > 0 {
        true => NoteKind::Debit,
        false => NoteKind::Credit,
    };
    Some((kind, difference))
}

/// One figure of a note: where the invoice stood, where it stands now, the difference.
#[derive(Serialize)]
pub struct NoteLine {
    pub figure: &'static str,
    pub before: String,
    pub after: String,
    pub difference: String,
}

/// The note document, schema `cdrflow.credit_note/1` (docs/invoice-schema.md).
#[derive(Serialize)]
pub struct NoteDocument<'a> {
    pub schema: &'static str,
    pub number: &'a str,
    pub kind: NoteKind,
    pub entity: &'a str,
    pub issue_date: String,
    /// The invoice it corrects.
    pub invoice_number: &'a str,
    pub invoice_id: &'a str,
    pub customer_id: &'a str,
    pub invoice_period: String,
    /// Why: the period whose records were re-rated.
    pub reason: String,
    pub currency: &'a str,
    /// Every figure that changed.
    pub lines: Vec<NoteLine>,
    /// The differences (negative: credited).
    pub totals: TotalsPart,
}

/// What a note document is made of.
pub struct NoteInput<'a> {
    pub number: &'a str,
    pub kind: NoteKind,
    pub entity: &'a str,
    pub issued_on: Day,
    pub invoice_number: &'a str,
    pub invoice_id: &'a str,
    pub customer_id: &'a str,
    pub invoice_period: BillingPeriod,
    pub rerated_period: BillingPeriod,
    pub currency: &'a str,
    pub decimals: u32,
    pub before: &'a Totals,
    pub after: &'a Totals,
}

impl<'a> NoteDocument<'a> {
    pub fn of(note: &NoteInput<'a>) -> NoteDocument<'a> {
        let money = |micros: i64| amount_text(micros, note.decimals);
        let (before, after) = (note.before.in_order(), note.after.in_order());
        let difference = note
            .after
            .checked_sub(note.before)
            .expect("a note's difference was computed before its document");
        let lines = Totals::NAMES
            .iter()
            .enumerate()
            .filter(|&(i, _)| before[i] != after[i])
            .map(|(i, name)| NoteLine {
                figure: name,
                before: money(before[i]),
                after: money(after[i]),
                difference: money(after[i] - before[i]),
            })
            .collect();
        NoteDocument {
            schema: NOTE_SCHEMA,
            number: note.number,
            kind: note.kind,
            entity: note.entity,
            issue_date: note.issued_on.to_string(),
            invoice_number: note.invoice_number,
            invoice_id: note.invoice_id,
            customer_id: note.customer_id,
            invoice_period: note.invoice_period.to_string(),
            reason: format!("re-rating of {}", note.rerated_period),
            currency: note.currency,
            lines,
            totals: TotalsPart::of(&difference, note.decimals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(voice: i64, tax: i64) -> Totals {
        Totals {
            voice,
            subtotal: voice,
            tax,
            total: voice + tax,
            ..Totals::default()
        }
    }

    #[test]
    fn a_note_brings_the_invoice_to_where_it_would_stand_today() {
        let issued = totals(10_000_000, 2_000_000);
        // A first re-rating lowers voice to 7.00: a credit of 3.60.
        let now = totals(7_000_000, 1_400_000);
        let (kind, first) = note_between(&issued, &now).unwrap();
        assert_eq!(kind, NoteKind::Credit);
        assert_eq!(
            (first.voice, first.tax, first.total),
            (-3_000_000, -600_000, -3_600_000)
        );
        // Run again: it stands there, nothing more.
        let stands = standing(&issued, [&first]).unwrap();
        assert_eq!(note_between(&stands, &now), None);
        // A second correction upwards to 8.00: a debit of 1.20 against where it stands.
        let later = totals(8_000_000, 1_600_000);
        let (kind, second) = note_between(&stands, &later).unwrap();
        assert_eq!(kind, NoteKind::Debit);
        assert_eq!(second.total, 1_200_000);
        assert_eq!(standing(&issued, [&first, &second]).unwrap(), later);
    }

    #[test]
    fn the_document_names_only_the_figures_that_moved() {
        let (before, after) = (totals(10_000_000, 2_000_000), totals(7_000_000, 1_400_000));
        let document = NoteDocument::of(&NoteInput {
            number: "CN-00000001",
            kind: NoteKind::Credit,
            entity: "default",
            issued_on: Day::from_ymd(2024, 5, 2).unwrap(),
            invoice_number: "INV-00000007",
            invoice_id: "C1:2024-03:1",
            customer_id: "C1",
            invoice_period: BillingPeriod {
                year: 2024,
                month: 3,
            },
            rerated_period: BillingPeriod {
                year: 2024,
                month: 3,
            },
            currency: "MAD",
            decimals: 2,
            before: &before,
            after: &after,
        });
        let figures: Vec<&str> = document.lines.iter().map(|l| l.figure).collect();
        assert_eq!(figures, ["voice", "subtotal", "tax", "total"]);
        assert_eq!(document.lines[3].difference, "-3.60");
        assert_eq!(document.totals.total, "-3.60");
        assert_eq!(document.reason, "re-rating of 2024-03");
    }
}
