//! Server-side WebSocket keep-alive (sans-IO): a `Ping("heartbeat")` every interval and a
//! close decision after too many unanswered pings (`protocol.md` §5.2).

/// The ping payload Kalshi sends.
pub const HEARTBEAT_PAYLOAD: &[u8] = b"heartbeat";

/// What the server should do now for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Nothing is due.
    Idle,
    /// Send `Ping(HEARTBEAT_PAYLOAD)`.
    SendPing,
    /// Too many pings went unanswered: close the connection.
    Close,
}

/// Keep-alive state of one connection.
///
/// Call [`Heartbeat::poll`] whenever the connection's timer fires (or on every loop turn) and
/// [`Heartbeat::on_pong`] for every Pong received. A ping counts as missed when the next one
/// falls due and no pong arrived in between; after `max_missed` consecutive misses `poll`
/// answers [`HeartbeatAction::Close`] (and keeps answering it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    interval_us: i64,
    max_missed: u32,
    next_ping_us: i64,
    outstanding: bool,
    missed: u32,
    pings_sent: u64,
    pongs_received: u64,
}

impl Heartbeat {
    /// Kalshi's cadence: every 10 s.
    pub const KALSHI_INTERVAL_US: i64 = 10_000_000;

    /// A connection opened at `now_us`; the first ping is due one interval later. An interval
    /// below 1 µs is treated as 1 µs; `max_missed` 0 means "never close".
    #[must_use]
    pub fn new(now_us: i64, interval_us: i64, max_missed: u32) -> Self {
        let interval_us = interval_us.max(1);
        Self {
            interval_us,
            max_missed,
            next_ping_us: now_us.saturating_add(interval_us),
            outstanding: false,
            missed: 0,
            pings_sent: 0,
            pongs_received: 0,
        }
    }

    /// When the next ping is due (for arming a timer).
    #[must_use]
    pub const fn next_due_us(&self) -> i64 {
        self.next_ping_us
    }

    /// Consecutive unanswered pings so far.
    #[must_use]
    pub const fn missed(&self) -> u32 {
        self.missed
    }

    /// Pings sent and pongs received, for metrics.
    #[must_use]
    pub const fn counts(&self) -> (u64, u64) {
        (self.pings_sent, self.pongs_received)
    }

    /// Decides what to do at `now_us`.
    pub fn poll(&mut self, now_us: i64) -> HeartbeatAction {
        if self.max_missed > 0 && self.missed >= self.max_missed {
            return HeartbeatAction::Close;
        }
        if now_us < self.next_ping_us {
            return HeartbeatAction::Idle;
        }
        if self.outstanding {
            self.missed += 1;
            if self.max_missed > 0 && self.missed >= self.max_missed {
                return HeartbeatAction::Close;
            }
        }
        self.outstanding = true;
        self.pings_sent += 1;
        // Skip whole intervals if the server slept through several.
        let behind = (now_us - self.next_ping_us) / self.interval_us + 1;
        self.next_ping_us = self
            .next_ping_us
            .saturating_add(behind.saturating_mul(self.interval_us));
        HeartbeatAction::SendPing
    }

    /// A Pong arrived (any payload): the outstanding ping is answered and the miss count resets.
    pub fn on_pong(&mut self) {
        self.outstanding = false;
        self.missed = 0;
        self.pongs_received += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ping every interval; answered pings keep the connection; `max_missed` unanswered ones
    // close it, and Close is sticky.
    #[test]
    fn pings_and_close() {
        let mut hb = Heartbeat::new(0, 10, 2);
        assert_eq!(hb.poll(9), HeartbeatAction::Idle);
        assert_eq!(hb.poll(10), HeartbeatAction::SendPing);
        assert_eq!(hb.poll(15), HeartbeatAction::Idle);
        hb.on_pong();
        assert_eq!(hb.poll(20), HeartbeatAction::SendPing);
        assert_eq!(hb.missed(), 0);
        assert_eq!(hb.poll(30), HeartbeatAction::SendPing);
        assert_eq!(hb.missed(), 1);
        assert_eq!(hb.poll(40), HeartbeatAction::Close);
        assert_eq!(hb.poll(41), HeartbeatAction::Close);
        hb.on_pong();
        assert_eq!(hb.counts(), (3, 2));
        // Sleeping through several intervals sends one ping and re-arms on the grid.
        let mut late = Heartbeat::new(0, 10, 0);
        assert_eq!(late.poll(55), HeartbeatAction::SendPing);
        assert_eq!(late.next_due_us(), 60);
        for t in [60, 70, 80, 90] {
            assert_eq!(late.poll(t), HeartbeatAction::SendPing);
        }
        assert_eq!(late.missed(), 4);
    }
}
