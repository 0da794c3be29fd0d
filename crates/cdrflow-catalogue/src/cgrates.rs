//! `cdrflow catalogue import --cgrates DIR`: a CGRateS tariff plan's CSV
//! files (Destinations, Rates, DestinationRates, Timings, RatingPlans,
//! RatingProfiles) as a native catalogue.
//!
//! How it maps:
//! - each distinct `ActivationTime` of RatingProfiles.csv is a version; a
//!   profile's `Subject` is a plan, holding the rates of the rating plans
//!   its profiles (one per category: `call` gives voice rates, `sms` SMS
//!   rates) have in force then — tenants are not told apart;
//! - RatingPlans.csv rows are a plan's rates, by `Weight` (highest first),
//!   each the destination rate's destination (`*any`: every number) in the
//!   row's timing (`*any`: every band). A number's destination is its
//!   longest prefix among all destinations (CGRateS looks for the longest
//!   prefix that has a rate in force, so a plan that prices `44` but not a
//!   longer `447` it also knows behaves differently);
//! - Rates.csv rows of one id are a rate's slots (`GroupIntervalStart`,
//!   `Rate` per `RateUnit`, in `RateIncrement`s), its connect fee the first
//!   row's; DestinationRates.csv gives the rounding (`*up` → up, `*down` →
//!   down, `*middle` → half up) and decimals;
//! - Timings.csv rows become bands: a timing starts at its `Time` on its
//!   `WeekDays` and ends where the next timing on those days starts.
//!
//! **Rounding point.** CGRateS rounds each increment's cost to 5 decimals
//! as it goes and the record's cost at the end (its tutorial's 120 s call
//! costs 0.7002 where 0.7 is meant); cdrflow prices the whole record exactly
//! and rounds once, at the destination rate's `RoundingMethod` and
//! `RoundingDecimals`. So CGRateS issue #260 (24 s, connect fee 0.15, 0.05
//! per 60 s by the second, `*up` to 2 decimals) costs 0.17 here — the
//! total rounded once, as CGRateS' own test now expects — not the 0.18 of
//! rounding each span up.
//!
//! What it does not take it refuses, naming the file, line and field:
//! timings by year, month or day of month, `MaxCost` strategies,
//! `RatesFallbackSubject`, categories other than call and sms.

use std::collections::{BTreeMap, BTreeSet};

use crate::file::{
    BandFile, CatalogueFile, DestinationFile, PlanFile, SlotFile, SmsFile, VersionFile, VoiceFile,
};
use cdrflow_core::normalize::EpochMillis;

use crate::Catalogue;

#[derive(Debug, thiserror::Error)]
#[error("{file} line {line}, {field}: {why}")]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub why: String,
}

/// What a CGRateS tariff plan does not say.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub currency: String,
    /// The zone timings are in (CGRateS': the server's).
    pub zone: String,
    /// The class every destination gets (CGRateS has none).
    pub class: String,
}

/// The files an import reads.
pub const FILES: [&str; 6] = [
    "Destinations.csv",
    "Rates.csv",
    "DestinationRates.csv",
    "Timings.csv",
    "RatingPlans.csv",
    "RatingProfiles.csv",
];

/// One CSV file: rows with their line numbers, columns found by the
/// header's names (`#Id,Prefix`), which differ between CGRateS versions.
struct Table<'a> {
    file: &'static str,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<&'a str>)>,
}

struct Row<'t, 'a> {
    table: &'t Table<'a>,
    line: usize,
    cells: &'t [&'a str],
}

impl<'a> Table<'a> {
    fn parse(file: &'static str, text: &'a str) -> Result<Table<'a>, ImportError> {
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(header) = trimmed.strip_prefix('#') {
                if columns.is_empty() {
                    columns = header.split(',').map(|c| c.trim().to_string()).collect();
                }
                continue;
            }
            rows.push((line_no, trimmed.split(',').map(str::trim).collect()));
        }
        if columns.is_empty() {
            return Err(ImportError {
                file: file.into(),
                line: 1,
                field: "header".into(),
                why: "no `#Column,...` header line: cannot tell the columns apart".into(),
            });
        }
        Ok(Table {
            file,
            columns,
            rows,
        })
    }

    fn rows(&self) -> impl Iterator<Item = Row<'_, 'a>> {
        self.rows.iter().map(move |(line, cells)| Row {
            table: self,
            line: *line,
            cells,
        })
    }
}

