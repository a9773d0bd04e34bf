//! `cargo xtask fuzz [TARGET] [--seconds N]`: edge's cargo-fuzz targets
//! (`tests/fuzz`), each run for a bounded time; and the short smoke run of
//! every target that `cargo xtask test` makes.
//!
//! The targets need nightly compiler flags (`-Zsanitizer`, and cargo-fuzz
//! passes no others); the machine's stable rustc takes them with
//! `RUSTC_BOOTSTRAP=1`, as the XDP build does with Debian's. The build lives
//! in its own target directory, `tests/fuzz/target/<sanitizer>`, so it is
//! cached apart from the workspace's and never fights it over flags.
//!
//! Seeds are read from `tests/fuzz/corpus/<target>` (committed; with the
//! libFuzzer dictionary `tests/fuzz/dict/<target>.dict` if there is one)
//! and never written to: what a run finds goes to `tests/fuzz/target/corpus/<target>`
//! (kept between runs, so later runs start from it), crashes to
//! `tests/fuzz/artifacts/<target>`, libFuzzer's output to
//! `tests/fuzz/target/logs/<target>.log`.

use crate::{cargo, run_status, toolchain};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

/// Where the fuzz project lives, from the workspace root.
const FUZZ_DIR: &str = "tests/fuzz";
/// Seconds per target in `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 5;
/// An input that runs longer than this is a hang, reported like a crash.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// `cargo xtask fuzz` options.
#[derive(clap::Args)]
pub struct Options {
    /// The target to run (see `tests/fuzz/Cargo.toml`); default: each in turn.
    target: Option<String>,
    /// How long each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// `address` (AddressSanitizer: also catches memory errors in unsafe and
    /// C code) or `none` (faster).
    #[arg(long, value_enum, default_value_t = Sanitizer::Address)]
    sanitizer: Sanitizer,
    /// Print libFuzzer's output as it runs (it always goes to the log).
    #[arg(long, short)]
    verbose: bool,
    /// Run what `cargo xtask test` runs: every target for a few seconds,
    /// from its seeds alone.
    #[arg(long, conflicts_with_all = ["target", "seconds", "sanitizer", "libfuzzer_args"])]
    smoke: bool,
    /// Further libFuzzer options, after `--` (e.g. `-- -max_len=512`).
    #[arg(last = true)]
    libfuzzer_args: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sanitizer {
    Address,
    None,
}

impl Sanitizer {
    fn as_str(self) -> &'static str {
        match self {
            Sanitizer::Address => "address",
            Sanitizer::None => "none",
        }
    }
}

/// What one run of one target did.
struct Run {
    target: String,
    seconds: f64,
    /// libFuzzer's `stat::number_of_executed_units`.
    runs: Option<u64>,
    /// The coverage (`cov:`) of its last status line.
    coverage: Option<u64>,
    /// `None` when it passed; else why not, and the reproducer if written.
    failure: Option<(String, Option<PathBuf>)>,
    log: PathBuf,
}

impl Run {
    fn summary(&self) -> String {
        let runs = self.runs.map_or_else(
            || "? runs".to_string(),
            |n| format!("{n} runs ({:.0}/s)", n as f64 / self.seconds.max(0.001)),
        );
        let cov = self
            .coverage
            .map_or(String::new(), |c| format!(", coverage {c}"));
        let verdict = match &self.failure {
            None => "ok".to_string(),
            Some((why, artifact)) => match artifact {
                Some(a) => format!("FAILED: {why}; reproducer {}", a.display()),
                None => format!("FAILED: {why}"),
            },
        };
        format!(
            "fuzz {}: {:.0} s, {runs}{cov}: {verdict}",
            self.target, self.seconds
        )
    }
}

