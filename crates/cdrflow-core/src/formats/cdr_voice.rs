//! Seed 000's `cdr_voice`: `msisdn, start_time, call_type, call_duration_sec` (and `cdr_id`).

use super::json::{
    common, counter, json_fields, json_format, optional_string, required, service_type, timestamp,
    JsonRecord,
};
use super::DecodeOptions;
use crate::model::{Cdr, Direction, IdSpace, Kind, SourcePosition};
use crate::reject::Rejection;

pub struct CdrVoice;

json_fields!(
    struct CdrVoiceFields {
        cdr_id, start_time, call_type, call_duration_sec,
    }
);

json_format!(
    CdrVoice,
    name: "cdr-voice",
    alias: "cdr_voice",
    fields: CdrVoiceFields,
    markers: ["start_time", "call_type", "call_duration_sec"],
);

fn decode_fields<'a>(
    f: &CdrVoiceFields<'a>,
    record: &JsonRecord<'a>,
    position: SourcePosition,
    o: &DecodeOptions,
) -> Result<Cdr<'a>, Rejection> {
    Ok(Cdr {
        record_id: optional_string(f.cdr_id, "cdr_id")?,
        id_space: IdSpace::CdrVoice,
        kind: Kind::Voice,
        service_type: service_type(required(f.call_type, "call_type")?, "call_type")?,
        start_time: timestamp(required(f.start_time, "start_time")?, "start_time")?,
        duration_sec: counter(
            required(f.call_duration_sec, "call_duration_sec")?,
            "call_duration_sec",
        )?,
        direction: Direction::Outgoing,
        ..common(record, position, o)?
    })
}
