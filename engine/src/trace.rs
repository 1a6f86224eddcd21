//! Trace files: every input an actor received, with time, source and the effects it
//! produced, so that a replay can re-run the actor and compare.
//!
//! Format (version [`TRACE_FORMAT_VERSION`]), all integers little-endian:
//! ```text
//! magic      8 bytes  "KEELTRCE"
//! version    u32
//! header     u32 length, u32 crc32, JSON bytes  (TraceHeader: seed, host, configuration)
//! records    u32 length, u32 crc32, bincode bytes of TraceRecord, repeated
//! ```
//! The last record is `End` with the event count and trace hash; a file without it was
//! cut short (a process killed mid-run) and replays as far as its complete records go.
//! The trace hash is FNV-1a (64 bit) over every event record's bytes in order, so two
//! runs with the same hash received the same inputs and produced the same effects.

use crate::actor::{ActorSpec, Effect, StartKind, Time, TimerKey};
use crate::address::Address;
use crate::envelope::Message;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

pub const TRACE_MAGIC: &[u8; 8] = b"KEELTRCE";
pub const TRACE_FORMAT_VERSION: u32 = 1;
/// No single record may be larger than this (a corrupt length must not allocate GiBs).
pub const TRACE_RECORD_MAX_BYTES: u32 = 64 * 1024 * 1024;

/// What the trace was recorded from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub format_version: u32,
    /// "sim" or "real".
    pub host: String,
    /// The simulator seed (sim) or the process's RNG seed base (real).
    pub seed: u64,
    /// Host and scenario configuration, free-form JSON.
    pub config: serde_json::Value,
    pub created_by: String,
}

/// An input as recorded: a start also carries what a replay needs to rebuild the actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecordedInput<M> {
    Start {
        kind: StartKind,
        spec: ActorSpec,
        rng_seed: u64,
        storage: crate::storage::KeyValues,
    },
    Message {
        from: Address,
        msg: M,
    },
    Timer {
        key: TimerKey,
    },
}

/// One input to one actor and what it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent<M> {
    pub actor: Address,
    pub time: Time,
    pub input: RecordedInput<M>,
    pub effects: Vec<Effect<M>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TraceRecord<M> {
    Event(TraceEvent<M>),
    End { events: u64, trace_hash: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a keel trace (bad magic bytes)")]
    BadMagic,
    #[error("trace format version {found} is newer than this keel supports ({supported}); use a newer keel")]
    TooNew { found: u32, supported: u32 },
    #[error("trace is corrupt: {0}")]
    Corrupt(String),
}

/// FNV-1a, 64 bit: a stable hash that does not depend on the Rust version or process.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Folds events into the trace hash; hosts keep one even when they do not write a file.
#[derive(Clone, Debug, Default)]
pub struct TraceDigest {
    hasher: StableHasher,
    pub events: u64,
}

impl TraceDigest {
    /// Adds one event, returning its encoded bytes for writers.
    pub fn add<M: Message>(&mut self, event: &TraceEvent<M>) -> Vec<u8> {
        let bytes = encode_record(&TraceRecord::Event(event.clone()));
        self.add_encoded(&bytes);
        bytes
    }

    pub fn add_encoded(&mut self, record_bytes: &[u8]) {
        self.hasher.update(record_bytes);
        self.events += 1;
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }
}

fn encode_record<M: Message>(record: &TraceRecord<M>) -> Vec<u8> {
    // In-memory values of our own types: serialization cannot fail.
    bincode::serialize(record).expect("trace record serialization is infallible")
}

fn write_frame(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(bytes).to_le_bytes())?;
    out.write_all(bytes)
}

/// Writes a trace: header first, then events, then `finish` writes the end marker.
pub struct TraceWriter<W: Write> {
    out: W,
    digest: TraceDigest,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(mut out: W, header: &TraceHeader) -> std::io::Result<Self> {
        out.write_all(TRACE_MAGIC)?;
        out.write_all(&TRACE_FORMAT_VERSION.to_le_bytes())?;
        let json = serde_json::to_vec(header).map_err(std::io::Error::other)?;
        write_frame(&mut out, &json)?;
        Ok(TraceWriter {
            out,
            digest: TraceDigest::default(),
        })
    }

    pub fn write_event<M: Message>(&mut self, event: &TraceEvent<M>) -> std::io::Result<()> {
        let bytes = self.digest.add(event);
        write_frame(&mut self.out, &bytes)
    }

