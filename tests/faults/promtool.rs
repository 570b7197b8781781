//! Alert rules evaluated by `promtool test rules` over series recorded from the live platform.
//!
//! A [`Recorder`] scrapes every process once per [`Recorder::step`] (about one second of wall
//! time) and keeps the samples of the metrics an alert reads, labelled with `job` and
//! `instance` as the project's Prometheus config labels them, plus `up` (1 when the scrape
//! answered 200, else 0). A series that disappears gets one `stale` marker, as Prometheus
//! writes on a failed scrape. [`Recorder::check`] writes the samples as the `input_series` of a
//! generated promtool test, one sample per [`STEP`] of rule time: the run is TIME-DILATED, one
//! recorded step (~1 s of wall time) counts as 15 s for the rules, so that `for: 1m` and
//! `[5m]` windows pass in seconds. The rules are `monitoring/alerts.yml` with only the
//! `annotations` blocks removed (they are tested in `monitoring/alerts_test.yml`; here the
//! expressions, `for` durations and labels are evaluated verbatim).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kalshi_cli::platform::Platform;

/// Rule time per recorded step, in seconds.
pub(crate) const STEP: u64 = 15;

/// Samples of selected metrics, one column per step.
pub(crate) struct Recorder {
    names: Vec<&'static str>,
    steps: Vec<BTreeMap<String, f64>>,
}

/// One expected firing alert: its labels other than `alertname`.
pub(crate) type Labels = Vec<(&'static str, String)>;

impl Recorder {
    /// Records the metrics named in `names` (and `up`).
    pub(crate) fn new(names: &[&'static str]) -> Recorder {
        Recorder {
            names: names.to_vec(),
            steps: Vec::new(),
        }
    }

    /// Number of steps recorded so far (the index of the next step).
    pub(crate) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Scrapes every process once and sleeps the rest of about one second.
    pub(crate) fn step(&mut self, platform: &Platform) {
        let started = std::time::Instant::now();
        let mut sample = BTreeMap::new();
        for scrape in platform.scrape() {
            let base = format!("job=\"{}\",instance=\"{}\"", scrape.job, scrape.instance);
            sample.insert(
                format!("up{{{base}}}"),
                if scrape.body.is_some() { 1.0 } else { 0.0 },
            );
            let Some(body) = scrape.body else { continue };
            for line in body.lines() {
                if line.starts_with('#') {
                    continue;
                }
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                if !self.names.contains(&name) {
                    continue;
                }
                let Ok(v) = value.parse::<f64>() else {
                    continue;
                };
                if !v.is_finite() {
                    continue;
                }
                let key = if labels.is_empty() {
                    format!("{name}{{{base}}}")
                } else {
                    format!("{name}{{{base},{labels}}}")
                };
                sample.insert(key, v);
            }
        }
        self.steps.push(sample);
        if let Some(rest) = std::time::Duration::from_secs(1).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }

    fn input_series(&self) -> String {
        let keys: BTreeSet<&String> = self.steps.iter().flat_map(|s| s.keys()).collect();
        let mut out = String::new();
        for key in keys {
            let mut values = Vec::new();
            let mut present = false;
            for s in &self.steps {
                match s.get(key) {
                    Some(v) => {
                        values.push(format!("{v}"));
                        present = true;
                    }
                    None if present => {
                        values.push("stale".to_owned());
                        present = false;
                    }
                    None => values.push("_".to_owned()),
                }
            }
            let _ = writeln!(
                out,
                "      - series: '{}'\n        values: '{}'",
                key.replace('\'', "''"),
                values.join(" ")
            );
        }
        out
    }

    /// Runs promtool: `alert` must be firing at step `firing_at` with exactly the alerts
    /// `expected` (labels other than `alertname`), and must not be firing at each step of
    /// `quiet_at`. Panics with promtool's output when it disagrees, or when promtool is missing.
    pub(crate) fn check(
        &self,
        dir: &Path,
        scenario: &str,
        alert: &str,
        firing_at: usize,
        expected: &[Labels],
        quiet_at: &[usize],
    ) {
        let promtool = promtool();
        let rules = rules_without_annotations(dir);
        let mut test = format!(
            "# Generated by the fault suite ({scenario}): series recorded from the live platform,\n\
             # one sample per {STEP}s of rule time (time-dilated: one sample was ~1 s of wall time).\n\
             rule_files:\n  - {}\nevaluation_interval: {STEP}s\ntests:\n  - name: '{scenario}'\n    interval: {STEP}s\n    input_series:\n",
            rules.display()
        );
        test.push_str(&self.input_series());
        test.push_str("    alert_rule_test:\n");
        let _ = writeln!(
            test,
            "      - eval_time: {}s\n        alertname: {alert}\n        exp_alerts:",
            firing_at as u64 * STEP
        );
        for labels in expected {
            let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: '{v}'")).collect();
            let _ = writeln!(test, "          - exp_labels: {{{}}}", rendered.join(", "));
        }
        for q in quiet_at {
            let _ = writeln!(
                test,
                "      - eval_time: {}s\n        alertname: {alert}\n        exp_alerts: []",
                *q as u64 * STEP
            );
        }
        let path = dir.join(format!("{scenario}.promtool-test.yml"));
        std::fs::write(&path, &test).unwrap();
        let output = Command::new(&promtool)
            .args(["test", "rules"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{scenario}: promtool says {alert} did not behave as expected (firing at step {firing_at}, quiet at {quiet_at:?}); test file {}\n{}\n{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "faults: {scenario}: promtool confirms {alert}: expected alerts {expected:?} at step {firing_at} ({}s rule time), quiet at steps {quiet_at:?}",
            firing_at as u64 * STEP
        );
    }
}

/// promtool's path. Fails the test, saying so, when it is not installed.
pub(crate) fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "promtool is not installed: the fault suite evaluates the alert rules with it. \
             Install it with scripts/check-monitoring.sh (Debian package `prometheus`)."
        ),
    }
}

/// monitoring/alerts.yml without its `annotations:` blocks, written into `dir`.
fn rules_without_annotations(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/alerts.yml");
    let text = std::fs::read_to_string(&source).unwrap();
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    let mut removed = 0;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skipping {
            if line.trim().is_empty() || indent > level {
                continue;
            }
            skipping = None;
        }
        if line.trim() == "annotations:" {
            skipping = Some(indent);
            removed += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let alerts = text.matches("- alert:").count();
    assert_eq!(
        removed, alerts,
        "every alert in alerts.yml should have one annotations block"
    );
    let path = dir.join("alerts-without-annotations.yml");
    std::fs::write(&path, out).unwrap();
    path
}
