//! The billing file (`config/billing.toml` is the shipped one and its
//! documentation): how invoice figures are rounded, tax rates by the
//! customer's billing country, the billing entities that number invoices,
//! and invoice discounts.

use serde::Deserialize;

use crate::money::{Decimal, Rounding};

pub const DEFAULT_BILLING_TOML: &str = include_str!("../../../../config/billing.toml");

/// The billing settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingConfig {
    /// Decimal places of every invoice figure (the currency's minor unit).
    pub decimals: u32,
    /// How each figure is rounded, once.
    pub rounding: Rounding,
    /// Whether the catalogue's prices already hold the tax (gross).
    pub prices_include_tax: bool,
    /// Thousandths of a percent (20% is 20,000) where no country says otherwise.
    pub default_tax_milli: u64,
    /// By ISO 3166-1 alpha-2 country, in the file's order.
    pub country_tax_milli: Vec<(String, u64)>,
    /// The first whose countries hold the customer's (or that lists none) bills it.
    pub entities: Vec<Entity>,
    pub discounts: Vec<InvoiceDiscount>,
}

/// Who issues an invoice: each numbers its invoices without gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    pub id: String,
    /// Put before the number: `INV-` gives `INV-00000001`.
    pub prefix: String,
    /// Put before its credit notes' numbers; credit and debit notes have
    /// sequences of their own. Unless given: `CN-` then the invoice
    /// prefix less a leading `INV-` (`INV-` gives `CN-`, `ZA-` `CN-ZA-`).
    pub credit_note_prefix: String,
    /// The same for debit notes, with `DN-`.
    pub debit_note_prefix: String,
    /// Empty: every country.
    pub countries: Vec<String>,
}

/// What an invoice discount is taken off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscountBase {
    Usage,
    Recurring,
    All,
}

