//! When to merge what (sans-IO): gatherer liveness, range closing, catch-up.
//!
//! Time is passed in (`now_us`, µs since the Unix epoch); nothing here reads a clock or does
//! I/O. The caller probes each gatherer (its durable watermark, see [`Planner::handle_probe`]),
//! calls [`Planner::handle_tick`] to re-evaluate liveness, then asks [`Planner::poll_merge`]
//! and [`Planner::poll_catchup`] for work and reports each committed job with
//! [`Planner::handle_done`].
//!
//! # State
//!
//! * The **frontier** `F`: every range below it has been merged at least once.
//! * Per gatherer a **cursor** `C_g <= F`: the ranges below it have been read from that
//!   gatherer. A gatherer with `C_g == F` is *in sync* and takes part in normal merges; one with
//!   `C_g < F` is *catching up* and is read range by range until it reaches `F`.
//! * Per gatherer the **watermark** `W_g`: every row the gatherer received before `W_g` is
//!   committed in its database (derived by the caller from the gatherer's writer commit
//!   markers). It only ever moves forward here.
//!
//! # Liveness
//!
//! * **Live**: reachable, with a known watermark no more than `down_after` behind the most
//!   advanced gatherer's.
//! * **Waiting**: unreachable for less than `down_after` after having been live: ranges do not
//!   close while a gatherer waits (it may have rows nobody else has).
//! * **Down**: unreachable for `down_after` or more, or reachable but its watermark is stuck
//!   more than `down_after` behind (a dead or wedged gatherer process), or no watermark yet.
//!   Ranges close without it.
//!
//! A gatherer that comes back (Down to Live) has its cursor moved back by `late_window`, so the
//! last ranges read from it before it went away are checked again for rows that arrived late
//! (fingerprints make that cheap when nothing changed).
//!
//! # Closing
//!
//! A range `[a, b)` closes when nobody is Waiting, at least one Live gatherer is in sync, and
//! `b <= min(W_g over Live g) - grace` and `b <= now - grace`.

/// Planner settings, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanConfig {
    /// Range width.
    pub width_us: i64,
    /// Margin past a range's end that every live watermark must reach before it closes.
    pub grace_us: i64,
    /// Unreachable (or stuck) this long means down.
    pub down_after_us: i64,
    /// How far a returning gatherer is re-checked before its cursor.
    pub late_window_us: i64,
}

/// A gatherer's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GathererStatus {
    /// Reachable and keeping up.
    Live,
    /// Briefly unreachable: ranges wait for it.
    Waiting,
    /// Gone: ranges close without it.
    Down,
}

impl GathererStatus {
    /// Lower-case name (health JSON, logs).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            GathererStatus::Live => "live",
            GathererStatus::Waiting => "waiting",
            GathererStatus::Down => "down",
        }
    }
}

/// One gatherer as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GathererState {
    /// Configured name.
    pub name: String,
    /// Next range start to read from it.
    pub cursor: i64,
    /// Durable watermark, when known.
    pub watermark: Option<i64>,
    /// Whether the last probe succeeded.
    pub reachable: bool,
    /// Since when it has been unreachable.
    pub unreachable_since: Option<i64>,
    /// Liveness at the last [`Planner::handle_tick`].
    pub status: GathererStatus,
}

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Merge new ranges `[F, end)` from the in-sync gatherers and advance `F`.
    Merge,
    /// Read ranges below `F` from one catching-up gatherer and add what production lacks.
    Catchup,
    /// Read ranges below its cursor from one live gatherer again, because rows arrived in them
    /// after they were read ([`crate::late`]), and add what production lacks. Moves no cursor.
    Late,
}

/// A unit of work: consecutive ranges, committed in one production transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Merge or catch-up.
    pub kind: JobKind,
    /// First range start.
    pub start: i64,
    /// Number of ranges.
    pub ranges: usize,
    /// Range width.
    pub width: i64,
    /// Gatherers to read (indexes).
    pub sources: Vec<usize>,
}

impl Job {
    /// End of the last range (exclusive).
    #[must_use]
    pub fn end(&self) -> i64 {
        self.start + self.ranges as i64 * self.width
    }
}

