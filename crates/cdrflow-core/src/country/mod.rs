//! What mediation must know of a country to read its switches' records:
//! one file per country (`config/countries/<cc>.toml`), with its zone and
//! its numbering plan ([`numbering`]). Issue 15 adds the source encodings
//! and field mappings beside them.

pub mod numbering;

use serde::Deserialize;

use crate::normalize::EpochMillis;

use numbering::{NumberingFile, NumberingPlan, PlanError};

/// A country file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryFile {
    /// ISO 3166 alpha-2, lower case: the `cc` of `cdr.raw.cc`.
    pub country: String,
    /// The IANA zone of timestamps that carry no offset (checked at load).
    pub zone: String,
    pub numbering: NumberingFile,
}

/// A country file read and checked.
#[derive(Clone, Debug)]
pub struct Country {
    pub country: String,
    pub zone: jiff::tz::TimeZone,
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
    #[error("zone `{0}` is not an IANA zone (Europe/Paris, Africa/Abidjan, …)")]
    Zone(String),
}

impl Country {
    pub fn parse(text: &str) -> Result<Country, CountryError> {
        let file: CountryFile = toml::from_str(text)?;
        if file.country.len() != 2 || !file.country.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(CountryError::Code(file.country));
        }
        let zone = jiff::tz::TimeZone::get(&file.zone)
            .map_err(|_| CountryError::Zone(file.zone.clone()))?;
        Ok(Country {
            numbering: NumberingPlan::from_file(&file.numbering)?,
            country: file.country,
            zone,
        })
    }

    /// The instant of a wall-clock reading in the country's zone
    /// (`local` counts the reading as if it were UTC). Deterministic at
    /// daylight-saving changes: a reading in the hour skipped in spring is
    /// taken at the offset before the change (02:30 in Paris on the last
    /// Sunday of March is 01:30 UTC), a reading in the hour repeated in
    /// autumn is its first occurrence (02:30 on the last Sunday of October
    /// is 00:30 UTC) — jiff's `compatible`, RFC 5545's rule.
    pub fn instant_of_local(&self, local: EpochMillis) -> Option<EpochMillis> {
        let reading = jiff::Timestamp::from_millisecond(local)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .datetime();
        let instant = self
            .zone
            .to_ambiguous_timestamp(reading)
            .compatible()
            .ok()?;
        Some(instant.as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::parse_timestamp;

    fn country(zone: &str) -> Result<Country, CountryError> {
        Country::parse(&format!(
            "country = \"fr\"\nzone = \"{zone}\"\n[numbering]\ncountry_code = 33\ntrunk_prefix = \"0\"\nnational_lengths = [9]\n"
        ))
    }

    #[test]
    fn local_times_take_the_zones_offset_then_even_across_a_change() {
        let paris = country("Europe/Paris").unwrap();
        let at = |local: &str| {
            paris
                .instant_of_local(parse_timestamp(local).unwrap())
                .unwrap()
        };
        let utc = |text: &str| parse_timestamp(text).unwrap();
        assert_eq!(at("2024-01-15T12:00:00Z"), utc("2024-01-15T11:00:00Z"));
        assert_eq!(at("2024-07-15T12:00:00Z"), utc("2024-07-15T10:00:00Z"));
        // Skipped (02:00 → 03:00 on 31 March 2024): the offset before, +01:00.
        assert_eq!(at("2024-03-31T02:30:00Z"), utc("2024-03-31T01:30:00Z"));
        // Repeated (03:00 → 02:00 on 27 October 2024): the first, +02:00.
        assert_eq!(at("2024-10-27T02:30:00Z"), utc("2024-10-27T00:30:00Z"));
        let abidjan = country("Africa/Abidjan").unwrap();
        let noon = utc("2021-01-31T12:00:00Z");
        assert_eq!(abidjan.instant_of_local(noon), Some(noon));
    }

    #[test]
    fn a_zone_that_is_not_iana_is_refused() {
        let error = country("Europe/Atlantis").unwrap_err().to_string();
        assert!(
            error.contains("`Europe/Atlantis` is not an IANA zone"),
            "{error}"
        );
    }
}
