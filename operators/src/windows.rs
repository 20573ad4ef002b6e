//! Window definitions, in the builder style of Kafka Streams:
//! [`TimeWindows`] (tumbling and hopping), [`SessionWindows`],
//! [`SlidingWindows`] and [`JoinWindows`].
//!
//! Every window type has a *grace period*: how long after a window's end
//! records may still arrive out of order and be counted. A window *closes*
//! when the stream time (the largest record timestamp the operator has seen)
//! reaches its end plus the grace; a record for a closed window is dropped
//! and counted as `late` (`ProcessorContext::record_dropped`). Grace also
//! decides when `suppress(until_window_closes)` emits a window's final
//! result.
//!
//! Time windows are half-open, `[start, end)`; session and sliding windows
//! include both ends, `[start, end]`, as in Kafka Streams.

use std::time::Duration;

pub use kstreams_runtime::Windowed;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Fixed-size windows by record time: tumbling (the default: each record in
/// exactly one window) or hopping ([`TimeWindows::advance_by`] smaller than
/// the size: each record in `size / advance` windows).
///
/// ```
/// use std::time::Duration;
/// use kstreams_operators::TimeWindows;
/// let tumbling = TimeWindows::of_size_with_grace(Duration::from_secs(60), Duration::from_secs(10));
/// assert_eq!(tumbling.windows_for(61_000), vec![(60_000, 120_000)]);
/// let hopping = TimeWindows::of_size_with_grace(Duration::from_secs(60), Duration::ZERO)
///     .advance_by(Duration::from_secs(30));
/// assert_eq!(hopping.windows_for(61_000), vec![(30_000, 90_000), (60_000, 120_000)]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that accept records up to `grace` after
    /// their end. A zero size is turned into 1 ms.
    ///
    /// ```
    /// let w = kstreams_operators::TimeWindows::of_size_with_grace(std::time::Duration::from_secs(60), std::time::Duration::from_secs(10));
    /// assert_eq!((w.size_ms(), w.grace_ms()), (60_000, 10_000));
    /// ```
    pub fn of_size_with_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = ms(size).max(1);
        TimeWindows {
            size_ms,
            advance_ms: size_ms,
            grace_ms: ms(grace),
        }
    }
    /// Tumbling windows of `size` without grace: a window closes at its end.
    ///
    /// ```
    /// let w = kstreams_operators::TimeWindows::of_size_no_grace(std::time::Duration::from_secs(1));
    /// assert_eq!(w.grace_ms(), 0);
    /// ```
    pub fn of_size_no_grace(size: Duration) -> Self {
        Self::of_size_with_grace(size, Duration::ZERO)
    }
    /// Hopping windows: a new window starts every `advance` (clamped to
    /// `1 ms ..= size`).
    ///
    /// ```
    /// let w = kstreams_operators::TimeWindows::of_size_no_grace(std::time::Duration::from_secs(10))
    ///     .advance_by(std::time::Duration::from_secs(5));
    /// assert_eq!(w.advance_ms(), 5_000);
    /// ```
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = ms(advance).clamp(1, self.size_ms);
        self
    }
    /// The window size in milliseconds.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::TimeWindows::of_size_no_grace(std::time::Duration::from_millis(5)).size_ms(), 5);
    /// ```
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }
    /// The advance in milliseconds (the size for tumbling windows).
    ///
    /// ```
    /// assert_eq!(kstreams_operators::TimeWindows::of_size_no_grace(std::time::Duration::from_millis(5)).advance_ms(), 5);
    /// ```
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }
    /// The grace period in milliseconds.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::TimeWindows::of_size_no_grace(std::time::Duration::from_millis(5)).grace_ms(), 0);
    /// ```
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
    /// The windows `[start, end)` containing timestamp `ts`, oldest first.
    /// Window starts are multiples of the advance.
    ///
    /// ```
    /// let w = kstreams_operators::TimeWindows::of_size_no_grace(std::time::Duration::from_millis(10));
    /// assert_eq!(w.windows_for(25), vec![(20, 30)]);
    /// assert_eq!(w.windows_for(-1), vec![(-10, 0)]);
    /// ```
    pub fn windows_for(&self, ts: i64) -> Vec<(i64, i64)> {
        // The first aligned start s with s + size > ts.
        let first =
            (ts - self.size_ms).div_euclid(self.advance_ms) * self.advance_ms + self.advance_ms;
        let mut out = Vec::with_capacity((self.size_ms / self.advance_ms) as usize);
        let mut start = first;
        while start <= ts {
            out.push((start, start.saturating_add(self.size_ms)));
            start += self.advance_ms;
        }
        out
    }
}

