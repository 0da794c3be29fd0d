//! Search over the reference data (seed 004's search indexer): what each
//! subscriber, customer and plan is found by, and what a query asks for.
//!
//! The matching itself is a real full-text engine's — SQLite's FTS5,
//! PostgreSQL's text search — over documents written here. Text is folded
//! (case, and accents: "Illimités" is found by "illimites") before either
//! engine sees it, so both stores answer a query alike and PostgreSQL needs
//! no `unaccent` extension. A document is the id's latest entry, row or
//! removal (as [`ReferenceData::current`](crate::reference::ReferenceData::current)),
//! so a removed id is found no more, and a change older than the document
//! (a file loaded with a past instant) leaves it as it is.
//!
//! Subscribers have no document: they have no words, only a number, and
//! the stores find a number's current row in the subscribers table by its
//! own index. A document per subscriber cost every change-event commit a
//! row and four index entries — on PostgreSQL 16,817 against 20,425
//! changes/s without (bench/cdc_throughput.sh, BENCHMARKS.md).

use unicode_normalization::UnicodeNormalization;

use crate::normalize::{CountryCode, EpochMillis};
use crate::reference::{ReferenceChange, ReferenceKind, ReferenceRow};

/// One id's entry in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDocument {
    pub kind: ReferenceKind,
    pub id: String,
    /// The instant of the entry it was written from.
    pub effective_from: EpochMillis,
    /// The id was deleted at the source: kept so an older change does not
    /// bring it back, never found.
    pub removed: bool,
    /// What a result shows: the number, the customer's or the plan's name.
    pub title: String,
    /// The folded words it is found by.
    pub words: String,
    /// A bundle purchase's number in E.164, for prefix search.
    pub msisdn: Option<String>,
    /// A plan's monthly fee, for price ranges.
    pub fee_micros: Option<i64>,
}

/// What a change does to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexChange {
    /// Written unless the stored document is newer.
    Put(SearchDocument),
    /// Every document of the kind from `at` or before is removed (a truncate).
    RemoveAll {
        kind: ReferenceKind,
        at: EpochMillis,
    },
}

/// Lower case, accents dropped: "Appels Illimités" → "appels illimites".
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

impl IndexChange {
    /// The index change a reference change makes (`None`: a subscriber's).
    pub fn of(change: &ReferenceChange) -> Option<IndexChange> {
        let kind = match change {
            ReferenceChange::Put(row) => row.kind(),
            ReferenceChange::Remove { kind, .. } | ReferenceChange::RemoveAll { kind, .. } => *kind,
        };
        if kind == ReferenceKind::Subscribers {
            return None;
        }
        Some(match change {
            ReferenceChange::Put(row) => IndexChange::Put(document(row)?),
            ReferenceChange::Remove { kind, id, at } => IndexChange::Put(SearchDocument {
                kind: *kind,
                id: id.clone(),
                effective_from: *at,
                removed: true,
                title: String::new(),
                words: String::new(),
                msisdn: None,
                fee_micros: None,
            }),
            ReferenceChange::RemoveAll { kind, at } => IndexChange::RemoveAll {
                kind: *kind,
                at: *at,
            },
        })
    }
}

/// A row's document (`None`: a subscriber, found in its own table).
pub fn document(row: &ReferenceRow) -> Option<SearchDocument> {
    let words = |parts: &[&str]| fold(&parts.join(" "));
    let (title, words, msisdn, fee_micros) = match row {
        ReferenceRow::Subscriber(_) => return None,
        ReferenceRow::Customer(c) => (
            c.name.clone(),
            words(&[&c.name, &c.customer_id, &c.billing_country]),
            None,
            None,
        ),
        ReferenceRow::Cell(c) => (
            c.cell_id.to_string(),
            words(&[&c.cell_id, &c.region, c.technology]),
            None,
            None,
        ),
        ReferenceRow::Plan(p) => (
            p.name.clone(),
            words(&[&p.name, &p.description, &p.plan_id]),
            None,
            p.monthly_fee_micros,
        ),
        // Under the buyer's number too: a number's search lists its purchases.
        ReferenceRow::Bundle(b) => (
            b.bundle_id.to_string(),
            words(&[&b.bundle_id, &b.purchase_id]),
            Some(b.msisdn.to_string()),
            None,
        ),
    };
    Some(SearchDocument {
        kind: row.kind(),
        id: row.id(),
        effective_from: row.effective_from(),
        removed: false,
        title,
        words,
        msisdn,
        fee_micros,
    })
}

/// A search, read from the API's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    pub find: Find,
    /// Only these kinds (all when empty).
    pub kinds: Vec<ReferenceKind>,
    /// Plans whose monthly fee is in this range, inclusive (micro-units).
    pub min_fee_micros: Option<i64>,
    pub max_fee_micros: Option<i64>,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Find {
    /// Documents holding a word starting with each of these (folded, only
    /// letters and digits: nothing an engine would read as an operator).
    Words(Vec<String>),
    /// Subscribers whose E.164 number starts with this (`+2126123`).
    NumberPrefix(String),
    /// No text: every document the other conditions allow (a price range).
    Everything,
}

