//! Which source table feeds which reference entity, column by column
//! (`config/cdc.toml`, documented there).
//!
//! Operational databases name things their own way (`plan_code`,
//! `account_type = 'PREPAID'`), so the mapping is declarative: per table,
//! the entity it feeds and, per entity field, the source column — with the
//! decimal scale or time unit a schema-less event cannot carry, and a
//! table of values to translate. What a mapped row becomes is then checked
//! exactly as a CSV reference row is ([`reference::row_from_texts`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::value::{Row, TimeUnit, Value};
use crate::normalize::{format_timestamp_ms, normalize_msisdn, CountryCode, EpochMillis, Msisdn};
use crate::reference::{self, format_effective_from, ReferenceError, ReferenceKind, ReferenceRow};

/// What a source table feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Reference(ReferenceKind),
    /// Top-ups and corrections of prepaid balances: each row an amount
    /// added to a subscriber's balance (a change of the row moves the
    /// balance by the difference, a delete takes it back).
    BalanceAdjustments,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Reference(kind) => kind.as_str(),
            Entity::BalanceAdjustments => "balance_adjustments",
        }
    }

    fn parse(text: &str) -> Option<Entity> {
        match text {
            "balance_adjustments" => Some(Entity::BalanceAdjustments),
            _ => ReferenceKind::parse(text).map(Entity::Reference),
        }
    }

    /// The fields a mapping may give, the id first; and which are required.
    fn fields(self) -> &'static [(&'static str, FieldType, bool)] {
        use FieldType::*;
        match self {
            Entity::Reference(ReferenceKind::Subscribers) => &[
                ("msisdn", Number, true),
                ("customer_id", Text, true),
                ("plan_id", Text, true),
                ("region", Text, false),
                ("status", Text, false),
                ("payment", Text, false),
                ("activation_date", Date, false),
                ("effective_from", Instant, false),
            ],
            Entity::Reference(ReferenceKind::Customers) => &[
                ("customer_id", Text, true),
                ("name", Text, true),
                ("billing_country", Text, false),
                ("bill_cycle_day", Text, false),
                ("effective_from", Instant, false),
            ],
            Entity::Reference(ReferenceKind::Cells) => &[
                ("cell_id", Text, true),
                ("region", Text, true),
                ("technology", Text, true),
                ("effective_from", Instant, false),
            ],
            Entity::Reference(ReferenceKind::Plans) => &[
                ("plan_id", Text, true),
                ("name", Text, true),
                ("description", Text, false),
                ("monthly_fee", Money, false),
                ("currency", Text, false),
                ("effective_from", Instant, false),
            ],
            Entity::Reference(ReferenceKind::Bundles) => &[
                ("purchase_id", Text, true),
                ("msisdn", Number, true),
                ("bundle_id", Text, true),
                ("expires_at", Instant, false),
                ("effective_from", Instant, false),
            ],
            Entity::BalanceAdjustments => &[
                ("adjustment_id", Text, true),
                ("msisdn", Number, true),
                ("amount", Money, true),
                ("currency", Text, false),
            ],
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldType {
    Text,
    /// A subscriber's number, normalised to E.164.
    Number,
    Money,
    Date,
    Instant,
}

/// The whole mapping.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    tables: Vec<TableMapping>,
}

/// One source table's mapping.
#[derive(Clone, Debug)]
pub struct TableMapping {
    pub table: String,
    /// `None`: the table of that name in any schema.
    pub schema: Option<String>,
    pub entity: Entity,
    /// Per entity field present, where its value comes from.
    columns: Vec<(&'static str, FieldType, Column)>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Column {
    column: String,
    /// The scale of a base64 `Decimal` in events without schemas.
    #[serde(default)]
    scale: Option<u32>,
    /// What a schema-less number in a time column counts.
    #[serde(default)]
    unit: TimeUnit,
    /// Source values to cdrflow's (`PREPAID = "prepaid"`); others pass as they are.
    #[serde(default)]
    values: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default, rename = "table")]
    tables: Vec<TableFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    table: String,
    #[serde(default)]
    schema: Option<String>,
    entity: String,
    columns: BTreeMap<String, ColumnFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ColumnFile {
    Name(String),
    Spec(Column),
}

/// A mistake in the mapping file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{0}")]
    Toml(String),
    #[error("table `{table}`: {why}")]
    Table { table: String, why: String },
}

