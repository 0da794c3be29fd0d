//! Time bands: which band a record falls in, decided by its start in the
//! version's zone (a call that starts at 19:59 in peak is peak throughout).

use cdrflow_core::normalize::EpochMillis;

use crate::model::Version;

#[derive(Debug)]
pub(crate) struct Band {
    pub id: &'static str,
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight: `from..to`, `to` up to 1440.
    pub from_minute: u16,
    pub to_minute: u16,
    /// On the version's holidays, whatever the weekday and time.
    pub holiday: bool,
}

pub(crate) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Band {
    fn covers(&self, weekday: usize, minute: u16) -> bool {
        !self.holiday && self.days[weekday] && (self.from_minute..self.to_minute).contains(&minute)
    }
}

impl Version {
    /// The band of a record starting at `start`: on a holiday the holiday
    /// band (when the version has one), else the first band in file order
    /// covering the local weekday and time.
    pub(crate) fn band_at(&self, start: EpochMillis) -> Result<&Band, String> {
        let local = jiff::Timestamp::from_millisecond(start)
            .map_err(|e| format!("start time {start} ms: {e}"))?
            .to_zoned(self.zone.clone());
        if self.holidays.contains(&local.date()) {
            if let Some(band) = self.bands.iter().find(|b| b.holiday) {
                return Ok(band);
            }
        }
        let weekday = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.bands
            .iter()
            .find(|b| b.covers(weekday, minute))
            .ok_or_else(|| format!("no band covers {local}"))
    }

    /// A band for every minute of the week, or the first minute none covers.
    pub(crate) fn uncovered_minute(&self) -> Option<(usize, u16)> {
        (0..7).find_map(|day| {
            (0..1440)
                .find(|&m| !self.bands.iter().any(|b| b.covers(day, m)))
                .map(|m| (day, m))
        })
    }
}
