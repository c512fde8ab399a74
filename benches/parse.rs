//! Benchmark P (../shared/BENCHMARKS.md): finrep's parse-and-normalise path over a corpus of
//! feed files — bytes → items with canonical URL (made as the link is read), decoded plain
//! text and published time.
//!
//! Usage: cargo bench --bench parse -- CORPUS_DIR [RUNS] [feed-rs]
//! (`feed-rs`: every feed read by feed-rs, as before RSS and Atom had a reader of their own)
//! Prints one JSON object per run: {"files", "items", "seconds", "items_per_second"}.
//! `scripts/bench.sh` generates the corpus and compares with Python feedparser.

use std::path::PathBuf;
use std::time::Instant;

use finrep::pipeline::canonical::content_hash;
use finrep::pipeline::{decode, parse, text};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench parse -- CORPUS_DIR [RUNS] [feed-rs]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let read = match args.next().as_deref() {
        Some("feed-rs") => parse::parse_feed_rs,
        _ => parse::parse_feed,
    };
    let mut files: Vec<(Vec<u8>, Option<String>)> = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e != "meta"))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = std::fs::read(&path).unwrap_or_default();
        // The Content-Type a server would send, written next to the file by the generator.
        let content_type = std::fs::read_to_string(path.with_extension("meta")).ok();
        files.push((bytes, content_type));
    }
    let base = url::Url::parse("https://bench.example.com/feed").unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..runs {
        let started = Instant::now();
        let mut items = 0usize;
        let mut checksum = 0u64;
        let (mut t_decode, mut t_parse) = (0.0, 0.0);
        for (bytes, content_type) in &files {
            let t0 = Instant::now();
            let decoded = decode::decode(bytes, content_type.as_deref(), None);
            let t1 = Instant::now();
            let parsed = read(&decoded.text, &base);
            t_decode += (t1 - t0).as_secs_f64();
            t_parse += t1.elapsed().as_secs_f64();
            let Ok(parsed) = parsed else {
                continue;
            };
            for item in parsed {
                let title = text::to_plain_text(&item.title);
                let summary = item
                    .summary
                    .as_deref()
                    .map(text::to_plain_text)
                    .unwrap_or_default();
                let url = item.link;
                let hash = content_hash(&title, &summary);
                checksum = checksum
                    .wrapping_add(u64::from(hash[0]))
                    .wrapping_add(url.map_or(0, |u| u.len() as u64))
                    .wrapping_add(item.published.map_or(0, |p| p.timestamp() as u64));
                items += 1;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{{\"files\": {}, \"items\": {items}, \"seconds\": {seconds:.4}, \"items_per_second\": {:.0}, \"decode_seconds\": {t_decode:.4}, \"parse_seconds\": {t_parse:.4}, \"normalise_seconds\": {:.4}, \"checksum\": {checksum}}}",
            files.len(),
            items as f64 / seconds,
            seconds - t_decode - t_parse
        );
    }
}