impl<'a> Row<'_, 'a> {
    fn error(&self, field: &str, why: impl Into<String>) -> ImportError {
        ImportError {
            file: self.table.file.into(),
            line: self.line,
            field: field.into(),
            why: why.into(),
        }
    }

    /// The cell of `column` (empty when the row is short).
    fn get(&self, column: &str) -> Result<&'a str, ImportError> {
        let index = self
            .table
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| self.error(column, "the header has no such column"))?;
        Ok(self.cells.get(index).copied().unwrap_or(""))
    }

    fn required(&self, column: &str) -> Result<&'a str, ImportError> {
        match self.get(column)? {
            "" => Err(self.error(column, "empty")),
            value => Ok(value),
        }
    }
}

/// Seconds of a CGRateS duration: `60s`, `1m`, `1h`, `1m30s` or a bare number.
fn seconds(row: &Row<'_, '_>, column: &str) -> Result<u64, ImportError> {
    let text = row.required(column)?;
    let bad = || {
        row.error(
            column,
            format!("`{text}` is not a duration in whole seconds (60s, 1m, 1h)"),
        )
    };
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number.parse().map_err(|_| bad())?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return Err(bad()),
        }
    }
    if number.is_empty() {
        Ok(total)
    } else {
        Err(bad())
    }
}

/// A timing: the weekdays (Monday 1) and start minute it applies from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Timing {
    days: BTreeSet<u8>,
    start: u16,
}

fn any_or(value: &str, row: &Row<'_, '_>, column: &str) -> Result<(), ImportError> {
    match value {
        "*any" | "" => Ok(()),
        _ => Err(row.error(
            column,
            format!("`{value}`: timings by {column} are not supported (only *any)"),
        )),
    }
}

fn timings(table: &Table<'_>) -> Result<BTreeMap<String, Timing>, ImportError> {
    let mut out = BTreeMap::new();
    for row in table.rows() {
        let tag = row.required("Tag")?.to_string();
        for column in ["Years", "Months", "MonthDays"] {
            any_or(row.get(column)?, &row, column)?;
        }
        let days = match row.get("WeekDays")? {
            "*any" | "" => (1..=7).collect(),
            text => text
                .split(';')
                .map(|d| d.trim().parse::<u8>().ok().filter(|d| (1..=7).contains(d)))
                .collect::<Option<BTreeSet<u8>>>()
                .ok_or_else(|| {
                    row.error(
                        "WeekDays",
                        format!("`{text}`: expected days 1 (Monday) to 7 separated by ;"),
                    )
                })?,
        };
        let start = match row.get("Time")? {
            "*any" | "" => 0,
            text => {
                let mut parts = text.split(':').map(|p| p.parse::<u16>().ok());
                match (parts.next().flatten(), parts.next().flatten()) {
                    (Some(h), Some(m)) if h < 24 && m < 60 => h * 60 + m,
                    _ => return Err(row.error("Time", format!("`{text}` is not HH:MM:SS"))),
                }
            }
        };
        out.insert(tag, Timing { days, start });
    }
    Ok(out)
}