/// `cargo xtask fuzz`.
pub fn run(root: &Path, opts: &Options) -> Result<()> {
    if opts.smoke {
        let (passed, failed) = smoke(root)?;
        if failed > 0 {
            bail!("{failed} of {} fuzz targets failed", passed + failed);
        }
        return Ok(());
    }
    let bins = build(root, opts.sanitizer, Profile::Release)?;
    let all = list(root)?;
    let targets = match &opts.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?}; there are: {}", all.join(", ")),
        None => all,
    };
    let mut failed = 0;
    for target in &targets {
        let run = run_target(
            root,
            &bins,
            target,
            opts.seconds,
            Corpus::Kept,
            opts.verbose,
            &opts.libfuzzer_args,
        )?;
        println!("{}", run.summary());
        if run.failure.is_some() {
            failed += 1;
            print_tail(&run.log);
        }
    }
    if failed > 0 {
        bail!("{failed} of {} fuzz targets failed", targets.len());
    }
    Ok(())
}

/// The smoke run of `cargo xtask test`: every target for [`SMOKE_SECONDS`]
/// with AddressSanitizer, from its seeds. Returns how many passed and how many failed; an
/// error if the targets could not be built or started.
pub fn smoke(root: &Path) -> Result<(u64, u64)> {
    // Unoptimised: a few seconds a target find crashes and sanitizer
    // reports as well, and the build (edge and its dependencies again,
    // instrumented) takes minutes less of the suite's time.
    let bins = build(root, Sanitizer::Address, Profile::Dev)?;
    let (mut passed, mut failed) = (0, 0);
    for target in list(root)? {
        let run = run_target(
            root,
            &bins,
            &target,
            SMOKE_SECONDS,
            Corpus::Fresh,
            false,
            &[],
        )?;
        println!("{}", run.summary());
        if run.failure.is_some() {
            failed += 1;
            print_tail(&run.log);
        } else {
            passed += 1;
        }
    }
    Ok((passed, failed))
}

fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

fn fuzz_command(root: &Path) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(root)
        .arg("fuzz")
        // -Zsanitizer and friends on the stable toolchain.
        .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// How the targets are built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// Optimised, for fuzzing in earnest.
    Release,
    /// Unoptimised, for the suite's smoke run.
    Dev,
}

/// Builds every target; returns the directory of the binaries.
fn build(root: &Path, sanitizer: Sanitizer, profile: Profile) -> Result<PathBuf> {
    toolchain::ensure()?;
    toolchain::ensure_cargo_fuzz()?;
    let target_dir = root.join(FUZZ_DIR).join("target").join(sanitizer.as_str());
    let triple = host_triple();
    let started = Instant::now();
    let mut cmd = fuzz_command(root);
    cmd.args(["build", "--fuzz-dir", FUZZ_DIR, "--target", &triple]);
    if profile == Profile::Dev {
        cmd.arg("--dev");
    }
    run_status(
        cmd.args(["--sanitizer", sanitizer.as_str()])
            // Overflow checks and debug assertions find more; 16 codegen
            // units rebuild edge-userspace several times faster than the
            // single one cargo-fuzz defaults to, for somewhat slower runs.
            .args(["--debug-assertions", "--codegen-units", "16"])
            // The environment, not --target-dir: edge-userspace's build
            // script puts the XDP build under CARGO_TARGET_DIR too.
            .env("CARGO_TARGET_DIR", &target_dir),
    )
    .context("building the fuzz targets")?;
    println!(
        "xtask: fuzz targets built in {:.0?} ({} sanitizer)",
        started.elapsed(),
        sanitizer.as_str()
    );
    let dir = match profile {
        Profile::Release => "release",
        Profile::Dev => "debug",
    };
    Ok(target_dir.join(triple).join(dir))
}

/// The targets, as `tests/fuzz/Cargo.toml` declares them.
fn list(root: &Path) -> Result<Vec<String>> {
    let out = fuzz_command(root)
        .args(["list", "--fuzz-dir", FUZZ_DIR])
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("cargo fuzz list found no targets in {FUZZ_DIR}");
    }
    Ok(targets)
}

