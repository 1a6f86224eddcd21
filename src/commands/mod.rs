//! Command implementations behind `keel`'s subcommands.
//!
//! One file per command group: [`sim`] (`keel sim`, `keel scenarios`) with [`sweep`]
//! (`keel sim --seeds A..B`), [`replay`], [`node`] (`keel selftest`), [`store`] (the
//! member daemon and its client commands, and the `HOST:PORT` endpoint parsing that
//! `keel api-client` shares), [`api`] (`keel apiserver`, `keel api-client`,
//! `keel api-balancer`), [`bench`] (`keel bench`, and what the benchmarks share),
//! [`bench_store`] with [`bench_store_keel`], [`bench_store_etcd`] and
//! [`bench_store_report`] (`keel bench store`: keel against etcd, like for like) and
//! [`bench_api`] (`keel bench api`).
//! `keel version` is [`version`] below; `keel kinds` is printed in `main.rs`.
//!
//! Exit codes: 0 success, 1 a run that failed its checks (or a replay that diverged),
//! 2 bad input (flags, files), reported as one line on stderr.

pub mod api;
pub mod bench;
pub mod bench_api;
pub mod bench_store;
pub mod bench_store_etcd;
pub mod bench_store_keel;
pub mod bench_store_report;
pub mod node;
pub mod replay;
pub mod sim;
pub mod store;
pub mod sweep;

use std::time::Duration;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Prints one line naming the problem and returns exit code 2 (help and version print
/// in full and succeed).
pub fn usage_error(error: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                std::process::ExitCode::from(EXIT_USAGE)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first}");
            std::process::ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Reports bad input on one line and returns exit code 2.
pub fn bad_input(message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    EXIT_USAGE
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: u64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number with a unit such as 30s or 500ms")
    })?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unit must be ms, s, m or h"
            ))
        }
    }
    .ok_or_else(|| format!("duration {text:?} is too long"))?;
    if millis == 0 {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(Duration::from_millis(millis))
}

/// Installs `tracing` output on stderr, filtered by `RUST_LOG` (default `default`).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn version() -> u8 {
    println!(
        "keel {} (wire version {}, trace format {})",
        env!("CARGO_PKG_VERSION"),
        keel_engine::WIRE_VERSION,
        keel_engine::trace::TRACE_FORMAT_VERSION
    );
    EXIT_OK
}
