//! Reading edge's Prometheus exposition in tests.

use crate::wait;
use anyhow::Result;
use std::time::Duration;

/// The value of the first sample of `name` carrying every label of
/// `labels` (the exposition sorts labels, so each is matched on its own).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let head = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(head.as_str()))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes with `scrape` until sample `name` with `labels` satisfies
/// `want`, within `deadline`; the error shows the last samples of `name`.
pub fn wait_metric(
    mut scrape: impl FnMut() -> Result<String>,
    name: &str,
    labels: &[(&str, &str)],
    deadline: Duration,
    want: impl Fn(f64) -> bool,
) -> Result<f64> {
    let mut last = String::new();
    let got = wait::until(&format!("{name} {labels:?}"), deadline, || {
        let text = scrape()?;
        let value = metric(&text, name, labels);
        last = text
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(value.filter(|v| want(*v)))
    });
    got.map_err(|e| e.context(format!("samples of {name}:\n{last}")))
}