    pub fn digest(&self) -> &TraceDigest {
        &self.digest
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Writes the end marker and flushes; returns the writer's sink.
    pub fn finish<M: Message>(mut self) -> std::io::Result<W> {
        let end: TraceRecord<M> = TraceRecord::End {
            events: self.digest.events,
            trace_hash: self.digest.hash(),
        };
        write_frame(&mut self.out, &encode_record(&end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a trace, checking magic, version and every record's checksum.
pub struct TraceReader<R: Read, M> {
    input: R,
    pub header: TraceHeader,
    records_read: u64,
    _m: std::marker::PhantomData<M>,
}

/// What the reader found next.
#[derive(Debug)]
pub enum ReadOutcome<M> {
    Record(TraceRecord<M>),
    /// The file stops at a record boundary or inside a record, without an end marker.
    Truncated,
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one frame: `Ok(None)` at a clean or torn end of file.
fn read_frame(input: &mut impl Read, what: &str) -> Result<Option<Vec<u8>>, TraceError> {
    let mut head = [0u8; 8];
    let got = read_full(input, &mut head)?;
    if got < head.len() {
        return Ok(None);
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > TRACE_RECORD_MAX_BYTES {
        return Err(TraceError::Corrupt(format!(
            "{what} claims {len} bytes (limit {TRACE_RECORD_MAX_BYTES})"
        )));
    }
    let mut body = vec![0u8; len as usize];
    if read_full(input, &mut body)? < body.len() {
        return Ok(None);
    }
    if crc32fast::hash(&body) != crc {
        return Err(TraceError::Corrupt(format!("{what} fails its checksum")));
    }
    Ok(Some(body))
}

impl<R: Read, M: Message> TraceReader<R, M> {
    pub fn open(mut input: R) -> Result<Self, TraceError> {
        let mut magic = [0u8; 8];
        if read_full(&mut input, &mut magic)? < 8 || &magic != TRACE_MAGIC {
            return Err(TraceError::BadMagic);
        }
        let mut version = [0u8; 4];
        if read_full(&mut input, &mut version)? < 4 {
            return Err(TraceError::Corrupt(
                "file ends inside the version field".into(),
            ));
        }
        let found = u32::from_le_bytes(version);
        if found > TRACE_FORMAT_VERSION {
            return Err(TraceError::TooNew {
                found,
                supported: TRACE_FORMAT_VERSION,
            });
        }
        if found == 0 {
            return Err(TraceError::Corrupt(
                "format version 0 does not exist".into(),
            ));
        }
        let header_bytes = read_frame(&mut input, "header")?
            .ok_or_else(|| TraceError::Corrupt("file ends inside the header".into()))?;
        let header: TraceHeader = serde_json::from_slice(&header_bytes)
            .map_err(|e| TraceError::Corrupt(format!("header is not valid JSON: {e}")))?;
        Ok(TraceReader {
            input,
            header,
            records_read: 0,
            _m: std::marker::PhantomData,
        })
    }

    /// The next record, or `Truncated` when the file stops without an end marker.
    /// Returns the raw bytes too, so callers can recompute the hash.
    pub fn next_record(&mut self) -> Result<(ReadOutcome<M>, Vec<u8>), TraceError> {
        let what = format!("record {}", self.records_read + 1);
        let Some(bytes) = read_frame(&mut self.input, &what)? else {
            return Ok((ReadOutcome::Truncated, Vec::new()));
        };
        let record: TraceRecord<M> = bincode::deserialize(&bytes)
            .map_err(|e| TraceError::Corrupt(format!("{what} does not decode: {e}")))?;
        self.records_read += 1;
        Ok((ReadOutcome::Record(record), bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_event(n: u64) -> TraceEvent<String> {
        TraceEvent {
            actor: Address::new("n1", "selftest", 0),
            time: Time(n),
            input: RecordedInput::Message {
                from: Address::new("n2", "selftest", 0),
                msg: format!("m{n}"),
            },
            effects: vec![Effect::Sync],
        }
    }

    fn header() -> TraceHeader {
        TraceHeader {
            format_version: TRACE_FORMAT_VERSION,
            host: "sim".into(),
            seed: 7,
            config: serde_json::json!({}),
            created_by: "test".into(),
        }
    }

    fn write_trace(events: u64) -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
        for n in 0..events {
            w.write_event(&sample_event(n)).unwrap();
        }
        w.finish::<String>().unwrap()
    }

    /// A written trace reads back record for record, ending with its end marker.
    #[test]
    fn trace_round_trips() {
        let bytes = write_trace(3);
        let mut r = TraceReader::<_, String>::open(&bytes[..]).unwrap();
        assert_eq!(r.header.seed, 7);
        for n in 0..3 {
            match r.next_record().unwrap().0 {
                ReadOutcome::Record(TraceRecord::Event(e)) => assert_eq!(e, sample_event(n)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(matches!(
            r.next_record().unwrap().0,
            ReadOutcome::Record(TraceRecord::End { events: 3, .. })
        ));
    }

    /// A flipped byte is caught by the checksum; a newer version and bad magic are named.
    #[test]
    fn corrupt_and_foreign_traces_are_rejected() {
        let mut bytes = write_trace(2);
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        let mut r = TraceReader::<_, String>::open(&bytes[..]).unwrap();
        let mut saw_corrupt = false;
        for _ in 0..4 {
            if let Err(TraceError::Corrupt(_)) = r.next_record() {
                saw_corrupt = true;
                break;
            }
        }
        assert!(saw_corrupt);

        let mut newer = write_trace(1);
        newer[8..12].copy_from_slice(&99u32.to_le_bytes());
        assert!(matches!(
            TraceReader::<_, String>::open(&newer[..]),
            Err(TraceError::TooNew { found: 99, .. })
        ));
        assert!(matches!(
            TraceReader::<_, String>::open(&b"hello world, not a trace"[..]),
            Err(TraceError::BadMagic)
        ));
    }

    /// A file cut inside a record reads as truncated, not as corrupt.
    #[test]
    fn cut_trace_reads_as_truncated() {
        let bytes = write_trace(2);
        let cut = &bytes[..bytes.len() - 5];
        let mut r = TraceReader::<_, String>::open(cut).unwrap();
        let mut outcomes = Vec::new();
        loop {
            match r.next_record().unwrap().0 {
                ReadOutcome::Truncated => break,
                ReadOutcome::Record(rec) => outcomes.push(rec),
            }
        }
        assert_eq!(outcomes.len(), 2);
    }
}
