//! Replay: re-run actors from a trace and compare what they do with what was recorded.
//!
//! Each `Start` record rebuilds its actor from the recorded spec, RNG seed and storage
//! contents; every later input goes through the same [`ActorCell`] code the hosts use.
//! The first event whose effects differ is reported with its number, so a divergence
//! points at the exact input where behaviour changed.

use crate::actor::{ActorFactory, Effect, RawInput};
use crate::address::Address;
use crate::cell::ActorCell;
use crate::envelope::Message;
use crate::storage::MemStorage;
use crate::trace::{ReadOutcome, RecordedInput, TraceDigest, TraceError, TraceReader, TraceRecord};
use std::collections::BTreeMap;
use std::io::Read;

#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// 1-based number of the event in the trace.
    pub event: u64,
    pub actor: Address,
    pub input: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplayReport {
    pub events: u64,
    pub actors: usize,
    /// The hash recomputed from the records, and the one the end marker states.
    pub trace_hash: u64,
    pub recorded_hash: Option<u64>,
    /// The trace had no end marker (the recorder stopped abruptly).
    pub truncated: bool,
    pub divergence: Option<Divergence>,
}

impl ReplayReport {
    pub fn identical(&self) -> bool {
        self.divergence.is_none()
    }
}

fn short(text: String) -> String {
    const MAX: usize = 400;
    if text.len() <= MAX {
        text
    } else {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }
}

fn describe_difference<M: Message>(
    expected: &[Effect<M>],
    actual: &[Effect<M>],
) -> (String, String) {
    let first = expected
        .iter()
        .zip(actual.iter())
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(actual.len()));
    let pick = |list: &[Effect<M>]| match list.get(first) {
        Some(e) => format!("effect {} of {}: {:?}", first + 1, list.len(), e),
        None => format!("no effect {} (only {} effects)", first + 1, list.len()),
    };
    (short(pick(expected)), short(pick(actual)))
}

/// Replays every event; stops at the first divergence.
pub fn replay<R: Read, M: Message>(
    mut reader: TraceReader<R, M>,
    factory: &dyn ActorFactory<M>,
) -> Result<ReplayReport, TraceError> {
    let mut cells: BTreeMap<Address, (ActorCell<M>, MemStorage)> = BTreeMap::new();
    let mut digest = TraceDigest::default();
    let mut report = ReplayReport {
        events: 0,
        actors: 0,
        trace_hash: 0,
        recorded_hash: None,
        truncated: false,
        divergence: None,
    };
    loop {
        let (outcome, bytes) = reader.next_record()?;
        let event = match outcome {
            ReadOutcome::Truncated => {
                report.truncated = true;
                break;
            }
            ReadOutcome::Record(TraceRecord::End { events, trace_hash }) => {
                if events != digest.events {
                    return Err(TraceError::Corrupt(format!(
                        "end marker counts {events} events but the file holds {}",
                        digest.events
                    )));
                }
                report.recorded_hash = Some(trace_hash);
                break;
            }
            ReadOutcome::Record(TraceRecord::Event(event)) => event,
        };
        digest.add_encoded(&bytes);
        let number = digest.events;
        let input_text = short(format!("{:?}", event.input));
        let actual = match event.input {
            RecordedInput::Start {
                kind,
                spec,
                rng_seed,
                storage,
            } => {
                let actor = factory.build(&event.actor, &spec).map_err(|e| {
                    TraceError::Corrupt(format!(
                        "event {number}: cannot build {}: {e}",
                        event.actor
                    ))
                })?;
                let mut disk = MemStorage::from_entries(storage);
                let (cell, step) = ActorCell::start(
                    event.actor.clone(),
                    spec,
                    actor,
                    rng_seed,
                    kind,
                    event.time,
                    &mut disk,
                    false,
                );
                cells.insert(event.actor.clone(), (cell, disk));
                step.effects
            }
            RecordedInput::Message { from, msg } => {
                let (cell, disk) = cells.get_mut(&event.actor).ok_or_else(|| {
                    TraceError::Corrupt(format!(
                        "event {number}: {} receives before its start",
                        event.actor
                    ))
                })?;
                cell.run(event.time, RawInput::Message { from, msg }, None, disk)
                    .effects
            }
            RecordedInput::Timer { key } => {
                let (cell, disk) = cells.get_mut(&event.actor).ok_or_else(|| {
                    TraceError::Corrupt(format!(
                        "event {number}: {} fires a timer before its start",
                        event.actor
                    ))
                })?;
                let step = cell.run(event.time, RawInput::Timer(key), None, disk);
                if let Some(error) = step.error {
                    return Err(TraceError::Corrupt(format!("event {number}: {error}")));
                }
                step.effects
            }
        };
        if actual != event.effects {
            let (expected, actual) = describe_difference(&event.effects, &actual);
            report.divergence = Some(Divergence {
                event: number,
                actor: event.actor,
                input: input_text,
                expected,
                actual,
            });
            break;
        }
    }
    report.events = digest.events;
    report.actors = cells.len();
    report.trace_hash = digest.hash();
    Ok(report)
}
