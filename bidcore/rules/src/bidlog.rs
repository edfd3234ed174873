//! The public bid log's hash chain (RULES.md "The public bid log").
//!
//! Canonical encoding, version 1 (engine/bidlog.py holds the same for the
//! verifier and documents the whole log; tests hold the two equal). Every
//! integer is fixed-width big-endian, amounts and times signed 64-bit:
//!
//! - genesis  = SHA-256(`D360gen\x01` ‖ auction id (16 bytes))
//! - bid hash = SHA-256(`D360bid\x01` ‖ auction id (16) ‖ seq (u64) ‖ bidder
//!   number (u32; 0 for a platform bid) ‖ amount kobo (i64) ‖ time ms (i64) ‖
//!   flags (u8: 1 platform, 2 proxy) ‖ the previous bid's hash, or genesis (32))
//!
//! The 8-byte tags name each preimage's kind and version, so no hash of one
//! kind can stand for another's. A bid's record is 85 bytes, two SHA-256
//! blocks: padded in place on the stack and compressed directly (sha2 picks
//! SHA-NI or the ARMv8 SHA2 instructions at run time), nothing allocated.

use sha2::digest::generic_array::{typenum::U64, GenericArray};

/// A SHA-256 digest: a bid's hash, a chain head.
pub type LogHash = [u8; 32];

const GENESIS_TAG: &[u8; 8] = b"D360gen\x01";
const BID_TAG: &[u8; 8] = b"D360bid\x01";

pub const FLAG_PLATFORM: u8 = 1;
pub const FLAG_PROXY: u8 = 2;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

type Block = GenericArray<u8, U64>;

/// What a bid puts in the log besides its auction and its predecessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    /// "Bidder n" in this auction; 0 for a platform bid.
    pub number: u32,
    pub amount: i64,
    pub at: i64,
    pub platform: bool,
    pub proxy: bool,
}

/// The chain's start for an auction: what its first bid's hash chains on.
pub fn genesis(auction: u128) -> LogHash {
    const LEN: usize = 8 + 16;
    let mut block = Block::default();
    block[..8].copy_from_slice(GENESIS_TAG);
    block[8..LEN].copy_from_slice(&auction.to_be_bytes());
    pad(&mut block, LEN, LEN);
    digest(&[block])
}

/// One bid's hash, chained on `previous` (the auction's head before it).
#[inline]
pub fn bid_hash(auction: u128, entry: &LogEntry, previous: &LogHash) -> LogHash {
    // Bytes 0..64 in the first block, 64..85 in the second.
    const LEN: usize = 8 + 16 + 8 + 4 + 8 + 8 + 1 + 32;
    let flags = (if entry.platform { FLAG_PLATFORM } else { 0 })
        | (if entry.proxy { FLAG_PROXY } else { 0 });
    let mut blocks = [Block::default(), Block::default()];
    let [first, second] = &mut blocks;
    first[..8].copy_from_slice(BID_TAG);
    first[8..24].copy_from_slice(&auction.to_be_bytes());
    first[24..32].copy_from_slice(&entry.seq.to_be_bytes());
    first[32..36].copy_from_slice(&entry.number.to_be_bytes());
    first[36..44].copy_from_slice(&entry.amount.to_be_bytes());
    first[44..52].copy_from_slice(&entry.at.to_be_bytes());
    first[52] = flags;
    first[53..64].copy_from_slice(&previous[..11]);
    second[..21].copy_from_slice(&previous[11..]);
    pad(second, LEN - 64, LEN);
    digest(&blocks)
}

/// SHA-256 padding in the last block, whose message part is `used` bytes of a
/// `len`-byte message (the block is zeroed beyond `used`).
#[inline(always)]
fn pad(last: &mut Block, used: usize, len: usize) {
    debug_assert!(used + 9 <= 64);
    last[used] = 0x80;
    last[56..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
}

#[inline(always)]
fn digest(blocks: &[Block]) -> LogHash {
    let mut state = IV;
    sha2::compress256(&mut state, blocks);
    let mut digest = [0u8; 32];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn genesis_is_sha256_of_the_tag_and_the_id() {
        let id: u128 = 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10;
        let preimage = [GENESIS_TAG.as_slice(), &id.to_be_bytes()].concat();
        assert_eq!(genesis(id), <LogHash>::from(Sha256::digest(preimage)));
    }

    #[test]
    fn a_bid_hash_is_sha256_of_its_record() {
        let entry = LogEntry {
            seq: 0x0102_0304_0506_0708,
            number: 0x0a0b_0c0d,
            amount: 150_000,
            at: -1,
            platform: true,
            proxy: true,
        };
        let previous: LogHash = core::array::from_fn(|i| i as u8);
        let mut record = BID_TAG.to_vec();
        record.extend_from_slice(&7u128.to_be_bytes());
        record.extend_from_slice(&entry.seq.to_be_bytes());
        record.extend_from_slice(&entry.number.to_be_bytes());
        record.extend_from_slice(&entry.amount.to_be_bytes());
        record.extend_from_slice(&entry.at.to_be_bytes());
        record.push(3);
        record.extend_from_slice(&previous);
        assert_eq!(record.len(), 85);
        assert_eq!(
            bid_hash(7, &entry, &previous),
            <LogHash>::from(Sha256::digest(&record))
        );
    }

    #[test]
    fn every_field_of_a_bid_changes_its_hash() {
        let entry = LogEntry {
            seq: 7,
            number: 3,
            amount: 150_000,
            at: 1_700_000_000_000,
            platform: false,
            proxy: false,
        };
        let previous = [2u8; 32];
        let base = bid_hash(9, &entry, &previous);
        let changed = [
            bid_hash(10, &entry, &previous),
            bid_hash(9, &LogEntry { seq: 8, ..entry }, &previous),
            bid_hash(9, &LogEntry { number: 4, ..entry }, &previous),
            bid_hash(
                9,
                &LogEntry {
                    amount: 150_001,
                    ..entry
                },
                &previous,
            ),
            bid_hash(
                9,
                &LogEntry {
                    at: 1_700_000_000_001,
                    ..entry
                },
                &previous,
            ),
            bid_hash(
                9,
                &LogEntry {
                    platform: true,
                    ..entry
                },
                &previous,
            ),
            bid_hash(
                9,
                &LogEntry {
                    proxy: true,
                    ..entry
                },
                &previous,
            ),
            bid_hash(9, &entry, &[3u8; 32]),
        ];
        for other in changed {
            assert_ne!(other, base);
        }
    }
}
