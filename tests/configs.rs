//! Every shipped example passes `edge check`; broken files fail it with
//! `file:line:column` messages and a non-zero exit.

use anyhow::Result;
use std::{path::PathBuf, process::Command};

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn check(files: &[PathBuf]) -> Result<(bool, String)> {
    let out = Command::new(edge_tests::edge::binary()?)
        .arg("check")
        .args(files)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn every_shipped_example_passes_edge_check() -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(config_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "config/ has examples");
    let (ok, text) = check(&files)?;
    assert!(ok, "edge check failed:\n{text}");
    for f in &files {
        assert!(text.contains(&format!("{}: OK", f.display())), "{text}");
    }
    Ok(())
}

#[test]
fn a_broken_file_fails_with_line_numbers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "xdp:\n  deny:\n    - 10.0.0.0/33\nlisteners:\n  - name: web\n    address: 0.0.0.0:80\n    pool: nope\n",
    )?;
    let (ok, text) = check(std::slice::from_ref(&bad))?;
    assert!(!ok, "edge check must fail:\n{text}");
    let b = bad.display();
    assert!(
        text.contains(&format!("{b}:3:7: xdp.deny[0]: bad CIDR \"10.0.0.0/33\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{b}:7:11: listeners[0].pool: pool \"nope\" is not defined (defined: none)"
        )),
        "{text}"
    );
    Ok(())
}
