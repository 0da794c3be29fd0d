//! What mediation must know of a country to read its switches' records:
//! one file per country (`config/countries/<cc>.toml`), with its zone and
//! its numbering plan ([`numbering`]). Issue 15 adds the source encodings
//! and field mappings beside them.

pub mod numbering;

use serde::Deserialize;

use numbering::{NumberingFile, NumberingPlan, PlanError};

/// A country file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryFile {
    /// ISO 3166 alpha-2, lower case: the `cc` of `cdr.raw.cc`.
    pub country: String,
    /// The IANA zone of timestamps that carry no offset.
    pub zone: String,
    pub numbering: NumberingFile,
}

/// A country file read and checked.
#[derive(Clone, Debug)]
pub struct Country {
    pub country: String,
    pub zone: String,
    pub numbering: NumberingPlan,
}

/// Why a country file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CountryError {
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("country `{0}` is not two lower-case letters")]
    Code(String),
}

impl Country {
    pub fn parse(text: &str) -> Result<Country, CountryError> {
        let file: CountryFile = toml::from_str(text)?;
        if file.country.len() != 2 || !file.country.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(CountryError::Code(file.country));
        }
        Ok(Country {
            numbering: NumberingPlan::from_file(&file.numbering)?,
            country: file.country,
            zone: file.zone,
        })
    }
}
