//! The public bid log's hash chain (RULES.md "The public bid log").
//!
//! Canonical encoding, version 1 (engine/bidlog.py holds the same for the
//! verifier and documents the whole log; tests hold the two equal). Integers
//! are fixed-width, unsigned and big-endian:
//!
//! - genesis  = SHA-256(`D360gen\x01` ‖ auction id (16 bytes))
//! - bid hash = SHA-256(header ‖ record), 119 bytes, where
//!   header = `D360bid\x01` ‖ auction id (16) ‖ 40 zero bytes, and
//!   record = seq (5) ‖ bidder number (4; 0 for a platform bid) ‖ amount kobo
//!   (7) ‖ time ms (6) ‖ flags (1: 1 platform, 2 proxy) ‖ the previous bid's
//!   hash, or genesis (32)
//!
//! The 8-byte tags name each preimage's kind and version, so no hash of one
//! kind can stand for another's. The widths hold every value the core accepts
//! (amounts below 10^15 < 2^56, times up to 9999-12-31 < 2^48, seqs below
//! 2^40) and keep a record, with the previous hash and SHA-256's padding, in
//! one 64-byte block. The header, the same for every bid of an auction, fills
//! the block before it: SHA-256's state after it is computed once per auction
//! (`header_state`), so a bid costs one compression of a block padded on the
//! stack (sha2 picks SHA-NI or the ARMv8 SHA2 instructions at run time), with
//! nothing allocated.

use rustc_hash::FxHashMap;
use sha2::digest::generic_array::{typenum::U64, GenericArray};

/// A SHA-256 digest: a bid's hash, a chain head.
pub type LogHash = [u8; 32];

/// SHA-256's state after an auction's header block.
pub type HeaderState = [u32; 8];

const GENESIS_TAG: &[u8; 8] = b"D360gen\x01";
const BID_TAG: &[u8; 8] = b"D360bid\x01";

pub const FLAG_PLATFORM: u8 = 1;
pub const FLAG_PROXY: u8 = 2;
/// Seqs, amounts and times the record can hold (5, 7 and 6 bytes).
pub const SEQ_LIMIT: u64 = 1 << 40;
pub const AMOUNT_LIMIT: i64 = 1 << 56;
pub const TIME_LIMIT: i64 = 1 << 48;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const RECORD_LEN: usize = 5 + 4 + 7 + 6 + 1 + 32;

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

impl LogEntry {
    /// Every value within the record's widths (every row the core places is).
    pub fn fits(&self) -> bool {
        self.seq < SEQ_LIMIT
            && (0..AMOUNT_LIMIT).contains(&self.amount)
            && (0..TIME_LIMIT).contains(&self.at)
    }
}

/// Each auction's head after `rows`, in their order, every chain from its
/// genesis: the hashing that placing those rows does, and nothing else.
pub fn heads(rows: &[(u128, LogEntry)]) -> Vec<(u128, LogHash)> {
    let mut chains: FxHashMap<u128, (HeaderState, LogHash)> = FxHashMap::default();
    let mut order = Vec::new();
    for (auction, entry) in rows {
        let (header, head) = chains.entry(*auction).or_insert_with(|| {
            order.push(*auction);
            (header_state(*auction), genesis(*auction))
        });
        *head = bid_hash(header, entry, head);
    }
    order
        .into_iter()
        .map(|auction| (auction, chains[&auction].1))
        .collect()
}

/// The chain's start for an auction: what its first bid's hash chains on.
pub fn genesis(auction: u128) -> LogHash {
    const LEN: usize = 8 + 16;
    let mut block = Block::default();
    block[..8].copy_from_slice(GENESIS_TAG);
    block[8..LEN].copy_from_slice(&auction.to_be_bytes());
    pad(&mut block, LEN, LEN);
    let mut state = IV;
    sha2::compress256(&mut state, &[block]);
    to_bytes(state)
}

/// SHA-256's state after `auction`'s header block, the first block of every
/// one of its bids' preimages.
pub fn header_state(auction: u128) -> HeaderState {
    let mut header = Block::default();
    header[..8].copy_from_slice(BID_TAG);
    header[8..24].copy_from_slice(&auction.to_be_bytes());
    let mut state = IV;
    sha2::compress256(&mut state, &[header]);
    state
}

/// One bid's hash, chained on `previous` (the auction's head before it), from
/// its auction's `header_state`. The core keeps `entry`'s values within the
/// record's widths (debug builds check).
#[inline]
pub fn bid_hash(header: &HeaderState, entry: &LogEntry, previous: &LogHash) -> LogHash {
    debug_assert!(entry.fits());
    let flags = (if entry.platform { FLAG_PLATFORM } else { 0 })
        | (if entry.proxy { FLAG_PROXY } else { 0 });
    let mut block = Block::default();
    block[..5].copy_from_slice(&entry.seq.to_be_bytes()[3..]);
    block[5..9].copy_from_slice(&entry.number.to_be_bytes());
    block[9..16].copy_from_slice(&entry.amount.to_be_bytes()[1..]);
    block[16..22].copy_from_slice(&entry.at.to_be_bytes()[2..]);
    block[22] = flags;
    block[23..RECORD_LEN].copy_from_slice(previous);
    pad(&mut block, RECORD_LEN, 64 + RECORD_LEN);
    let mut state = *header;
    sha2::compress256(&mut state, &[block]);
    to_bytes(state)
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
fn to_bytes(state: [u32; 8]) -> LogHash {
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
    fn a_bid_hash_is_sha256_of_the_header_and_the_record() {
        let entry = LogEntry {
            seq: 0x01_0203_0405,
            number: 0x0a0b_0c0d,
            amount: 0x11_2233_4455_6677,
            at: 0x8899_aabb_ccdd,
            platform: true,
            proxy: true,
        };
        let previous: LogHash = core::array::from_fn(|i| i as u8);
        let mut preimage = BID_TAG.to_vec();
        preimage.extend_from_slice(&7u128.to_be_bytes());
        preimage.extend_from_slice(&[0; 40]);
        preimage.extend_from_slice(&[1, 2, 3, 4, 5, 0x0a, 0x0b, 0x0c, 0x0d]);
        preimage.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
        preimage.extend_from_slice(&[0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 3]);
        preimage.extend_from_slice(&previous);
        assert_eq!(preimage.len(), 119);
        assert_eq!(
            bid_hash(&header_state(7), &entry, &previous),
            <LogHash>::from(Sha256::digest(&preimage))
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
        let (header, previous) = (header_state(9), [2u8; 32]);
        let base = bid_hash(&header, &entry, &previous);
        let changed = [
            bid_hash(&header_state(10), &entry, &previous),
            bid_hash(&header, &LogEntry { seq: 8, ..entry }, &previous),
            bid_hash(&header, &LogEntry { number: 4, ..entry }, &previous),
            bid_hash(
                &header,
                &LogEntry {
                    amount: 150_001,
                    ..entry
                },
                &previous,
            ),
            bid_hash(
                &header,
                &LogEntry {
                    at: 1_700_000_000_001,
                    ..entry
                },
                &previous,
            ),
            bid_hash(
                &header,
                &LogEntry {
                    platform: true,
                    ..entry
                },
                &previous,
            ),
            bid_hash(
                &header,
                &LogEntry {
                    proxy: true,
                    ..entry
                },
                &previous,
            ),
            bid_hash(&header, &entry, &[3u8; 32]),
        ];
        for other in changed {
            assert_ne!(other, base);
        }
    }
}
