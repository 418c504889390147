//! What makes an envelope the cluster's own: an HMAC-SHA256 tag over the
//! channel and the body, with a key only the replicas hold.
//!
//! A broker is a shared bus: anything that reaches it can publish. Without
//! the tag, any such process could speak as a replica (post as any user,
//! close anyone's connections, read direct messages by subscribing). With
//! it, what a replica accepts was written by a replica: an envelope that
//! is too large, unsigned, signed with another key, altered on the way or
//! moved to another channel is dropped before it is parsed.
//!
//! A payload is the 32-byte tag followed by the body (JSON).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the tag in front of every payload.
const TAG: usize = 32;
/// Largest body a replica publishes or parses: under NATS's default 1 MiB
/// message limit, and far above one message of the largest text (a batch
/// of messages is split to fit, see `events::encode`).
pub const MAX_BODY: usize = 512 * 1024;
/// Shortest key taken from configuration, in bytes.
pub const MIN_KEY: usize = 32;

/// Why an inbound payload was dropped; the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than any replica sends: dropped before it is read.
    Size,
    /// No valid tag: not from a replica with this cluster's key.
    Signature,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Signature => "signature",
        }
    }
}

/// Signs and checks envelopes with the cluster key.
#[derive(Clone)]
pub struct Seal {
    keyed: Hmac<Sha256>,
}

impl Seal {
    pub fn new(key: &[u8]) -> Self {
        Self {
            keyed: Hmac::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    /// `body` as it travels on `channel`: tag, then body.
    pub fn sign(&self, channel: &str, body: &[u8]) -> Vec<u8> {
        let tag = self.mac(channel, body).finalize().into_bytes();
        let mut payload = Vec::with_capacity(TAG + body.len());
        payload.extend_from_slice(&tag);
        payload.extend_from_slice(body);
        payload
    }

    /// The body of `payload` received on `channel`, if a replica of this
    /// cluster sent it there unchanged. The tag is compared in constant
    /// time.
    pub fn open<'a>(&self, channel: &str, payload: &'a [u8]) -> Result<&'a [u8], Refusal> {
        if payload.len() > TAG + MAX_BODY {
            return Err(Refusal::Size);
        }
        if payload.len() < TAG {
            return Err(Refusal::Signature);
        }
        let (tag, body) = payload.split_at(TAG);
        self.mac(channel, body)
            .verify_slice(tag)
            .map_err(|_| Refusal::Signature)?;
        Ok(body)
    }

    /// The channel is signed too, so an envelope cannot be replayed on
    /// another channel (a room's message into a user's channel). A zero
    /// byte ends it: channels never hold one.
    fn mac(&self, channel: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(channel.as_bytes());
        mac.update(&[0]);
        mac.update(body);
        mac
    }
}

/// A new random cluster key, for a store to keep when none is configured.
pub fn generate_key() -> Vec<u8> {
    use rand::RngCore;
    let mut key = vec![0; MIN_KEY];
    rand::rng().fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"node":"a","event":{"kind":"typing"}}"#;

    #[test]
    fn a_signed_envelope_opens_on_its_channel() {
        let seal = Seal::new(b"0123456789abcdef0123456789abcdef");
        let payload = seal.sign("rookery.room.lobby", BODY);
        assert_eq!(seal.open("rookery.room.lobby", &payload), Ok(BODY));
    }

    #[test]
    fn anything_else_is_refused() {
        let seal = Seal::new(&generate_key());
        let payload = seal.sign("rookery.room.lobby", BODY);

        let other = Seal::new(&generate_key());
        assert_eq!(
            other.open("rookery.room.lobby", &payload),
            Err(Refusal::Signature),
            "another cluster's key"
        );
        assert_eq!(
            seal.open("rookery.user.alice", &payload),
            Err(Refusal::Signature),
            "moved to another channel"
        );
        for at in [0, TAG - 1, TAG, payload.len() - 1] {
            let mut altered = payload.clone();
            altered[at] ^= 1;
            assert_eq!(
                seal.open("rookery.room.lobby", &altered),
                Err(Refusal::Signature),
                "byte {at} altered"
            );
        }
        assert_eq!(
            seal.open("rookery.room.lobby", BODY),
            Err(Refusal::Signature)
        );
        assert_eq!(
            seal.open("rookery.room.lobby", b""),
            Err(Refusal::Signature)
        );
        let mut longer = payload.clone();
        longer.push(b' ');
        assert_eq!(
            seal.open("rookery.room.lobby", &longer),
            Err(Refusal::Signature)
        );
    }

    #[test]
    fn an_oversized_payload_is_refused_unread() {
        let seal = Seal::new(&generate_key());
        let body = vec![b' '; MAX_BODY];
        let payload = seal.sign("c", &body);
        assert!(
            seal.open("c", &payload).is_ok(),
            "the largest body is taken"
        );
        let body = vec![b' '; MAX_BODY + 1];
        let payload = seal.sign("c", &body);
        assert_eq!(seal.open("c", &payload), Err(Refusal::Size));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(generate_key(), generate_key());
        assert_eq!(generate_key().len(), MIN_KEY);
    }
}