/// Session windows: a key's records closer than the inactivity `gap` to
/// each other form one session `[first, last]`; a record that bridges two
/// sessions merges them.
///
/// ```
/// use std::time::Duration;
/// let s = kstreams_operators::SessionWindows::with_inactivity_gap_and_grace(Duration::from_secs(300), Duration::from_secs(30));
/// assert_eq!((s.gap_ms(), s.grace_ms()), (300_000, 30_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SessionWindows {
    /// Sessions that end after `gap` without records, accepting records up
    /// to `grace` after a session's end.
    ///
    /// ```
    /// let s = kstreams_operators::SessionWindows::with_inactivity_gap_and_grace(std::time::Duration::from_millis(10), std::time::Duration::ZERO);
    /// assert_eq!(s.gap_ms(), 10);
    /// ```
    pub fn with_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows {
            gap_ms: ms(gap).max(1),
            grace_ms: ms(grace),
        }
    }
    /// Sessions without grace.
    ///
    /// ```
    /// let s = kstreams_operators::SessionWindows::with_inactivity_gap_no_grace(std::time::Duration::from_millis(10));
    /// assert_eq!(s.grace_ms(), 0);
    /// ```
    pub fn with_inactivity_gap_no_grace(gap: Duration) -> Self {
        Self::with_inactivity_gap_and_grace(gap, Duration::ZERO)
    }
    /// The inactivity gap in milliseconds.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::SessionWindows::with_inactivity_gap_no_grace(std::time::Duration::from_millis(3)).gap_ms(), 3);
    /// ```
    pub fn gap_ms(&self) -> i64 {
        self.gap_ms
    }
    /// The grace period in milliseconds.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::SessionWindows::with_inactivity_gap_no_grace(std::time::Duration::from_millis(3)).grace_ms(), 0);
    /// ```
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// Sliding windows: windows of a fixed time difference `[start, start +
/// difference]` that exist for each distinct set of records falling within
/// that difference of each other (one window ending at each record, one
/// starting just after each record).
///
/// ```
/// use std::time::Duration;
/// let s = kstreams_operators::SlidingWindows::with_time_difference_and_grace(Duration::from_secs(10), Duration::from_secs(1));
/// assert_eq!((s.time_difference_ms(), s.grace_ms()), (10_000, 1_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindows {
    pub(crate) difference_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows of `difference`, with `grace`.
    ///
    /// ```
    /// let s = kstreams_operators::SlidingWindows::with_time_difference_and_grace(std::time::Duration::from_millis(10), std::time::Duration::ZERO);
    /// assert_eq!(s.time_difference_ms(), 10);
    /// ```
    pub fn with_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        SlidingWindows {
            difference_ms: ms(difference).max(1),
            grace_ms: ms(grace),
        }
    }
    /// The maximum time difference between records of one window, in ms.
    ///
    /// ```
    /// let s = kstreams_operators::SlidingWindows::with_time_difference_and_grace(std::time::Duration::from_millis(10), std::time::Duration::ZERO);
    /// assert_eq!(s.time_difference_ms(), 10);
    /// ```
    pub fn time_difference_ms(&self) -> i64 {
        self.difference_ms
    }
    /// The grace period in milliseconds.
    ///
    /// ```
    /// let s = kstreams_operators::SlidingWindows::with_time_difference_and_grace(std::time::Duration::from_millis(10), std::time::Duration::ZERO);
    /// assert_eq!(s.grace_ms(), 0);
    /// ```
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// How close in time two records of a stream-stream join must be: a record
/// at `t` on the left joins right records in `[t - before, t + after]`.
///
/// ```
/// use std::time::Duration;
/// let j = kstreams_operators::JoinWindows::of_time_difference_and_grace(Duration::from_secs(5), Duration::from_secs(1));
/// assert_eq!((j.before_ms(), j.after_ms(), j.grace_ms()), (5_000, 5_000, 1_000));
/// let asym = j.before(Duration::ZERO);
/// assert_eq!((asym.before_ms(), asym.after_ms()), (0, 5_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinWindows {
    pub(crate) before_ms: i64,
    pub(crate) after_ms: i64,
    pub(crate) grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart join; late records are accepted
    /// up to `grace`.
    ///
    /// ```
    /// let j = kstreams_operators::JoinWindows::of_time_difference_and_grace(std::time::Duration::from_millis(10), std::time::Duration::ZERO);
    /// assert_eq!(j.after_ms(), 10);
    /// ```
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        let d = ms(difference);
        JoinWindows {
            before_ms: d,
            after_ms: d,
            grace_ms: ms(grace),
        }
    }
    /// Without grace.
    ///
    /// ```
    /// let j = kstreams_operators::JoinWindows::of_time_difference_no_grace(std::time::Duration::from_millis(10));
    /// assert_eq!(j.grace_ms(), 0);
    /// ```
    pub fn of_time_difference_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }
    /// How far before a left record right records may be.
    ///
    /// ```
    /// let j = kstreams_operators::JoinWindows::of_time_difference_no_grace(std::time::Duration::from_millis(10)).before(std::time::Duration::from_millis(2));
    /// assert_eq!(j.before_ms(), 2);
    /// ```
    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = ms(before);
        self
    }
    /// How far after a left record right records may be.
    ///
    /// ```
    /// let j = kstreams_operators::JoinWindows::of_time_difference_no_grace(std::time::Duration::from_millis(10)).after(std::time::Duration::from_millis(3));
    /// assert_eq!(j.after_ms(), 3);
    /// ```
    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = ms(after);
        self
    }
    /// Milliseconds before.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::JoinWindows::of_time_difference_no_grace(std::time::Duration::from_millis(1)).before_ms(), 1);
    /// ```
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }
    /// Milliseconds after.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::JoinWindows::of_time_difference_no_grace(std::time::Duration::from_millis(1)).after_ms(), 1);
    /// ```
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }
    /// The grace period in milliseconds.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::JoinWindows::of_time_difference_no_grace(std::time::Duration::from_millis(1)).grace_ms(), 0);
    /// ```
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_cover_each_timestamp_size_over_advance_times() {
        let w = TimeWindows::of_size_no_grace(Duration::from_millis(10))
            .advance_by(Duration::from_millis(3));
        assert_eq!(w.windows_for(10), vec![(3, 13), (6, 16), (9, 19)]);
        assert_eq!(w.windows_for(0), vec![(-9, 1), (-6, 4), (-3, 7), (0, 10)]);
        for ts in -50..50 {
            for (s, e) in w.windows_for(ts) {
                assert!(
                    s <= ts && ts < e && s.rem_euclid(3) == 0,
                    "{ts} in [{s},{e})"
                );
            }
        }
    }
}