/// Bands for the timings used: each runs from its start to the next start
/// of any timing of the file on the same days (timings on overlapping but
/// different days cannot be told apart and are refused).
fn bands(
    used: &BTreeSet<String>,
    timings: &BTreeMap<String, Timing>,
) -> Result<Vec<BandFile>, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut bands = Vec::new();
    for tag in used {
        let timing = &timings[tag];
        let mut end = 1440u16;
        for (other_tag, other) in timings.iter().filter(|(t, _)| *t != tag) {
            if other.days == timing.days {
                if other.start > timing.start {
                    end = end.min(other.start);
                }
            } else if !other.days.is_disjoint(&timing.days) {
                return Err(format!(
                    "timings `{tag}` and `{other_tag}` share some weekdays but not all; cannot tell where one ends"
                ));
            }
        }
        let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        bands.push(BandFile {
            id: tag.clone(),
            days: Some(
                timing
                    .days
                    .iter()
                    .map(|d| DAYS[usize::from(*d) - 1].to_string())
                    .collect(),
            ),
            from: Some(clock(timing.start)),
            to: Some(clock(end)),
            holidays: false,
        });
    }
    // Whatever the timings leave uncovered takes only rates in every band (`*any`).
    bands.push(BandFile {
        id: "any".into(),
        days: None,
        from: None,
        to: None,
        holidays: false,
    });
    Ok(bands)
}

/// A RatingPlans.csv row: destination rates in a timing, by weight.
struct PlanRow {
    weight: i64,
    destination_rates: String,
    timing: Option<String>,
    line: usize,
}

struct RateSlots {
    connect_fee: String,
    slots: Vec<SlotFile>,
}

struct DestinationRate {
    destination: Option<String>,
    rates: String,
    rounding: &'static str,
    decimals: u32,
    line: usize,
}