/// A liveness change, for logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Gatherer index.
    pub gatherer: usize,
    /// Before.
    pub from: GathererStatus,
    /// After.
    pub to: GathererStatus,
    /// When it came back: the cursor it will be re-read from.
    pub rewound_to: Option<i64>,
}

/// The planner. See the module documentation.
#[derive(Clone, Debug)]
pub struct Planner {
    cfg: PlanConfig,
    frontier: i64,
    gatherers: Vec<GathererState>,
}

impl Planner {
    /// A planner at `frontier` (aligned down to the range grid), with each gatherer's cursor
    /// (`None`: a gatherer new to production's state starts at the frontier). Gatherers start
    /// as Live until their first probe says otherwise.
    #[must_use]
    pub fn new(cfg: PlanConfig, frontier: i64, gatherers: Vec<(String, Option<i64>)>) -> Self {
        let width = cfg.width_us.max(1);
        let frontier = frontier.div_euclid(width) * width;
        let gatherers = gatherers
            .into_iter()
            .map(|(name, cursor)| GathererState {
                name,
                cursor: cursor.map_or(frontier, |c| (c.div_euclid(width) * width).min(frontier)),
                watermark: None,
                reachable: true,
                unreachable_since: None,
                status: GathererStatus::Live,
            })
            .collect();
        Self {
            cfg: PlanConfig {
                width_us: width,
                ..cfg
            },
            frontier,
            gatherers,
        }
    }

    /// The frontier: ranges below it are merged.
    #[must_use]
    pub fn frontier(&self) -> i64 {
        self.frontier
    }

    /// The gatherers.
    #[must_use]
    pub fn gatherers(&self) -> &[GathererState] {
        &self.gatherers
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &PlanConfig {
        &self.cfg
    }

    /// Record a probe of gatherer `g` at `now_us`: `Some(watermark)` when it answered (the
    /// inner `None` when it has no commit marker at the moment, which keeps the last known
    /// watermark), `None` when it could not be reached. Call [`Planner::handle_tick`] after.
    pub fn handle_probe(&mut self, g: usize, now_us: i64, result: Option<Option<i64>>) {
        let Some(st) = self.gatherers.get_mut(g) else {
            return;
        };
        match result {
            Some(watermark) => {
                st.reachable = true;
                st.unreachable_since = None;
                if let Some(w) = watermark {
                    st.watermark = Some(st.watermark.map_or(w, |old| old.max(w)));
                }
            }
            None => {
                if st.reachable || st.unreachable_since.is_none() {
                    st.unreachable_since = Some(now_us);
                }
                st.reachable = false;
            }
        }
    }

    /// Re-evaluate liveness at `now_us`. Returns the changes; a gatherer coming back has its
    /// cursor moved back by `late_window` (see the module documentation).
    pub fn handle_tick(&mut self, now_us: i64) -> Vec<Transition> {
        let leader = self
            .gatherers
            .iter()
            .filter(|g| g.reachable)
            .filter_map(|g| g.watermark)
            .max();
        let mut out = Vec::new();
        let width = self.cfg.width_us;
        for (i, g) in self.gatherers.iter_mut().enumerate() {
            let status = if !g.reachable {
                let since = g.unreachable_since.unwrap_or(now_us);
                if g.status != GathererStatus::Down && now_us - since < self.cfg.down_after_us {
                    GathererStatus::Waiting
                } else {
                    GathererStatus::Down
                }
            } else {
                match (g.watermark, leader) {
                    (Some(w), Some(lead)) if lead - w <= self.cfg.down_after_us => {
                        GathererStatus::Live
                    }
                    _ => GathererStatus::Down,
                }
            };
            if status != g.status {
                let mut rewound_to = None;
                if g.status == GathererStatus::Down && status == GathererStatus::Live {
                    let back = (g.cursor - self.cfg.late_window_us).div_euclid(width) * width;
                    g.cursor = back.min(self.frontier);
                    rewound_to = Some(g.cursor);
                }
                out.push(Transition {
                    gatherer: i,
                    from: g.status,
                    to: status,
                    rewound_to,
                });
                g.status = status;
            }
        }
        out
    }

    /// The next merge of new ranges, at most `ranges_max` of them, or `None` when no range is
    /// closed yet (or a gatherer is Waiting, or none is live and in sync).
    #[must_use]
    pub fn poll_merge(&self, now_us: i64, ranges_max: usize) -> Option<Job> {
        if self
            .gatherers
            .iter()
            .any(|g| g.status == GathererStatus::Waiting)
        {
            return None;
        }
        let live: Vec<usize> = (0..self.gatherers.len())
            .filter(|&i| self.gatherers[i].status == GathererStatus::Live)
            .collect();
        let sources: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.gatherers[i].cursor >= self.frontier)
            .collect();
        if sources.is_empty() {
            return None;
        }
        let min_w = live
            .iter()
            .filter_map(|&i| self.gatherers[i].watermark)
            .min()?;
        let closable = (min_w - self.cfg.grace_us).min(now_us - self.cfg.grace_us);
        let width = self.cfg.width_us;
        let end = closable.div_euclid(width) * width;
        if end <= self.frontier {
            return None;
        }
        let ranges = (((end - self.frontier) / width) as usize).clamp(1, ranges_max.max(1));
        Some(Job {
            kind: JobKind::Merge,
            start: self.frontier,
            ranges,
            width,
            sources,
        })
    }

