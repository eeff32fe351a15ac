//! Printing results on the terminal: an aligned table, CSV or JSON lines; progress bars.

use std::io::Write;

use arrow::array::RecordBatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Table,
    Csv,
    Json,
}

impl OutputKind {
    pub fn parse(name: &str) -> OutputKind {
        match name {
            "csv" => OutputKind::Csv,
            "json" => OutputKind::Json,
            _ => OutputKind::Table,
        }
    }
}

pub fn render_batches(
    out: &mut impl Write,
    kind: OutputKind,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    match kind {
        OutputKind::Table => {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if batches.is_empty() {
                writeln!(out, "(0 rows)")?;
                return Ok(());
            }
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        OutputKind::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        OutputKind::Json => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

pub fn render_command(out: &mut impl Write, tag: &str, rows: Option<u64>) -> anyhow::Result<()> {
    match rows {
        Some(rows) => writeln!(out, "{tag} {rows}")?,
        None => writeln!(out, "{tag}")?,
    }
    Ok(())
}

/// A progress bar of bytes moved (imports, backups, restores), with its message in front.
pub fn bytes_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}
