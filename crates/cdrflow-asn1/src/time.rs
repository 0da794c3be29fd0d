//! 32.298's `TimeStamp`: `YYMMDDhhmmssShhmm` as nine BCD octets — the
//! local time where the record was made and its offset from UTC (`S` is
//! ASCII `+` or `-`). Some switches write the first six only; those say no
//! offset, and the source's configured zone gives it.

use crate::Asn1Error;

/// UTC milliseconds since the Unix epoch (the core's `EpochMillis`).
pub type EpochMillis = i64;

/// Milliseconds from 1970-01-01T00:00 to the given wall-clock reading
/// counted as UTC; `None` for no such date or time.
pub(crate) fn civil_millis(
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<EpochMillis> {
    let narrow = |v: u32| i8::try_from(v).ok();
    let reading = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        narrow(month)?,
        narrow(day)?,
        narrow(hour)?,
        narrow(minute)?,
        narrow(second)?,
        0,
    )
    .ok()?;
    Some(
        jiff::tz::TimeZone::UTC
            .to_timestamp(reading)
            .ok()?
            .as_millisecond(),
    )
}

/// The UTC calendar year of an instant.
pub(crate) fn year_of(at: EpochMillis) -> Option<i32> {
    let instant = jiff::Timestamp::from_millisecond(at).ok()?;
    Some(i32::from(instant.to_zoned(jiff::tz::TimeZone::UTC).year()))
}

/// A wall-clock reading and, where the record says, its offset from UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    /// The local reading counted as if it were UTC (milliseconds since
    /// 1970-01-01T00:00 of that wall clock).
    pub local_millis: EpochMillis,
    /// East of UTC is positive.
    pub offset_minutes: Option<i32>,
}

impl Timestamp {
    /// The instant, when the record gave the offset.
    pub fn utc_millis(&self) -> Option<EpochMillis> {
        self.offset_minutes
            .map(|offset| self.local_millis - i64::from(offset) * 60_000)
    }
}

fn bcd(octet: u8) -> Result<u32, Asn1Error> {
    let (high, low) = (octet >> 4, octet & 0x0F);
    if high > 9 || low > 9 {
        return Err(Asn1Error::BadTimestamp("a digit that is not decimal"));
    }
    Ok(u32::from(high) * 10 + u32::from(low))
}

/// Reads a 9-octet (or 6-octet, offset-less) timestamp. A two-digit year
/// is 20YY: no charging record is from the last century.
pub fn timestamp(value: &[u8]) -> Result<Timestamp, Asn1Error> {
    let (clock, offset) = match value.len() {
        9 => (&value[..6], Some(&value[6..])),
        6 => (value, None),
        _ => return Err(Asn1Error::BadTimestamp("neither 9 nor 6 octets")),
    };
    let field = |i: usize| bcd(clock[i]);
    let (year, month, day) = (2000 + field(0)? as i32, field(1)?, field(2)?);
    let (hour, minute, second) = (field(3)?, field(4)?, field(5)?);
    if hour > 23 || minute > 59 || second > 59 {
        return Err(Asn1Error::BadTimestamp("no such time of day"));
    }
    let local_millis = civil_millis(year, month, day, hour, minute, second)
        .ok_or(Asn1Error::BadTimestamp("no such date"))?;
    let offset_minutes = match offset {
        None => None,
        Some(&[sign, hours, minutes]) => {
            let (hours, minutes) = (bcd(hours)?, bcd(minutes)?);
            if hours > 14 || minutes > 59 {
                return Err(Asn1Error::BadTimestamp("an offset past 14 hours"));
            }
            let magnitude = (hours * 60 + minutes) as i32;
            Some(match sign {
                b'+' => magnitude,
                b'-' => -magnitude,
                _ => return Err(Asn1Error::BadTimestamp("an offset sign other than + or -")),
            })
        }
        Some(_) => unreachable!("nine octets leave three for the offset"),
    };
    Ok(Timestamp {
        local_millis,
        offset_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdrflow_core::normalize::parse_timestamp;

    #[test]
    fn local_time_and_offset_give_the_instant() {
        // 2024-01-31 15:30:45 +01:00, as the research brief's example.
        let t = timestamp(&[0x24, 0x01, 0x31, 0x15, 0x30, 0x45, b'+', 0x01, 0x00]).unwrap();
        assert_eq!(t.offset_minutes, Some(60));
        assert_eq!(
            t.utc_millis(),
            Some(parse_timestamp("2024-01-31T14:30:45Z").unwrap())
        );
        // Newfoundland-style negative half hours.
        let t = timestamp(&[0x24, 0x03, 0x01, 0x00, 0x10, 0x00, b'-', 0x03, 0x30]).unwrap();
        assert_eq!(
            t.utc_millis(),
            Some(parse_timestamp("2024-03-01T03:40:00Z").unwrap())
        );
        // Six octets: no offset, the wall clock kept.
        let t = timestamp(&[0x24, 0x02, 0x29, 0x23, 0x59, 0x59]).unwrap();
        assert_eq!(t.utc_millis(), None);
        assert_eq!(
            t.local_millis,
            parse_timestamp("2024-02-29T23:59:59Z").unwrap()
        );
    }

    #[test]
    fn impossible_readings_are_refused() {
        for bad in [
            &[0x23, 0x02, 0x29, 0, 0, 0][..],
            &[0x24, 0x13, 0x01, 0, 0, 0],
            &[0x24, 0x01, 0x01, 0x24, 0, 0],
            &[0x24, 0x01, 0x01, 0, 0x0A, 0],
            &[0x24, 0x01, 0x01, 0, 0, 0, b'*', 0, 0],
            &[0x24, 0x01, 0x01, 0, 0, 0, b'+', 0x15, 0],
            &[0x24, 0x01, 0x01, 0, 0],
        ] {
            assert!(timestamp(bad).is_err(), "{bad:02x?}");
        }
    }
}
