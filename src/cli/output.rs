//! Where results go and in which form: `-o table|wide|json|ndjson`, chosen once per command.
//! Table is the default on a terminal, NDJSON otherwise; colour only on a terminal (or with
//! `--color always`) and never when `NO_COLOR` is set.

use std::io::{BufWriter, IsTerminal, StdoutLock, Write};

use clap::{Args, ValueEnum};

use crate::proto_json::{json, Spelling};

/// The output forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with human units and relative times.
    Table,
    /// The table with every field.
    Wide,
    /// One JSON document in the protobuf JSON mapping, as grpcurl prints it: camelCase
    /// field names, enums by name, 64-bit integers as strings (for `watch`: one compact
    /// document per line, like ndjson).
    Json,
    /// One JSON result per line, in the same mapping.
    Ndjson,
}

/// When to colour table output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Only on a terminal, and not when `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Output flags.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Output form [default: table on a terminal, ndjson otherwise].
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Colour in tables.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: ColorChoice,
}

/// Standard output, buffered, with the chosen form.
pub struct Output {
    /// The form results take.
    pub format: Format,
    /// Whether tables may use ANSI colour.
    pub color: bool,
    /// The local clock in Unix seconds, for relative times.
    pub now: i64,
    out: BufWriter<StdoutLock<'static>>,
}

/// The local wall clock in whole Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

impl Output {
    /// Standard output in the form `args` asks for.
    pub fn new(args: &OutputArgs) -> Output {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        let format = args.output.unwrap_or(if terminal {
            Format::Table
        } else {
            Format::Ndjson
        });
        let tabular = matches!(format, Format::Table | Format::Wide);
        let color = tabular
            && match args.color {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    terminal
                        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                        && std::env::var("TERM").map_or(true, |t| t != "dumb")
                }
            };
        Output {
            format,
            color,
            now: unix_now(),
            out: BufWriter::new(stdout.lock()),
        }
    }

    /// Whether the form is a table.
    pub fn is_table(&self) -> bool {
        matches!(self.format, Format::Table | Format::Wide)
    }

    /// Writes `text` as is.
    pub fn write(&mut self, text: &str) -> std::io::Result<()> {
        self.out.write_all(text.as_bytes())
    }

    /// Writes `message` as one compact line of protobuf JSON.
    pub fn json_line<M: prost::Name>(&mut self, message: &M) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &json(message, Spelling::Canonical))?;
        self.out.write_all(b"\n")
    }

    /// Writes `messages` as one indented JSON array.
    pub fn json_array<M: prost::Name>(&mut self, messages: &[M]) -> std::io::Result<()> {
        let all: Vec<_> = messages
            .iter()
            .map(|message| json(message, Spelling::Canonical))
            .collect();
        serde_json::to_writer_pretty(&mut self.out, &all)?;
        self.out.write_all(b"\n")
    }

    /// Writes `message` as one indented document of protobuf JSON.
    pub fn json_document<M: prost::Name>(&mut self, message: &M) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut self.out, &json(message, Spelling::Canonical))?;
        self.out.write_all(b"\n")
    }

    /// Pushes everything written so far to the terminal or pipe.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