impl Mapping {
    pub fn parse(text: &str) -> Result<Mapping, MappingError> {
        let file: MappingFile =
            toml::from_str(text).map_err(|e| MappingError::Toml(e.to_string()))?;
        let mut tables = Vec::new();
        for t in file.tables {
            let mistake = |why: String| MappingError::Table {
                table: t.table.clone(),
                why,
            };
            let entity = Entity::parse(&t.entity).ok_or_else(|| {
                mistake(format!(
                    "entity `{}` is not one of subscribers, customers, cells, plans, balance_adjustments",
                    t.entity
                ))
            })?;
            let known = entity.fields();
            let mut columns = Vec::new();
            for (field, source) in t.columns {
                let Some((name, kind, _)) = known.iter().find(|(n, _, _)| *n == field) else {
                    let names: Vec<&str> = known.iter().map(|(n, _, _)| *n).collect();
                    return Err(mistake(format!(
                        "`{field}` is not a field of {entity} (it has {})",
                        names.join(", ")
                    )));
                };
                let column = match source {
                    ColumnFile::Name(column) => Column {
                        column,
                        scale: None,
                        unit: TimeUnit::default(),
                        values: BTreeMap::new(),
                    },
                    ColumnFile::Spec(column) => column,
                };
                columns.push((*name, *kind, column));
            }
            if let Some((missing, _, _)) = known
                .iter()
                .find(|(n, _, required)| *required && !columns.iter().any(|(c, _, _)| c == n))
            {
                return Err(mistake(format!("{entity} needs `{missing}`")));
            }
            if tables
                .iter()
                .any(|o: &TableMapping| o.table == t.table && o.schema == t.schema)
            {
                return Err(mistake("is mapped twice".into()));
            }
            // The id first: it is what deletes are known by.
            columns.sort_by_key(|(name, _, _)| known.iter().position(|(n, _, _)| n == name));
            tables.push(TableMapping {
                table: t.table,
                schema: t.schema,
                entity,
                columns,
            });
        }
        Ok(Mapping { tables })
    }

    /// The mapping of `schema.table`, if it is mapped.
    pub fn table(&self, schema: Option<&str>, table: &str) -> Option<&TableMapping> {
        self.tables
            .iter()
            .find(|t| t.table == table && (t.schema.is_none() || t.schema.as_deref() == schema))
    }
}

/// A balance adjustment row, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub id: String,
    pub msisdn: Msisdn,
    pub micros: i64,
    pub currency: Option<String>,
}

impl TableMapping {
    /// The source column the entity's id comes from.
    pub fn id_column(&self) -> &str {
        &self.columns[0].2.column
    }

    /// The entity's id in `row` (a number in E.164 for subscribers): what
    /// orders its changes and what a delete removes.
    pub fn id(&self, row: &Row, home: CountryCode) -> Result<String, String> {
        let (field, kind, column) = &self.columns[0];
        self.text(row, field, *kind, column, home)?
            .ok_or_else(|| format!("`{}` (the {field}) is missing or null", column.column))
    }

    /// The field's value as text, as a CSV file would hold it; `None` when
    /// the row has no value for it.
    fn text(
        &self,
        row: &Row,
        field: &str,
        kind: FieldType,
        column: &Column,
        home: CountryCode,
    ) -> Result<Option<String>, String> {
        let value = row.get(&column.column).unwrap_or(&Value::Null);
        let named = |why: String| format!("`{}` (the {field}): {why}", column.column);
        let text = match kind {
            FieldType::Text | FieldType::Number => value.text(),
            FieldType::Money => value
                .decimal(column.scale)
                .map_err(named)?
                .map(|d| d.to_string()),
            FieldType::Date => value.date().map_err(named)?.map(|d| d.to_string()),
            FieldType::Instant => value
                .instant_micros(column.unit)
                .map_err(named)?
                .map(|us| format_timestamp_ms(us.div_euclid(1000))),
        };
        let text = text.map(|t| column.values.get(&t).cloned().unwrap_or(t));
        match (kind, text) {
            (FieldType::Number, Some(raw)) => normalize_msisdn(&raw, home)
                .map(|m| Some(m.to_string()))
                .map_err(|why| named(format!("`{raw}` {why}"))),
            (_, text) => Ok(text),
        }
    }

    /// The reference row `row` stands for, in force from `effective_from`
    /// unless the mapping names a column for it.
    pub fn reference_row(
        &self,
        row: &Row,
        effective_from: EpochMillis,
        home: CountryCode,
    ) -> Result<ReferenceRow, String> {
        let Entity::Reference(kind) = self.entity else {
            return Err(format!("{} rows are not reference rows", self.entity));
        };
        let mut texts: Vec<(&str, String)> = Vec::with_capacity(self.columns.len() + 1);
        for (field, field_kind, column) in &self.columns {
            if let Some(text) = self.text(row, field, *field_kind, column, home)? {
                texts.push((field, text));
            }
        }
        if !texts.iter().any(|(f, _)| *f == "effective_from") {
            texts.push(("effective_from", format_effective_from(effective_from)));
        }
        reference::row_from_texts(kind, &texts, home).map_err(|e| match e {
            ReferenceError::Field { column, why, .. } => {
                let source = self
                    .columns
                    .iter()
                    .find(|(f, _, _)| *f == column)
                    .map_or(column, |(_, _, c)| c.column.as_str());
                format!("`{source}` (the {column}) {why}")
            }
            other => other.to_string(),
        })
    }

