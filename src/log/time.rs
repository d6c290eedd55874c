//! Wall-clock times as the logs write them: the local time (the TZ the
//! process runs with) and its offset from UTC, in Apache's, ISO 8601's and
//! ctime's layouts. Each log caches its text once a second, so the C
//! library's `localtime_r` runs at most once a second per log.

/// A moment split into the local calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 is Sunday.
    pub weekday: u32,
    /// Seconds east of UTC.
    pub offset: i64,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl LocalTime {
    /// `unix` seconds in the process's local time zone (UTC when the C
    /// library cannot tell).
    pub(crate) fn local(unix: u64) -> Self {
        let offset = local_offset(unix);
        Self::with_offset(unix, offset)
    }

    /// `unix` seconds at `offset` seconds east of UTC (pure: what the tests use).
    pub(crate) fn with_offset(unix: u64, offset: i64) -> Self {
        let shifted = unix as i64 + offset;
        let days = shifted.div_euclid(86_400);
        let seconds = shifted.rem_euclid(86_400);
        let (year, month, day) = civil_date(days);
        Self {
            year,
            month,
            day,
            hour: (seconds / 3600) as u32,
            minute: (seconds % 3600 / 60) as u32,
            second: (seconds % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
            offset,
        }
    }

    fn month_name(&self) -> &'static str {
        MONTHS[(self.month.clamp(1, 12) - 1) as usize]
    }

    fn offset_parts(&self) -> (char, i64, i64) {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let minutes = self.offset.abs() / 60;
        (sign, minutes / 60, minutes % 60)
    }

    /// Apache's `01/Dec/2026:14:05:00 +0100`.
    pub(crate) fn apache(&self) -> String {
        let (sign, hours, minutes) = self.offset_parts();
        format!(
            "{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{hours:02}{minutes:02}",
            self.day,
            self.month_name(),
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// Django's runserver: `01/Dec/2026 14:05:00`.
    pub(crate) fn runserver(&self) -> String {
        format!(
            "{:02}/{}/{} {:02}:{:02}:{:02}",
            self.day,
            self.month_name(),
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// ISO 8601 with the offset: `2026-12-01T14:05:00+01:00`, with
    /// `.mmm` after the seconds when `millis` is given.
    pub(crate) fn iso(&self, millis: Option<u32>) -> String {
        let (sign, hours, minutes) = self.offset_parts();
        let fraction = millis.map_or_else(String::new, |millis| format!(".{millis:03}"));
        format!(
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{sign}{hours:02}:{minutes:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// ctime's `Tue Dec  1 14:05:00 2026` (uWSGI's default request line).
    pub(crate) fn ctime(&self) -> String {
        format!(
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            WEEKDAYS[self.weekday as usize % 7],
            self.month_name(),
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.year
        )
    }
}

/// The local zone's offset from UTC at `unix`, in seconds east.
fn local_offset(unix: u64) -> i64 {
    let Ok(time) = libc::time_t::try_from(unix) else {
        return 0;
    };
    // SAFETY: localtime_r only writes the `tm` we own; both pointers are valid.
    unsafe {
        let mut tm = std::mem::zeroed::<libc::tm>();
        if libc::localtime_r(&raw const time, &raw mut tm).is_null() {
            return 0;
        }
        #[allow(
            clippy::useless_conversion,
            reason = "tm_gmtoff is a C long: i64 on 64-bit Linux, not everywhere"
        )]
        i64::from(tm.tm_gmtoff)
    }
}

/// The (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's days-to-civil algorithm).
pub(crate) fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{civil_date, LocalTime};

    #[test]
    fn every_layout_at_two_offsets() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        // 2026-12-01 14:05:00 UTC, a Tuesday.
        let at = 1_796_133_900;
        let utc = LocalTime::with_offset(at, 0);
        assert_eq!(utc.apache(), "01/Dec/2026:14:05:00 +0000");
        assert_eq!(utc.runserver(), "01/Dec/2026 14:05:00");
        assert_eq!(utc.iso(None), "2026-12-01T14:05:00+00:00");
        assert_eq!(utc.iso(Some(7)), "2026-12-01T14:05:00.007+00:00");
        assert_eq!(utc.ctime(), "Tue Dec  1 14:05:00 2026");
        let west = LocalTime::with_offset(at, -(5 * 3600 + 30 * 60));
        assert_eq!(west.apache(), "01/Dec/2026:08:35:00 -0530");
        assert_eq!(west.iso(None), "2026-12-01T08:35:00-05:30");
        let east = LocalTime::with_offset(at, 11 * 3600);
        assert_eq!(east.apache(), "02/Dec/2026:01:05:00 +1100");
        assert_eq!(east.weekday, 3);
    }
}
