//! `keel replay FILE`: re-run a recorded trace and compare.

use super::{bad_input, EXIT_FAILED, EXIT_OK};
use keel_actors::{Message, Registry};
use keel_engine::{replay, TraceReader};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

pub fn run(path: &Path, json: bool) -> u8 {
    super::init_logging("warn,madsim=error");
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return bad_input(format!("cannot open trace {}: {e}", path.display())),
    };
    let reader = match TraceReader::<_, Message>::open(BufReader::new(file)) {
        Ok(r) => r,
        Err(e) => return bad_input(format!("{}: {e}", path.display())),
    };
    let header = reader.header.clone();
    let report = match replay(reader, &Registry) {
        Ok(r) => r,
        Err(e) => return bad_input(format!("{}: {e}", path.display())),
    };
    if let Some(recorded) = report.recorded_hash {
        if recorded != report.trace_hash {
            return bad_input(format!(
                "{}: trace is corrupt: its end marker states hash {recorded:016x} but the records hash to {:016x}",
                path.display(),
                report.trace_hash
            ));
        }
    }
    if json {
        let divergence = report.divergence.as_ref().map(|d| {
            serde_json::json!({
                "event": d.event, "actor": d.actor.to_string(), "input": d.input,
                "expected": d.expected, "actual": d.actual,
            })
        });
        let value = serde_json::json!({
            "identical": report.identical(),
            "events": report.events,
            "actors": report.actors,
            "trace_hash": format!("{:016x}", report.trace_hash),
            "truncated": report.truncated,
            "host": header.host,
            "seed": header.seed,
            "divergence": divergence,
        });
        println!("{value}");
    } else {
        match &report.divergence {
            None => {
                println!(
                    "identical: {} events from {} actors replayed ({} trace, seed {}), trace hash {:016x}",
                    report.events, report.actors, header.host, header.seed, report.trace_hash
                );
                if report.truncated {
                    println!("note: the trace has no end marker (the recorder stopped abruptly); every complete event was replayed");
                }
            }
            Some(d) => {
                println!("diverged at event {} ({}):", d.event, d.actor);
                println!("  input:    {}", d.input);
                println!("  recorded: {}", d.expected);
                println!("  replayed: {}", d.actual);
            }
        }
    }
    if report.identical() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