/// Imports the tariff plan whose files `read` returns by name.
pub fn import(
    read: &dyn Fn(&str) -> Option<String>,
    options: &ImportOptions,
) -> Result<String, ImportError> {
    let texts: Vec<String> = FILES
        .iter()
        .map(|name| {
            read(name).ok_or_else(|| ImportError {
                file: (*name).into(),
                line: 0,
                field: "-".into(),
                why: "missing from the tariff plan".into(),
            })
        })
        .collect::<Result<_, _>>()?;
    let table = |i: usize| Table::parse(FILES[i], &texts[i]);
    let (destinations_t, rates_t, destination_rates_t) = (table(0)?, table(1)?, table(2)?);
    let (timings_t, plans_t, profiles_t) = (table(3)?, table(4)?, table(5)?);

    let mut destinations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in destinations_t.rows() {
        let prefix = row.required("Prefix")?.trim_start_matches('+');
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(row.error(
                "Prefix",
                format!("`{prefix}` is not digits of an E.164 prefix"),
            ));
        }
        destinations
            .entry(row.required("Id")?.to_string())
            .or_default()
            .push(prefix.to_string());
    }

    let mut rates: BTreeMap<String, RateSlots> = BTreeMap::new();
    for row in rates_t.rows() {
        let id = row.required("Id")?.to_string();
        let slot = SlotFile {
            from_seconds: seconds(&row, "GroupIntervalStart")?,
            price: row.required("Rate")?.to_string(),
            per_seconds: seconds(&row, "RateUnit")?,
            increment: seconds(&row, "RateIncrement")?,
        };
        let entry = rates.entry(id).or_insert_with(|| RateSlots {
            connect_fee: row.get("ConnectFee").unwrap_or("0").to_string(),
            slots: Vec::new(),
        });
        if slot.from_seconds == 0 {
            entry.connect_fee = row.get("ConnectFee")?.to_string();
        }
        entry.slots.push(slot);
    }
    for r in rates.values_mut() {
        r.slots.sort_by_key(|s| s.from_seconds);
    }

    let mut destination_rates: BTreeMap<String, Vec<DestinationRate>> = BTreeMap::new();
    for row in destination_rates_t.rows() {
        let rounding = match row.required("RoundingMethod")? {
            "*up" => "up",
            "*down" => "down",
            "*middle" => "half_up",
            other => {
                return Err(row.error(
                    "RoundingMethod",
                    format!("`{other}`: expected *up, *down or *middle"),
                ))
            }
        };
        let decimals: u32 = row
            .required("RoundingDecimals")?
            .parse()
            .ok()
            .filter(|d| *d <= 6)
            .ok_or_else(|| {
                row.error(
                    "RoundingDecimals",
                    "expected 0 to 6 (costs are kept in micro-units)",
                )
            })?;
        if let Ok(max) = row.get("MaxCost") {
            if !matches!(max, "" | "0" | "0.0") {
                return Err(row.error(
                    "MaxCost",
                    format!("`{max}`: a maximum cost with a strategy is not supported"),
                ));
            }
        }
        let destination = match row.required("DestinationId")? {
            "*any" => None,
            id if destinations.contains_key(id) => Some(id.to_string()),
            id => {
                return Err(row.error(
                    "DestinationId",
                    format!("`{id}` is not in Destinations.csv"),
                ))
            }
        };
        let tag = row.required("RatesTag")?;
        if !rates.contains_key(tag) {
            return Err(row.error("RatesTag", format!("`{tag}` is not in Rates.csv")));
        }
        destination_rates
            .entry(row.required("Id")?.to_string())
            .or_default()
            .push(DestinationRate {
                destination,
                rates: tag.to_string(),
                rounding,
                decimals,
                line: row.line,
            });
    }

    let timings = timings(&timings_t)?;
    let mut plans: BTreeMap<String, Vec<PlanRow>> = BTreeMap::new();
    for row in plans_t.rows() {
        let dr = row.required("DestinationRatesId")?;
        if !destination_rates.contains_key(dr) {
            return Err(row.error(
                "DestinationRatesId",
                format!("`{dr}` is not in DestinationRates.csv"),
            ));
        }
        let timing = match row.required("TimingTag")? {
            "*any" => None,
            tag if timings.contains_key(tag) => Some(tag.to_string()),
            tag => return Err(row.error("TimingTag", format!("`{tag}` is not in Timings.csv"))),
        };
        let weight: i64 = row
            .get("Weight")?
            .parse()
            .map_err(|_| row.error("Weight", "not a whole number"))?;
        plans
            .entry(row.required("Id")?.to_string())
            .or_default()
            .push(PlanRow {
                weight,
                destination_rates: dr.to_string(),
                timing,
                line: row.line,
            });
    }
    for rows in plans.values_mut() {
        rows.sort_by_key(|r| (-r.weight, r.line));
    }

    // Per (tenant, category, subject), its rating plans by activation time.
    let mut activations: BTreeMap<(String, String, String), Vec<(EpochMillis, String)>> =
        BTreeMap::new();
    let mut starts = BTreeSet::new();
    for row in profiles_t.rows() {
        if let Ok(direction) = row.get("Direction") {
            if !matches!(direction, "" | "*out") {
                return Err(row.error(
                    "Direction",
                    format!("`{direction}`: only *out profiles are rated"),
                ));
            }
        }
        if let Ok(fallback) = row.get("RatesFallbackSubject") {
            if !fallback.is_empty() {
                return Err(row.error(
                    "RatesFallbackSubject",
                    "fallback subjects are not supported",
                ));
            }
        }
        let category = row.required("Category")?;
        if !matches!(category, "call" | "sms") {
            return Err(row.error(
                "Category",
                format!("`{category}`: only call and sms are imported"),
            ));
        }
        let text = row.required("ActivationTime")?;
        let start = cdrflow_core::normalize::parse_timestamp(text)
            .map_err(|e| row.error("ActivationTime", format!("`{text}`: {e:?}")))?;
        let plan = row.required("RatingPlanId")?;
        if !plans.contains_key(plan) {
            return Err(row.error(
                "RatingPlanId",
                format!("`{plan}` is not in RatingPlans.csv"),
            ));
        }
        starts.insert(start);
        activations
            .entry((
                row.get("Tenant")?.into(),
                category.into(),
                row.required("Subject")?.into(),
            ))
            .or_default()
            .push((start, plan.to_string()));
    }
    if starts.is_empty() {
        return Err(ImportError {
            file: "RatingProfiles.csv".into(),
            line: 0,
            field: "-".into(),
            why: "no rating profile: nothing is in force".into(),
        });
    }

    let mut versions = Vec::new();
    for &start in &starts {
        // Per subject (a plan here), the rating plan of each category in
        // force at `start`.
        let mut in_force: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for ((_, category, subject), history) in &activations {
            if let Some((_, plan)) = history
                .iter()
                .filter(|(s, _)| *s <= start)
                .max_by_key(|(s, _)| *s)
            {
                in_force.entry(subject).or_default().insert(category, plan);
            }
        }
        let mut used_timings = BTreeSet::new();
        let mut plan_files = Vec::new();
        for (subject, categories) in &in_force {
            let mut voice = Vec::new();
            let mut sms = Vec::new();
            for (&category, &plan_id) in categories {
                for (
                    n,
                    PlanRow {
                        destination_rates: dr_id,
                        timing,
                        ..
                    },
                ) in plans[plan_id].iter().enumerate()
                {
                    used_timings.extend(timing.clone());
                    for (m, dr) in destination_rates[dr_id].iter().enumerate() {
                        let rate = &rates[&dr.rates];
                        let id = format!("{plan_id}/{dr_id}#{n}.{m}");
                        if category == "call" {
                            voice.push(VoiceFile {
                                id,
                                destination: dr.destination.clone(),
                                class: None,
                                band: timing.clone(),
                                connect_fee: rate.connect_fee.clone(),
                                price: None,
                                per_seconds: 60,
                                increments: None,
                                slot: rate.slots.clone(),
                                min_charge: "0".into(),
                                max_charge: None,
                                rounding: dr.rounding.into(),
                                decimals: dr.decimals,
                            });
                            continue;
                        }
                        // A message is one unit: the first slot's price per its unit.
                        let slot = &rate.slots[0];
                        if slot.per_seconds != 1 {
                            return Err(ImportError {
                                file: "DestinationRates.csv".into(),
                                line: dr.line,
                                field: "RatesTag".into(),
                                why: format!(
                                    "rate `{}` prices SMS per {} units; only per 1 message is imported",
                                    dr.rates, slot.per_seconds
                                ),
                            });
                        }
                        sms.push(SmsFile {
                            id,
                            destination: dr.destination.clone(),
                            class: None,
                            band: timing.clone(),
                            price: slot.price.clone(),
                            rounding: dr.rounding.into(),
                            decimals: dr.decimals,
                        });
                    }
                }
            }
            plan_files.push(PlanFile {
                id: subject.to_string(),
                monthly_fee: None,
                voice,
                sms,
                data: None,
                activation: None,
                discount: Vec::new(),
                allowance: Vec::new(),
            });
        }
        let mut destination_files: Vec<DestinationFile> = destinations
            .iter()
            .map(|(id, prefixes)| DestinationFile {
                id: id.clone(),
                class: options.class.clone(),
                prefixes: prefixes.clone(),
                wholesale_per_minute: None,
                wholesale_per_message: None,
            })
            .collect();
        // Numbers no prefix covers still have a destination, for `*any` rates.
        {
            destination_files.push(DestinationFile {
                id: "any".into(),
                class: options.class.clone(),
                prefixes: (1..=9)
                    .map(|d| d.to_string())
                    .filter(|p| !destinations.values().flatten().any(|q| q == p))
                    .collect(),
                wholesale_per_minute: None,
                wholesale_per_message: None,
            });
        }
        versions.push(VersionFile {
            id: cdrflow_core::normalize::format_timestamp(start),
            effective_from: cdrflow_core::normalize::format_timestamp(start),
            currency: options.currency.clone(),
            zone: options.zone.clone(),
            holidays: Vec::new(),
            destination: destination_files,
            band: bands(&used_timings, &timings).map_err(|why| ImportError {
                file: "Timings.csv".into(),
                line: 0,
                field: "WeekDays".into(),
                why,
            })?,
            plan: plan_files,
            bundle: Vec::new(),
        });
    }
    let file = CatalogueFile { version: versions };
    let text = format!(
        "# Imported from a CGRateS tariff plan by `cdrflow catalogue import --cgrates`.\n# Costs are exact and rounded once per record (see the import's documentation).\n\n{}",
        toml::to_string(&file).expect("a catalogue file serialises")
    );
    // What was written must load: the same checks as any catalogue.
    Catalogue::from_toml(&text).map_err(|e| ImportError {
        file: "(the imported catalogue)".into(),
        line: 0,
        field: "-".into(),
        why: e.to_string(),
    })?;
    Ok(text)
}
