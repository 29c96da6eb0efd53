//! Supervision of the pipeline's stage threads.
//!
//! Every long-lived stage thread (encoder, matcher, speech) is started with [`spawn`]. A stage that panics,
//! or returns an error (for example because the stage after it has gone), marks the service's [`Health`]
//! failed with its name: `/readyz` turns red at once and `livesku run` shuts down and exits non-zero,
//! naming the stage. Nothing runs on silently behind a dead stage.
//!
//! Fault injection for the supervision tests: with `LIVESKU_FAULT_PANIC_STAGE=<stage>[@<secs>]` that stage
//! panics `secs` (default 2) seconds after it starts, so the service can first come up and report ready.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// The first stage failure of a service, if any. Cheap to clone; shared by the stages (which report into
/// it), the API (`/readyz`) and the command that runs the service (which stops on it).
#[derive(Clone, Default)]
pub struct Health(Arc<Inner>);

#[derive(Default)]
struct Inner {
    failure: Mutex<Option<StageFailure>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageFailure {
    pub stage: String,
    pub reason: String,
}

impl std::fmt::Display for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage '{}' failed: {}", self.stage, self.reason)
    }
}

impl Health {
    /// Records a failure (the first one is kept: later ones are usually its consequences).
    pub fn fail(&self, stage: &str, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(stage, reason = %reason, "pipeline stage failed: the service cannot go on");
        let mut failure = self.0.failure.lock();
        if failure.is_none() {
            *failure = Some(StageFailure { stage: stage.to_string(), reason });
        }
    }

    pub fn failure(&self) -> Option<StageFailure> {
        self.0.failure.lock().clone()
    }

    pub fn is_healthy(&self) -> bool {
        self.0.failure.lock().is_none()
    }
}

/// Starts a stage thread named `livesku-<stage>`. `run` returns `Ok` when its input has ended (a normal
/// shutdown) and `Err(reason)` when it cannot go on; either a returned error or a panic fails `health`.
pub fn spawn(
    health: &Health,
    stage: &str,
    run: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let (health, name) = (health.clone(), stage.to_string());
    let inject = injected_panic(stage);
    std::thread::Builder::new().name(format!("livesku-{stage}")).spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            if let Some(after) = inject {
                std::thread::sleep(after);
                panic!("fault injected by LIVESKU_FAULT_PANIC_STAGE");
            }
            run()
        }));
        match outcome {
            Ok(Ok(())) => tracing::debug!(stage = %name, "stage finished"),
            Ok(Err(reason)) => health.fail(&name, reason),
            Err(panic) => health.fail(&name, format!("panicked: {}", panic_message(&*panic))),
        }
    })
}

/// `LIVESKU_FAULT_PANIC_STAGE` names this stage: after how long it is to panic.
fn injected_panic(stage: &str) -> Option<Duration> {
    let spec = std::env::var("LIVESKU_FAULT_PANIC_STAGE").ok()?;
    let (name, secs) = spec.split_once('@').unwrap_or((spec.as_str(), "2"));
    (name == stage).then(|| Duration::try_from_secs_f64(secs.parse().unwrap_or(2.0)).unwrap_or(Duration::from_secs(2)))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_or_failing_stage_marks_health_with_its_name() {
        let health = Health::default();
        spawn(&health, "fine", || Ok(())).unwrap().join().unwrap();
        assert!(health.is_healthy());
        spawn(&health, "matcher", || panic!("boom {}", 7)).unwrap().join().unwrap();
        assert_eq!(
            health.failure(),
            Some(StageFailure { stage: "matcher".into(), reason: "panicked: boom 7".into() })
        );
        // The first failure is kept.
        spawn(&health, "encoder", || Err("output closed".into())).unwrap().join().unwrap();
        assert_eq!(health.failure().unwrap().stage, "matcher");
    }
}
