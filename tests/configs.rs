//! Every shipped example passes `edge check`; broken files fail it with
//! `file:line:column` messages and a non-zero exit.

use anyhow::Result;
use std::{path::PathBuf, process::Command};

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn check(files: &[PathBuf]) -> Result<(bool, String)> {
    let files: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    edge_tests::edge::check(&files)
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

/// `edge check … | head -1`: the reader goes away after one line. Rust
/// ignores SIGPIPE, so every later write fails with EPIPE, which the print
/// macros turn into a panic; edge must stop writing and exit with the
/// check's own status instead.
#[test]
fn a_closed_pipe_ends_edge_check_quietly() -> Result<()> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    // Standard output: "FILE: OK" and a summary per good file, far more
    // than a pipe holds (64 KiB), closed after the first line.
    let good = config_dir().join("l7.yaml");
    let files = vec![good; 500];
    let mut child = Command::new(edge_tests::edge::binary()?)
        .arg("check")
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first)?;
    assert!(first.ends_with(": OK\n"), "{first}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)?;
    let status = child.wait()?;
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");

    // Standard error: every error of many broken files, closed after the
    // first line. The exit status is the check's (1), not a panic's (101).
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yaml");
    let mut text = String::from("xdp:\n  deny:\n");
    for i in 0..500 {
        text.push_str(&format!("    - 10.{}.{}.1/8\n", i / 250, i % 250));
    }
    std::fs::write(&bad, text)?;
    let mut child = Command::new(edge_tests::edge::binary()?)
        .arg("check")
        .args(vec![bad; 50])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(child.stderr.take().expect("piped")).read_line(&mut first)?;
    assert!(first.contains("has host bits set"), "{first}");
    let status = child.wait()?;
    assert_eq!(status.code(), Some(1), "{status}");
    Ok(())
}

#[test]
fn an_unreachable_jwks_url_is_a_warning_and_a_bad_policy_an_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // A port on loopback nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    pool: app
    policies:
      auth:
        jwt:
          jwks: {{url: 'http://127.0.0.1:{port}/jwks.json'}}
pools:
  - name: app
    backends: [{{address: 127.0.0.1:9000}}]
"
        ),
    )?;
    let (ok, text) = check(std::slice::from_ref(&good))?;
    assert!(ok, "{text}");
    assert!(text.contains("JWKS URL"), "{text}");
    assert!(text.contains("cannot be reached now"), "{text}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    pool: app
    policies:
      auth:
        jwt:
          keys: [{algorithm: RS256, pem_file: nowhere.pem}]
      authorize:
        allow: [{consumers: [nobody]}]
pools:
  - name: app
    backends: [{address: 127.0.0.1:9000}]
",
    )?;
    let (ok, text) = check(std::slice::from_ref(&bad))?;
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "bad.yaml:8:47: listeners[0].policies.auth.jwt.keys[0].pem_file: cannot read"
        ),
        "{text}"
    );
    assert!(
        text.contains("listeners[0].policies.authorize.allow[0].consumers[0]: consumer \"nobody\" is not defined"),
        "{text}"
    );
    Ok(())
}