/// The numbers starting with `prefix` (`+` and digits) as a range
/// `[from, before)` an ordinary index answers: `before` is the prefix with
/// its last digit raised (`+2126123` → `+2126124`; `None` when every digit
/// is a 9). Raising a digit rather than appending a character past `9`
/// keeps the range right under any collation: PostgreSQL's default ones
/// pass over punctuation at first, so `+2126123:` sorts with `+2126123`.
pub fn number_range(prefix: &str) -> (String, Option<String>) {
    let mut digits = prefix.as_bytes().to_vec();
    while let Some(last) = digits.pop() {
        if last.is_ascii_digit() && last < b'9' {
            digits.push(last + 1);
            let before = String::from_utf8(digits).expect("ASCII");
            return (prefix.to_string(), Some(before));
        }
        if !last.is_ascii_digit() {
            break;
        }
    }
    (prefix.to_string(), None)
}

impl Find {
    /// `q` as a person types it. A number in any spelling — `0612 34`,
    /// `+212 6 12`, `00212612`, `(061) 234-5` — is a number prefix (national
    /// spellings in `home`); anything else is words.
    pub fn parse(q: &str, home: CountryCode) -> Find {
        let spelled_as_number = q
            .chars()
            .all(|c| c.is_ascii_digit() || " +-.()/".contains(c));
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        if spelled_as_number && digits.len() >= 2 {
            return Find::NumberPrefix(number_prefix(q.trim_start(), &digits, home));
        }
        let words: Vec<String> = fold(q)
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        if words.is_empty() {
            Find::Everything
        } else {
            Find::Words(words)
        }
    }
}

/// The E.164 prefix a typed number prefix stands for, by the rules
/// [`normalize_msisdn`](crate::normalize::normalize_msisdn) reads a whole
/// number with: `+` or `00` international, one leading `0` national (the
/// home country code), bare digits carrying their country code.
fn number_prefix(typed: &str, digits: &str, home: CountryCode) -> String {
    if typed.starts_with('+') {
        format!("+{digits}")
    } else if let Some(international) = digits.strip_prefix("00") {
        format!("+{international}")
    } else if let Some(national) = digits.strip_prefix('0') {
        format!("+{home}{national}")
    } else {
        format!("+{digits}")
    }
}

impl SearchQuery {
    /// FTS5's query: every word required, each a prefix (a one-letter
    /// word whole: as a prefix it would ask for most of the index).
    pub fn fts5_match(words: &[String]) -> String {
        words
            .iter()
            .map(|w| match w.chars().nth(1) {
                Some(_) => format!("\"{w}\"*"),
                None => format!("\"{w}\""),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// PostgreSQL's `to_tsquery('simple', …)`, as [`SearchQuery::fts5_match`].
    pub fn tsquery(words: &[String]) -> String {
        words
            .iter()
            .map(|w| match w.chars().nth(1) {
                Some(_) => format!("{w}:*"),
                None => w.clone(),
            })
            .collect::<Vec<_>>()
            .join(" & ")
    }
}

/// One result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub kind: ReferenceKind,
    pub id: String,
    pub title: String,
    pub fee_micros: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_prefix_is_a_range_under_any_collation() {
        let range = |p: &str| {
            let (from, before) = number_range(p);
            (from, before.unwrap_or_default())
        };
        assert_eq!(range("+2126123"), ("+2126123".into(), "+2126124".into()));
        assert_eq!(range("+21269"), ("+21269".into(), "+2127".into()));
        assert_eq!(range("+2129999"), ("+2129999".into(), "+213".into()));
        assert_eq!(number_range("+999"), ("+999".into(), None));
    }

    #[test]
    fn folding_drops_case_and_accents() {
        assert_eq!(fold("Appels ILLIMITÉS à Fès"), "appels illimites a fes");
        assert_eq!(fold("Ñandú Øre"), "nandu øre");
    }

    #[test]
    fn numbers_in_any_spelling_are_one_prefix() {
        let morocco = CountryCode::parse("212").unwrap();
        for typed in [
            "0612 34",
            "+212 6 12 34",
            "00212-61234",
            "(061) 234",
            "21261234",
        ] {
            assert_eq!(
                Find::parse(typed, morocco),
                Find::NumberPrefix("+21261234".into()),
                "{typed}"
            );
        }
    }

    #[test]
    fn every_word_is_required_and_a_prefix_unless_one_letter() {
        let words: Vec<String> = ["fes", "a"].map(String::from).to_vec();
        assert_eq!(SearchQuery::fts5_match(&words), "\"fes\"* AND \"a\"");
        assert_eq!(SearchQuery::tsquery(&words), "fes:* & a");
    }

    #[test]
    fn words_are_folded_and_stripped_of_operators() {
        let home = CountryCode::parse("212").unwrap();
        assert_eq!(
            Find::parse("Illimités \"OR\" gold*", home),
            Find::Words(vec!["illimites".into(), "or".into(), "gold".into()])
        );
        assert_eq!(Find::parse("  -- ", home), Find::Everything);
    }
}
