//! Seed 000's `cdr_data`: `msisdn, event_datetime, data_type, up_bytes, down_bytes` (and `cdr_id`).

use super::json::{
    common, counter, json_fields, optional_string, required, service_type, timestamp, JsonRecord,
};
use super::{DecodeOptions, Decoder, JsonFormat};
use crate::model::{Cdr, IdSpace, Kind, SourcePosition};
use crate::reject::Rejection;

pub struct CdrData;

json_fields!(
    struct CdrDataFields {
        cdr_id, event_datetime, data_type, up_bytes, down_bytes,
    }
);

impl Decoder for CdrData {
    fn name(&self) -> &'static str {
        "cdr-data"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["cdr_data"]
    }

    fn decode<'a>(
        &self,
        payload: &'a [u8],
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection> {
        super::json::decode_as(self, payload, position, options)
    }

    fn as_json(&self) -> Option<&dyn JsonFormat> {
        Some(self)
    }
}

impl JsonFormat for CdrData {
    fn fields(&self) -> &'static [&'static str] {
        CdrDataFields::NAMES
    }

    fn markers(&self) -> &'static [&'static str] {
        &["event_datetime", "data_type", "up_bytes"]
    }

    fn from_record<'a>(
        &self,
        record: &JsonRecord<'a>,
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection> {
        decode_fields(
            &CdrDataFields::from_record(record),
            record,
            position,
            options,
        )
    }
}

fn decode_fields<'a>(
    f: &CdrDataFields<'a>,
    record: &JsonRecord<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    Ok(Cdr {
        record_id: optional_string(f.cdr_id, "cdr_id")?,
        id_space: IdSpace::CdrData,
        kind: Kind::Data,
        service_type: service_type(required(f.data_type, "data_type")?, "data_type")?,
        start_time: timestamp(
            required(f.event_datetime, "event_datetime")?,
            "event_datetime",
        )?,
        uplink_bytes: counter(required(f.up_bytes, "up_bytes")?, "up_bytes")?,
        downlink_bytes: counter(required(f.down_bytes, "down_bytes")?, "down_bytes")?,
        duration_sec: 0,
        ..common(record, position, o)?
    })
}
