//! What every long-running command waits on: its own end condition, `--duration`, SIGINT or SIGTERM.

use std::time::Duration;

/// Why [`until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The command's own condition held.
    Done,
    /// `--duration` is up.
    Deadline,
    Signal(&'static str),
}

/// `--duration` values: plain seconds (`90`, `1.5`) or a humantime span (`90s`, `2m`, `1h 30m`). Negative,
/// infinite and NaN values are refused here, with the flag's rules, instead of panicking later.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("'{s}' is not a duration: use a finite number of seconds >= 0, or e.g. 90s, 2m"));
    }
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration ({e}): use seconds, or e.g. 90s, 2m"))
}

/// Polls `done` every 100 ms until it holds, `duration` has passed, or a signal arrives.
pub async fn until(duration: Option<Duration>, mut done: impl FnMut() -> bool) -> Stop {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        if done() {
            return Stop::Done;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Stop::Deadline;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => return Stop::Signal("SIGINT"),
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                return Stop::Signal("SIGTERM");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_or_humantime_and_bad_ones_refused() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["-1", "inf", "NaN", "1e400", "soon", ""] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }
}
