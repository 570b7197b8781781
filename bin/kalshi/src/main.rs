//! `kalshi`: the operator CLI of the Kalshi data platform.
//!
//! Subcommands:
//! * `decode`: raw Kalshi frames in (one per line on stdin, or the `payload` of each line of a
//!   fixture file), canonical record JSON out, one line per frame. A frame that cannot be decoded
//!   becomes a `{"type":"error",...}` line and the run goes on.
//! * `migrate`: applies the schema migrations in `sql/` to a database (idempotent).
//! * `demo`: the whole platform on loopback, checked against the simulator's truth log.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kalshi_wire::{Decoder, DecoderConfig, write_canonical, write_error};

mod demo;
mod lines;
mod migrate;

/// Operator CLI of the Kalshi data platform.
#[derive(Parser, Debug)]
#[command(name = "kalshi", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode raw Kalshi WebSocket frames into canonical record JSON (one line per frame).
    Decode(DecodeArgs),
    /// Apply the schema migrations to a database (idempotent; safe to run concurrently).
    Migrate(migrate::MigrateArgs),
    /// Run the whole platform on loopback (simulator, 3 gatherers, deduplicator, 4 PostgreSQL
    /// clusters), show live status, then check production against the exchange's truth log.
    Demo(demo::DemoArgs),
}

#[derive(clap::Args, Debug)]
struct DecodeArgs {
    /// Read a fixture file (JSON lines with a `payload` field) instead of raw frames on stdin.
    #[arg(long, value_name = "FILE")]
    fixtures: Option<PathBuf>,
    /// Note the subscription's `use_yes_price` flag on book records (the wire does not carry it).
    #[arg(long, value_name = "BOOL")]
    use_yes_price: Option<bool>,
    /// Largest frame accepted, in bytes; longer lines become error records.
    #[arg(long, value_name = "BYTES", default_value_t = DecoderConfig::default().frame_bytes_max)]
    frame_bytes_max: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => decode(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Demo(args) => demo::run(&args),
    }
}

fn decode(args: &DecodeArgs) -> Result<()> {
    anyhow::ensure!(
        args.frame_bytes_max > 0,
        "--frame-bytes-max must be at least 1"
    );
    let mut decoder = Decoder::new(DecoderConfig {
        frame_bytes_max: args.frame_bytes_max,
    });
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut record = Vec::with_capacity(4096);
    let mut emit = |frame: Option<&mut Vec<u8>>, out: &mut dyn Write| -> Result<()> {
        record.clear();
        match frame {
            Some(frame) => match decoder.decode_with(frame, args.use_yes_price) {
                Ok(decoded) => write_canonical(&decoded, &mut record),
                Err(error) => write_error(&error, &mut record),
            },
            None => write_error(
                &kalshi_wire::DecodeError::FrameTooLarge {
                    len: args.frame_bytes_max + 1,
                    limit: args.frame_bytes_max,
                },
                &mut record,
            ),
        }
        record.push(b'\n');
        out.write_all(&record).context("writing to stdout")
    };
    // A line is read up to one byte past the limit, so that an oversized frame is recognized
    // without holding it in memory.
    let line_bytes_max = args.frame_bytes_max.saturating_add(1);
    match &args.fixtures {
        None => {
            let stdin = std::io::stdin();
            let mut reader = BufReader::with_capacity(1 << 16, stdin.lock());
            let mut line = Vec::with_capacity(4096);
            while let Some(status) =
                lines::read_line_bounded(&mut reader, &mut line, line_bytes_max)
                    .context("reading stdin")?
            {
                if status == lines::LineStatus::TooLong {
                    emit(None, &mut out)?;
                } else if !line.iter().all(u8::is_ascii_whitespace) {
                    emit(Some(&mut line), &mut out)?;
                }
            }
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("opening fixture file {}", path.display()))?;
            let mut text = String::new();
            BufReader::new(file)
                .take(1 << 30)
                .read_to_string(&mut text)
                .with_context(|| format!("reading fixture file {}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let mut frame = fixture_frame(line).with_context(|| {
                    format!("{}:{}: not a fixture line", path.display(), number + 1)
                })?;
                emit(Some(&mut frame), &mut out)?;
            }
        }
    }
    out.flush().context("flushing stdout")?;
    Ok(())
}

/// The frame of one fixture line: its `payload` re-serialized. A `kind` of `<type>.msg` holds
/// only a message body, which is wrapped in an envelope of that type.
fn fixture_frame(line: &str) -> Result<Vec<u8>> {
    let mut bytes = line.as_bytes().to_vec();
    let value = simd_json::to_owned_value(&mut bytes).context("invalid JSON")?;
    use simd_json::prelude::*;
    let payload = value.get("payload").context("no `payload` field")?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let frame = match kind.strip_suffix(".msg") {
        Some(wire_type) => {
            let mut envelope = simd_json::owned::Object::new();
            envelope.insert("type".into(), wire_type.into());
            envelope.insert("msg".into(), payload.clone());
            simd_json::OwnedValue::from(envelope).encode()
        }
        None => payload.encode(),
    };
    Ok(frame.into_bytes())
}
