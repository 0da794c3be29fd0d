//! Seed 000's `cdr_voice`: `msisdn, start_time, call_type, call_duration_sec` (and `cdr_id`).

use super::json::{
    common, counter, json_fields, optional_string, required, service_type, timestamp, JsonRecord,
};
use super::{DecodeOptions, Decoder, JsonFormat};
use crate::model::{Cdr, Direction, IdSpace, Kind, SourcePosition};
use crate::reject::Rejection;

pub struct CdrVoice;

json_fields!(
    struct CdrVoiceFields {
        cdr_id, start_time, call_type, call_duration_sec,
    }
);

impl Decoder for CdrVoice {
    fn name(&self) -> &'static str {
        "cdr-voice"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["cdr_voice"]
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

impl JsonFormat for CdrVoice {
    fn fields(&self) -> &'static [&'static str] {
        CdrVoiceFields::NAMES
    }

    fn markers(&self) -> &'static [&'static str] {
        &["start_time", "call_type", "call_duration_sec"]
    }

    fn from_record<'a>(
        &self,
        record: &JsonRecord<'a>,
        position: SourcePosition,
        options: &DecodeOptions,
    ) -> Result<Cdr<'a>, Rejection> {
        decode_fields(
            &CdrVoiceFields::from_record(record),
            record,
            position,
            options,
        )
    }
}

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