/// A percentage off an invoice's usage or recurring lines (or both),
/// for every customer or the subscriptions on some plans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceDiscount {
    pub id: String,
    /// Thousandths of a percent.
    pub percent_milli: u64,
    pub on: DiscountBase,
    /// Empty: every plan. Usage lines carry no plan, so a discount with
    /// plans applies to recurring lines only.
    pub plans: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BillingConfigError {
    #[error("the billing file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    decimals: Option<u32>,
    rounding: Option<String>,
    #[serde(default)]
    prices_include_tax: bool,
    tax: Option<TaxFile>,
    #[serde(default)]
    entity: Vec<EntityFile>,
    #[serde(default)]
    discount: Vec<DiscountFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxFile {
    default_percent: String,
    #[serde(default)]
    countries: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityFile {
    id: String,
    prefix: String,
    credit_note_prefix: Option<String>,
    debit_note_prefix: Option<String>,
    #[serde(default)]
    countries: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscountFile {
    id: String,
    percent: String,
    on: String,
    #[serde(default)]
    plans: Vec<String>,
}

/// A note sequence's default prefix: `kind` then the invoice prefix less a leading `INV-`.
fn note_prefix(kind: &str, invoice_prefix: &str) -> String {
    format!(
        "{kind}{}",
        invoice_prefix
            .strip_prefix("INV-")
            .unwrap_or(invoice_prefix)
    )
}

fn invalid(what: impl Into<String>, why: impl Into<String>) -> BillingConfigError {
    BillingConfigError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}

/// `"20"`, `"7.5"` as thousandths of a percent, at most 100%.
fn percent_milli(what: &str, text: &str) -> Result<u64, BillingConfigError> {
    let milli = Decimal::parse(text)
        .ok()
        .and_then(|d| d.scaled_to_integer(3))
        .filter(|m| (0..=100_000).contains(m))
        .ok_or_else(|| {
            invalid(
                what,
                format!("`{text}` is not a percentage from 0 to 100 with at most 3 decimals"),
            )
        })?;
    Ok(milli as u64)
}

impl BillingConfig {
    pub fn parse(text: &str) -> Result<BillingConfig, BillingConfigError> {
        let file: File = toml::from_str(text)?;
        let decimals = file.decimals.unwrap_or(2);
        if decimals > 6 {
            return Err(invalid("decimals", format!("{decimals} is more than 6")));
        }
        let rounding = match file.rounding.as_deref() {
            None => Rounding::HalfUp,
            Some(text) => Rounding::parse(text).ok_or_else(|| {
                invalid(
                    "rounding",
                    format!("`{text}` is not half_up, half_even, up or down"),
                )
            })?,
        };
        let (default_tax_milli, country_tax_milli) = match file.tax {
            None => (20_000, Vec::new()),
            Some(tax) => {
                let default = percent_milli("tax.default_percent", &tax.default_percent)?;
                let mut countries = Vec::new();
                for (country, value) in tax.countries {
                    let what = format!("tax.countries.{country}");
                    let text = value.as_str().ok_or_else(|| {
                        invalid(&what, "write the percentage as a string: \"20\"")
                    })?;
                    countries.push((country.to_ascii_uppercase(), percent_milli(&what, text)?));
                }
                (default, countries)
            }
        };
        let mut entities = Vec::new();
        for e in file.entity {
            if e.id.is_empty() || entities.iter().any(|x: &Entity| x.id == e.id) {
                return Err(invalid(
                    format!("entity `{}`", e.id),
                    "ids must be present and distinct",
                ));
            }
            entities.push(Entity {
                credit_note_prefix: e
                    .credit_note_prefix
                    .unwrap_or_else(|| note_prefix("CN-", &e.prefix)),
                debit_note_prefix: e
                    .debit_note_prefix
                    .unwrap_or_else(|| note_prefix("DN-", &e.prefix)),
                id: e.id,
                prefix: e.prefix,
                countries: e.countries.iter().map(|c| c.to_ascii_uppercase()).collect(),
            });
        }
        if !entities.iter().any(|e| e.countries.is_empty()) {
            entities.push(Entity {
                id: "default".into(),
                prefix: "INV-".into(),
                credit_note_prefix: "CN-".into(),
                debit_note_prefix: "DN-".into(),
                countries: Vec::new(),
            });
        }
        // Numbers are unique across the store: no two sequences may share a prefix.
        let mut prefixes: Vec<(&str, &str, &str)> = Vec::new();
        for e in &entities {
            for (what, prefix) in [
                ("prefix", e.prefix.as_str()),
                ("credit_note_prefix", &e.credit_note_prefix),
                ("debit_note_prefix", &e.debit_note_prefix),
            ] {
                if let Some((id, other, _)) = prefixes.iter().find(|(_, _, p)| *p == prefix) {
                    return Err(invalid(
                        format!("entity `{}`", e.id),
                        format!("its {what} `{prefix}` is also entity `{id}`'s {other}: give each sequence a prefix of its own"),
                    ));
                }
                prefixes.push((&e.id, what, prefix));
            }
        }
        let mut discounts = Vec::new();
        for d in file.discount {
            let what = format!("discount `{}`", d.id);
            let on = match d.on.as_str() {
                "usage" => DiscountBase::Usage,
                "recurring" => DiscountBase::Recurring,
                "all" => DiscountBase::All,
                other => {
                    return Err(invalid(
                        &what,
                        format!("`on = \"{other}\"` is not usage, recurring or all"),
                    ))
                }
            };
            discounts.push(InvoiceDiscount {
                percent_milli: percent_milli(&what, &d.percent)?,
                id: d.id,
                on,
                plans: d.plans,
            });
        }
        Ok(BillingConfig {
            decimals,
            rounding,
            prices_include_tax: file.prices_include_tax,
            default_tax_milli,
            country_tax_milli,
            entities,
            discounts,
        })
    }

    /// The shipped settings: seed 001's 20% tax, two decimals, half up.
    pub fn shipped() -> BillingConfig {
        BillingConfig::parse(DEFAULT_BILLING_TOML).expect("the shipped billing file is valid")
    }

    /// The tax rate of a customer billed in `country`, in thousandths of a percent.
    pub fn tax_milli(&self, country: &str) -> u64 {
        self.country_tax_milli
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(country))
            .map_or(self.default_tax_milli, |(_, milli)| *milli)
    }

    /// The entity that bills a customer in `country`.
    pub fn entity_for(&self, country: &str) -> &Entity {
        self.entities
            .iter()
            .find(|e| {
                e.countries.is_empty()
                    || e.countries.iter().any(|c| c.eq_ignore_ascii_case(country))
            })
            .expect("parse adds an entity for every country")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_seed_001s_twenty_percent() {
        let config = BillingConfig::shipped();
        assert_eq!(config.tax_milli("MA"), 20_000);
        assert_eq!(config.decimals, 2);
        assert!(!config.prices_include_tax);
    }

    #[test]
    fn countries_pick_their_rate_and_entity() {
        let config = BillingConfig::parse(
            "[tax]\ndefault_percent = \"20\"\ncountries = { za = \"15\", KZ = \"12.5\" }\n\
             [[entity]]\nid = \"za\"\nprefix = \"ZA-\"\ncountries = [\"ZA\"]\n",
        )
        .unwrap();
        assert_eq!(config.tax_milli("ZA"), 15_000);
        assert_eq!(config.tax_milli("kz"), 12_500);
        assert_eq!(config.tax_milli("MA"), 20_000);
        assert_eq!(config.entity_for("ZA").prefix, "ZA-");
        assert_eq!(config.entity_for("MA").id, "default");
        assert_eq!(config.entity_for("ZA").credit_note_prefix, "CN-ZA-");
        assert_eq!(config.entity_for("MA").debit_note_prefix, "DN-");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("decimals = 9", "decimals: 9 is more than 6"),
            ("rounding = \"nearest\"", "`nearest` is not half_up"),
            (
                "[tax]\ndefault_percent = \"120\"",
                "tax.default_percent: `120` is not a percentage",
            ),
            (
                "[[discount]]\nid = \"x\"\npercent = \"5\"\non = \"calls\"",
                "discount `x`: `on = \"calls\"`",
            ),
            (
                "[[entity]]\nid = \"za\"\nprefix = \"ZA-\"\ncredit_note_prefix = \"CN-\"\ncountries = [\"ZA\"]",
                "entity `default`: its credit_note_prefix `CN-` is also entity `za`'s credit_note_prefix",
            ),
        ] {
            let error = BillingConfig::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