    /// The next catch-up: the live gatherer furthest behind, at most `ranges_max` ranges.
    #[must_use]
    pub fn poll_catchup(&self, ranges_max: usize) -> Option<Job> {
        let width = self.cfg.width_us;
        let (i, g) = self
            .gatherers
            .iter()
            .enumerate()
            .filter(|(_, g)| g.status == GathererStatus::Live && g.cursor < self.frontier)
            .min_by_key(|(_, g)| g.cursor)?;
        let w = g.watermark?;
        let limit = ((w - self.cfg.grace_us).div_euclid(width) * width).min(self.frontier);
        if limit <= g.cursor {
            return None;
        }
        let ranges = (((limit - g.cursor) / width) as usize).clamp(1, ranges_max.max(1));
        Some(Job {
            kind: JobKind::Catchup,
            start: g.cursor,
            ranges,
            width,
            sources: vec![i],
        })
    }

    /// A job committed: move the frontier and the sources' cursors.
    pub fn handle_done(&mut self, job: &Job) {
        if job.kind == JobKind::Late {
            return;
        }
        let end = job.end();
        if job.kind == JobKind::Merge && job.start == self.frontier {
            self.frontier = end;
        }
        for &s in &job.sources {
            if let Some(g) = self.gatherers.get_mut(s)
                && g.cursor == job.start
            {
                g.cursor = end.min(self.frontier);
            }
        }
    }

