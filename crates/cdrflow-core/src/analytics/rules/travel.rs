//! `impossible_travel`: one MSISDN in two regions closer in time than the
//! journey between them takes (a cloned SIM, or a record forged elsewhere).
//! Each on-time record with a region is compared with the same MSISDN's
//! latest record (by event time) seen before it within the longest journey
//! of the table; fired at most once per MSISDN in one such span.

use std::sync::Arc;

use super::tally::{Buckets, Names, Tally, TallyState};
use super::{Finding, Identity, Placed, StatefulRule, TravelConfig};
use crate::analytics::windows::UNKNOWN_REGION;
use crate::normalize::{format_timestamp, EpochMillis};
use crate::operator::{ReadError, StateKind, StateReader, StateTable};

/// Per-span latest region per MSISDN (spans as long as the longest journey).
pub const LAST_SEEN: StateTable = StateTable {
    name: "travel_last_seen",
    kind: StateKind::Spans,
};

/// Where an MSISDN was last seen within one span, and whether it fired there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    time: EpochMillis,
    region: Option<Arc<str>>,
    fired: bool,
}

impl Seen {
    /// Whether a sighting at `time` in `region` would win over this one.
    fn is_before(&self, time: EpochMillis, region: &str) -> bool {
        match &self.region {
            None => true,
            Some(mine) => (time, region) > (self.time, &**mine),
        }
    }
}

impl Tally for Seen {
    /// The later sighting wins (by time, then region name: any order of
    /// merging gives the same).
    fn merge(&mut self, other: &Self) {
        if let Some(region) = &other.region {
            if self.is_before(other.time, region) {
                self.time = other.time;
                self.region = Some(region.clone());
            }
        }
        self.fired |= other.fired;
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time.to_le_bytes());
        out.push(u8::from(self.fired));
        let region = self.region.as_deref().unwrap_or("");
        out.extend_from_slice(&(region.len() as u32).to_le_bytes());
        out.extend_from_slice(region.as_bytes());
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        let (time, rest) = bytes.split_first_chunk::<8>()?;
        let (&fired, rest) = rest.split_first()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let region = std::str::from_utf8(&rest[..len]).ok()?;
        *bytes = &rest[len..];
        Some(Seen {
            time: i64::from_le_bytes(*time),
            region: (!region.is_empty()).then(|| Arc::from(region)),
            fired: fired != 0,
        })
    }
}

pub struct ImpossibleTravel {
    config: Arc<TravelConfig>,
    seen: Buckets<Seen>,
    regions: Names,
}

impl ImpossibleTravel {
    pub fn new(config: Arc<TravelConfig>) -> ImpossibleTravel {
        // Minutes, so that a span is found again by its first minute.
        let span = (config.horizon_ms() + 59_999) / 60_000 * 60_000;
        ImpossibleTravel {
            config,
            seen: Buckets::new(LAST_SEEN, span, 1),
            regions: Names::default(),
        }
    }
}

impl StatefulRule for ImpossibleTravel {
    fn tallies(&mut self) -> &mut dyn TallyState {
        &mut self.seen
    }

    fn observe(
        &mut self,
        placed: &Placed<'_>,
        state: &mut dyn StateReader,
        found: &mut Vec<Finding>,
    ) -> Result<(), ReadError> {
        let r = placed.record;
        let Some(region) = r.region.as_deref().filter(|r| *r != UNKNOWN_REGION) else {
            return Ok(());
        };
        let (time, key) = (r.start_time, r.msisdn.to_bits());
        self.seen.saw(time);
        let span = self.seen.bucket_of(time);
        // Every sighting within the longest journey before this one is in
        // this span or the one before.
        let before = self
            .seen
            .get(span - self.seen.bucket_ms(), key, state)?
            .and_then(|seen| Some((seen.time, seen.region.clone()?)));
        let entry = self.seen.entry(span, key, state)?;
        let here = entry.total();
        let fired_in_span = here.fired;
        let changes = here.is_before(time, region);
        let in_span = here.region.clone().map(|r| (here.time, r));
        let latest = before
            .into_iter()
            .chain(in_span)
            .max_by_key(|(then, _)| *then);
        let mut fires = false;
        if let Some((then, previous)) = latest.filter(|(_, p)| &**p != region) {
            let apart = (time - then).abs();
            let least = self.config.least_ms(&previous, region);
            if apart < least && !fired_in_span {
                fires = true;
                found.push(Finding {
                    rule: "impossible_travel",
                    severity: self.config.severity,
                    msisdn: None,
                    identity: Identity::Span {
                        start: span,
                        of: r.msisdn.to_string(),
                    },
                    evidence: format!(
                        "in {region} at {}, {}m{:02}s from {previous} at {}; the journey takes at least {} min",
                        format_timestamp(time),
                        apart / 60_000,
                        apart % 60_000 / 1000,
                        format_timestamp(then),
                        least / 60_000
                    ),
                });
            }
        }
        if changes || fires {
            entry.add(&Seen {
                time,
                region: Some(self.regions.intern(region)),
                fired: fires,
            });
        }
        Ok(())
    }
}