/// Where a run keeps what it finds.
enum Corpus {
    /// `tests/fuzz/target/corpus/<target>`, kept between runs: a run starts
    /// from everything earlier runs found.
    Kept,
    /// Emptied first: the run starts from the seeds alone, so its start-up
    /// (replaying the corpus) stays short however much earlier runs found.
    Fresh,
}

/// Runs one target's binary for `seconds` over its corpus and seeds.
fn run_target(
    root: &Path,
    bins: &Path,
    target: &str,
    seconds: u64,
    corpus: Corpus,
    echo: bool,
    extra: &[String],
) -> Result<Run> {
    let fuzz = root.join(FUZZ_DIR);
    let corpus = match corpus {
        Corpus::Kept => fuzz.join("target/corpus").join(target),
        Corpus::Fresh => {
            let dir = fuzz.join("target/smoke-corpus").join(target);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("emptying {}", dir.display()))?;
            }
            dir
        }
    };
    let seeds = fuzz.join("corpus").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    let logs = fuzz.join("target/logs");
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let bin = bins.join(target);
    let mut cmd = Command::new(&bin);
    // New inputs go to the first directory; the seeds are only read.
    cmd.arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let dict = fuzz.join("dict").join(format!("{target}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    cmd.arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .args(extra)
        // As cargo fuzz run sets it.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let mut run = Run {
        target: target.to_string(),
        seconds: 0.0,
        runs: None,
        coverage: None,
        failure: None,
        log: log_path,
    };
    let mut reason = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).split(b'\n') {
            let line = String::from_utf8_lossy(&line?).into_owned();
            writeln!(log, "{line}")?;
            if echo {
                eprintln!("{line}");
            }
            read_line(&line, &mut run, &mut reason);
        }
    }
    let status = child.wait()?;
    run.seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let artifact = run.failure.take().and_then(|(_, a)| a);
        let why = reason.unwrap_or_else(|| format!("libFuzzer exited with {status}"));
        run.failure = Some((why, artifact));
    }
    Ok(run)
}

/// Picks what the summary needs out of one line of libFuzzer's output.
fn read_line(line: &str, run: &mut Run, reason: &mut Option<String>) {
    // A panic's message is on the line after `thread '…' panicked at …:`.
    if let Some(r) = reason.as_mut()
        && r.ends_with(':')
        && r.starts_with("thread '")
    {
        r.push(' ');
        r.extend(line.chars().take(300));
        return;
    }
    if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
        run.runs = n.trim().parse().ok();
    } else if let Some(path) = line.split("Test unit written to ").nth(1) {
        run.failure = Some((String::new(), Some(PathBuf::from(path.trim()))));
    } else if line.starts_with("thread '") && line.contains(" panicked at ") {
        *reason = Some(line.trim_end().to_string());
    } else if line.starts_with("==") && line.contains("ERROR: ") && reason.is_none() {
        // `==123== ERROR: libFuzzer: timeout …`, `ERROR: AddressSanitizer: …`
        *reason = line.split("ERROR: ").nth(1).map(str::to_string);
    } else if let Some(cov) = line.split(" cov: ").nth(1)
        && line.starts_with('#')
    {
        run.coverage = cov.split_whitespace().next().and_then(|c| c.parse().ok());
    }
}

/// What a failed run's log says about the failure: the panic or sanitizer
/// report (without the stack), and where the reproducer went.
fn print_tail(log: &Path) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(" panicked at ") || (l.starts_with("==") && l.contains("ERROR: ")))
        .unwrap_or(lines.len().saturating_sub(20));
    eprintln!("--- from {} ---", log.display());
    for line in lines[start..].iter().take(12) {
        eprintln!("{line}");
    }
    for line in lines
        .iter()
        .filter(|l| l.contains("Test unit written to") || l.starts_with("Base64:"))
    {
        eprintln!("{line}");
    }
    eprintln!("---");
}
