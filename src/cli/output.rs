//! The one place that prints: results on stdout (tables, JSON, paths), and
//! the library's notes (the `log` records) on stderr as `zcsplice: ...`.

use anyhow::Result;
use serde::Serialize;

use zcsplice::series::probe::Probed;
use zcsplice::tree::debian::Offer;
use zcsplice::tree::import::Imported;

/// Prints the library's notes on stderr; `--quiet` keeps warnings only.
struct Notes;

impl log::Log for Notes {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = match r.level() {
            log::Level::Error | log::Level::Warn => format!("zcsplice: warning: {}", r.args()),
            _ => format!("zcsplice: {}", r.args()),
        };
        zcsplice::progress::println(&line);
    }
    fn flush(&self) {}
}

static NOTES: Notes = Notes;

pub fn init(quiet: bool) {
    zcsplice::progress::set_quiet(quiet);
    let _ = log::set_logger(&NOTES);
    log::set_max_level(if quiet {
        log::LevelFilter::Warn
    } else {
        log::LevelFilter::Info
    });
}

/// A note from the CLI itself, under the same rules as the library's.
pub fn note(msg: impl std::fmt::Display) {
    log::info!("{msg}");
}

pub fn json(v: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A table or report that ends in a newline.
pub fn text(s: &str) {
    print!("{s}");
}

pub fn line(s: impl std::fmt::Display) {
    println!("{s}");
}

pub fn trees(trees: &[Imported]) {
    if trees.is_empty() {
        note("no imported trees; `zcsplice tree import --debian 6.12` makes one");
        return;
    }
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_header(["SERIES", "VERSION", "", "SOURCE", "PATH"]);
    for tr in trees {
        t.add_row([
            tr.series(),
            tr.version.clone(),
            if tr.newest { "newest" } else { "" }.to_string(),
            tr.source.to_string(),
            tr.path.display().to_string(),
        ]);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    println!("{}", t.trim_fmt());
}

/// `tree versions`: each series' versions, newest first, and their suites.
pub fn debian_versions(all: &[Offer]) {
    let mut t = zcsplice::report::table(["SERIES", "VERSION", "SUITE"], &[]);
    for o in all {
        for c in &o.versions {
            t.add_row([o.series.as_str(), &c.version, &c.suite]);
        }
    }
    println!("{}", t.trim_fmt());
}

pub fn facts(p: &Probed) {
    println!("version: {}", p.version);
    let w = p.facts.keys().map(String::len).max().unwrap_or(0);
    for (name, f) in &p.facts {
        let v = match &f.value {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let doc = if f.doc.is_empty() {
            String::new()
        } else {
            format!("  ({})", f.doc)
        };
        println!("{name:w$}  {v}{doc}\n{:w$}  {}", "", f.evidence);
    }
}

/// What a send puts on the wire: the sender, then per message its
/// Message-Id, subject and recipients; one string per line.
pub fn envelope(messages: &[zcsplice::mail::outbox::Outgoing]) -> Vec<String> {
    let mut v: Vec<String> = messages
        .first()
        .map(|m| format!("from: {}", m.from))
        .into_iter()
        .collect();
    for m in messages {
        v.push(format!("<{}>", m.message_id));
        v.push(format!("  subject: {}", m.subject));
        v.extend(recipients(m));
    }
    v
}

/// A message's To and Cc lines, as the envelope shows them.
pub fn recipients(m: &zcsplice::mail::outbox::Outgoing) -> Vec<String> {
    let mut v = vec![format!("  to: {}", m.to.join(", "))];
    if !m.cc.is_empty() {
        v.push(format!("  cc: {}", m.cc.join(", ")));
    }
    v
}