    /// Move gatherer `g`'s cursor back to `start` (aligned; never past the frontier), so its
    /// ranges from there are checked again (the admin re-check).
    pub fn rewind(&mut self, g: usize, start: i64) {
        let width = self.cfg.width_us;
        let frontier = self.frontier;
        if let Some(st) = self.gatherers.get_mut(g) {
            st.cursor = st
                .cursor
                .min((start.div_euclid(width) * width).min(frontier));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn planner() -> Planner {
        Planner::new(
            PlanConfig {
                width_us: S,
                grace_us: S / 2,
                down_after_us: 5 * S,
                late_window_us: 3 * S,
            },
            100 * S + 7,
            vec![("a".into(), None), ("b".into(), None), ("c".into(), None)],
        )
    }

    fn probe_all(p: &mut Planner, now: i64, w: [Option<i64>; 3]) {
        for (i, w) in w.iter().enumerate() {
            p.handle_probe(i, now, w.map(Some));
        }
        p.handle_tick(now);
    }

    // Ranges close only when every live watermark is past their end plus grace; the slowest
    // gatherer holds the frontier back; a merge moves the frontier and the cursors.
    #[test]
    fn closes_on_slowest_watermark() {
        let mut p = planner();
        assert_eq!(p.frontier(), 100 * S);
        probe_all(
            &mut p,
            200 * S,
            [Some(103 * S), Some(104 * S), Some(101 * S)],
        );
        assert_eq!(p.poll_merge(200 * S, 100), None, "101.0 - 0.5 < 101");
        probe_all(
            &mut p,
            200 * S,
            [Some(103 * S), Some(104 * S), Some(101 * S + S / 2)],
        );
        let job = p.poll_merge(200 * S, 100).unwrap();
        assert_eq!(
            (job.start, job.ranges, job.sources.clone()),
            (100 * S, 1, vec![0, 1, 2])
        );
        p.handle_done(&job);
        assert_eq!(p.frontier(), 101 * S);
        assert!(p.gatherers().iter().all(|g| g.cursor == 101 * S));
        // The wall clock bounds closing too.
        probe_all(
            &mut p,
            103 * S,
            [Some(150 * S), Some(150 * S), Some(150 * S)],
        );
        assert_eq!(p.poll_merge(103 * S, 100).map(|j| j.end()), Some(102 * S));
        assert_eq!(p.poll_merge(400 * S, 10).map(|j| j.ranges), Some(10));
    }

    // An unreachable gatherer holds ranges back for down_after, then is down and ranges close
    // without it; when it returns it catches up from its cursor minus the late window, while
    // normal merges go on without it.
    #[test]
    fn down_gatherer_and_return() {
        let mut p = planner();
        probe_all(
            &mut p,
            200 * S,
            [Some(110 * S), Some(110 * S), Some(110 * S)],
        );
        let j = p.poll_merge(200 * S, 5).unwrap();
        p.handle_done(&j);
        assert_eq!(p.frontier(), 105 * S);
        p.handle_probe(2, 201 * S, None);
        p.handle_tick(201 * S);
        assert_eq!(p.gatherers()[2].status, GathererStatus::Waiting);
        assert_eq!(p.poll_merge(201 * S, 5), None);
        p.handle_probe(2, 206 * S, None);
        let t = p.handle_tick(206 * S);
        assert_eq!(t[0].to, GathererStatus::Down);
        let j = p.poll_merge(206 * S, 100).unwrap();
        assert_eq!(j.sources, vec![0, 1]);
        p.handle_done(&j);
        assert_eq!(p.frontier(), 109 * S);
        assert_eq!(p.gatherers()[2].cursor, 105 * S);
        // Back, and keeping up: rewound by the late window, then caught up in jobs.
        probe_all(
            &mut p,
            207 * S,
            [Some(120 * S), Some(120 * S), Some(119 * S)],
        );
        assert_eq!(p.gatherers()[2].status, GathererStatus::Live);
        assert_eq!(p.gatherers()[2].cursor, 102 * S);
        let c = p.poll_catchup(4).unwrap();
        assert_eq!(
            (c.start, c.ranges, c.sources.clone()),
            (102 * S, 4, vec![2])
        );
        p.handle_done(&c);
        // The normal merge does not read the catching-up gatherer.
        let m = p.poll_merge(300 * S, 2).unwrap();
        assert_eq!(m.sources, vec![0, 1]);
        p.handle_done(&m);
        let c = p.poll_catchup(100).unwrap();
        assert_eq!((c.start, c.end()), (106 * S, 111 * S));
        p.handle_done(&c);
        assert_eq!(p.gatherers()[2].cursor, p.frontier());
        assert_eq!(p.poll_catchup(100), None);
        assert_eq!(p.poll_merge(300 * S, 1).unwrap().sources, vec![0, 1, 2]);
    }

    // A reachable gatherer whose watermark is stuck (dead process) is down once the leader is
    // down_after ahead; with every gatherer down or without watermark nothing closes.
    #[test]
    fn stuck_watermark_is_down() {
        let mut p = planner();
        probe_all(
            &mut p,
            200 * S,
            [Some(110 * S), Some(110 * S), Some(104 * S)],
        );
        assert_eq!(p.gatherers()[2].status, GathererStatus::Down);
        assert_eq!(p.poll_merge(200 * S, 100).unwrap().sources, vec![0, 1]);
        let mut q = planner();
        probe_all(&mut q, 200 * S, [None, None, None]);
        assert_eq!(q.poll_merge(200 * S, 100), None);
    }
}
