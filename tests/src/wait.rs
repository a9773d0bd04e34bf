//! Waiting on a condition with a deadline: no sleeping and hoping.

use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Some`, or fails after `timeout` saying
/// what was awaited and the last thing the probe reported.
pub fn until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(POLL);
    }
}
