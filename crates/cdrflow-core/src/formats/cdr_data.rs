//! Seed 000's `cdr_data`: `msisdn, event_datetime, data_type, up_bytes, down_bytes` (and `cdr_id`).

use super::json::{
    common, counter, json_fields, json_format, optional_string, required, service_type, timestamp,
    JsonRecord,
};
use super::DecodeOptions;
use crate::model::{Cdr, IdSpace, Kind, SourcePosition};
use crate::reject::Rejection;

pub struct CdrData;

json_fields!(
    struct CdrDataFields {
        cdr_id, event_datetime, data_type, up_bytes, down_bytes,
    }
);

json_format!(
    CdrData,
    name: "cdr-data",
    alias: "cdr_data",
    fields: CdrDataFields,
    markers: ["event_datetime", "data_type", "up_bytes"],
);

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
