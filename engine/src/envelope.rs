//! The versioned envelope every bus message travels in.

use crate::address::Address;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt::Debug;

/// Version of the envelope and of the message vocabulary inside it. A host refuses
/// envelopes of another version (over TCP the handshake refuses the whole connection).
pub const WIRE_VERSION: u16 = 1;

/// What a bus message must be: a serde type (bincode on the wire, bytes in the
/// simulator), comparable so that replay can check outputs.
pub trait Message:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static
{
}
impl<T> Message for T where
    T: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static
{
}

/// A message on its way from one actor to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<M> {
    pub version: u16,
    pub from: Address,
    pub to: Address,
    pub msg: M,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is not valid bincode: {0}")]
    Malformed(String),
    #[error("envelope version {found} is not the supported version {supported}")]
    Version { found: u16, supported: u16 },
    #[error("envelope of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl<M: Message> Envelope<M> {
    pub fn new(from: Address, to: Address, msg: M) -> Self {
        Envelope {
            version: WIRE_VERSION,
            from,
            to,
            msg,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing an in-memory value of our own types into a Vec cannot fail.
        bincode::serialize(self).expect("envelope serialization is infallible")
    }

    /// Decodes bytes from a peer, refusing anything over `limit` bytes, malformed or of
    /// another wire version.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, EnvelopeError> {
        if bytes.len() > limit {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        // Peek the version first so a newer peer gets a version error, not "malformed".
        if bytes.len() >= 2 {
            let found = u16::from_le_bytes([bytes[0], bytes[1]]);
            if found != WIRE_VERSION {
                return Err(EnvelopeError::Version {
                    found,
                    supported: WIRE_VERSION,
                });
            }
        }
        let options = bincode::DefaultOptions::new();
        use bincode::Options;
        options
            .with_fixint_encoding()
            .with_limit(limit as u64)
            .reject_trailing_bytes()
            .deserialize(bytes)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }
}