    /// The balance adjustment `row` stands for.
    pub fn adjustment(&self, row: &Row, home: CountryCode) -> Result<Adjustment, String> {
        let field = |name: &str| -> Result<Option<String>, String> {
            match self.columns.iter().find(|(f, _, _)| *f == name) {
                Some((f, kind, column)) => self.text(row, f, *kind, column, home),
                None => Ok(None),
            }
        };
        let required = |name: &str| -> Result<String, String> {
            field(name)?.ok_or_else(|| format!("the {name} is missing or null"))
        };
        let msisdn = required("msisdn")?;
        Ok(Adjustment {
            id: self.id(row, home)?,
            msisdn: normalize_msisdn(&msisdn, home).map_err(|why| format!("`{msisdn}` {why}"))?,
            micros: reference::money_micros(&required("amount")?)
                .map_err(|why| format!("the amount: {why}"))?,
            currency: field("currency")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Decimal;

    const MA: &str = "212";

    fn home() -> CountryCode {
        CountryCode::parse(MA).unwrap()
    }

    fn row(columns: &[(&str, Value)]) -> Row {
        Row(columns
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect())
    }

    const SHIPPED: &str = include_str!("../../../../config/cdc.toml");

    #[test]
    fn the_shipped_mapping_reads() {
        let mapping = Mapping::parse(SHIPPED).unwrap();
        for table in [
            "subscribers",
            "customers",
            "plans",
            "cells",
            "balance_adjustments",
        ] {
            assert!(mapping.table(Some("public"), table).is_some(), "{table}");
        }
    }

    #[test]
    fn a_subscriber_row_is_checked_as_a_csv_row_is() {
        let mapping = Mapping::parse(
            r#"
            [[table]]
            table = "subscriptions"
            entity = "subscribers"
            columns = { msisdn = "msisdn", customer_id = "customer_id", plan_id = "plan_code", activation_date = "activated_on", payment = { column = "account_type", values = { PREPAID = "prepaid", POSTPAID = "postpaid" } } }
            "#,
        )
        .unwrap();
        let table = mapping.table(Some("public"), "subscriptions").unwrap();
        let good = row(&[
            ("msisdn", Value::Text("0612345678".into())),
            ("customer_id", Value::Int(7)),
            ("plan_code", Value::Text("P1".into())),
            ("account_type", Value::Text("PREPAID".into())),
            ("activated_on", Value::Int(19783)),
        ]);
        assert_eq!(table.id(&good, home()).unwrap(), "+212612345678");
        let ReferenceRow::Subscriber(s) = table.reference_row(&good, 1_000, home()).unwrap() else {
            panic!("a subscriber")
        };
        assert_eq!(
            (
                &*s.customer_id,
                &*s.plan_id,
                s.payment.as_str(),
                s.effective_from
            ),
            ("7", "P1", "prepaid", 1_000)
        );
        assert_eq!(s.activation_date.unwrap().to_string(), "2024-03-01");
        let mut bad = good.clone();
        bad.0[3].1 = Value::Text("CREDIT".into());
        let why = table.reference_row(&bad, 1_000, home()).unwrap_err();
        assert!(
            why.contains("`account_type` (the payment) `CREDIT` is not prepaid or postpaid"),
            "{why}"
        );
    }

    #[test]
    fn money_comes_exact_in_every_decimal_mode() {
        let mapping = Mapping::parse(
            r#"
            [[table]]
            table = "topups"
            entity = "balance_adjustments"
            columns = { adjustment_id = "id", msisdn = "msisdn", amount = { column = "amount", scale = 2 } }
            "#,
        )
        .unwrap();
        let table = mapping.table(None, "topups").unwrap();
        for amount in [
            Value::Decimal(Decimal {
                mantissa: 1050,
                scale: 2,
            }),
            Value::Text("BBo=".into()), // 0x041A = 1050 at scale 2
            Value::Number("10.5".into()),
        ] {
            let topup = row(&[
                ("id", Value::Int(1)),
                ("msisdn", Value::Text("+212612345678".into())),
                ("amount", amount.clone()),
            ]);
            let adjustment = table.adjustment(&topup, home()).unwrap();
            assert_eq!(adjustment.micros, 10_500_000, "{amount:?}");
        }
    }

    #[test]
    fn mistakes_in_the_mapping_name_their_table() {
        for (text, expected) in [
            (
                "[[table]]\ntable = \"t\"\nentity = \"phones\"\ncolumns = {}",
                "table `t`: entity `phones` is not one of",
            ),
            (
                "[[table]]\ntable = \"t\"\nentity = \"cells\"\ncolumns = { cell_id = \"id\", region = \"r\" }",
                "table `t`: cells needs `technology`",
            ),
            (
                "[[table]]\ntable = \"t\"\nentity = \"cells\"\ncolumns = { cell_id = \"id\", region = \"r\", technology = \"t\", colour = \"c\" }",
                "`colour` is not a field of cells",
            ),
        ] {
            let error = Mapping::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
