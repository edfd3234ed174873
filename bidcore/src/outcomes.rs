//! Bid outcomes as Python values: `Accepted`, `Rejected`, `BatchResult`.

use std::sync::OnceLock;

use bidcore_rules::bidlog::LogHash;
use bidcore_rules::{Outcome, Reason};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// An accepted bid row with its hash in the bid log, and its answer's.
#[pyclass(module = "bidcore", frozen)]
#[derive(Clone)]
pub struct Accepted {
    row: bidcore_rules::Accepted,
    hash: LogHash,
    /// The answer's hash (zeros when the row has no answer).
    answer_hash: LogHash,
}

impl Accepted {
    /// `row` with its hashes from the front of `hashes`: the row's, then its
    /// answer's (the order the core logs them in).
    pub fn new(row: bidcore_rules::Accepted, hashes: &[LogHash]) -> Self {
        let answer_hash = if row.answer.is_some() {
            hashes[1]
        } else {
            [0; 32]
        };
        Accepted {
            row,
            hash: hashes[0],
            answer_hash,
        }
    }
}

/// Bid rows an outcome placed: none, the bid's, or the bid's and its answer's.
fn rows_of(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Accepted(a) => 1 + usize::from(a.answer.is_some()),
        Outcome::Rejected(_) => 0,
    }
}

#[pymethods]
impl Accepted {
    #[getter]
    fn accepted(&self) -> bool {
        true
    }
    #[getter]
    fn code(&self) -> &'static str {
        "accepted"
    }
    #[getter]
    fn auction(&self) -> u32 {
        self.row.bid.auction
    }
    #[getter]
    fn user(&self) -> u32 {
        self.row.bid.user
    }
    #[getter]
    fn amount_kobo(&self) -> i64 {
        self.row.bid.amount
    }
    #[getter]
    fn at_ms(&self) -> i64 {
        self.row.bid.at
    }
    #[getter]
    fn is_platform(&self) -> bool {
        self.row.bid.platform
    }
    #[getter]
    fn is_proxy(&self) -> bool {
        self.row.is_proxy
    }
    /// The leader's proxy answer placed right after this bid, if any.
    #[getter]
    fn answer(&self) -> Option<Accepted> {
        self.row.answer.as_deref().map(|answer| Accepted {
            row: answer.clone(),
            hash: self.answer_hash,
            answer_hash: [0; 32],
        })
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.row.seq
    }
    #[getter]
    fn end_time_ms(&self) -> i64 {
        self.row.end_time
    }
    #[getter]
    fn extended(&self) -> bool {
        self.row.extended
    }
    #[getter]
    fn min_next_bid_kobo(&self) -> i64 {
        self.row.min_next_bid
    }
    #[getter]
    fn bid_count(&self) -> u32 {
        self.row.bid_count
    }
    #[getter]
    fn bidder_count(&self) -> u32 {
        self.row.bidder_count
    }
    #[getter]
    fn bidder_number(&self) -> u32 {
        self.row.bidder_number
    }
    #[getter]
    fn deposit_kobo(&self) -> i64 {
        self.row.deposit
    }
    /// This row's hash in the bid log: the chain's head after it (32 bytes).
    #[getter]
    fn hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.hash)
    }
    #[getter]
    fn previous_leader(&self) -> Option<u32> {
        self.row.previous.map(|lead| lead.user)
    }
    #[getter]
    fn previous_amount_kobo(&self) -> Option<i64> {
        self.row.previous.map(|lead| lead.amount)
    }
    #[getter]
    fn previous_was_platform(&self) -> bool {
        self.row.previous.is_some_and(|lead| lead.platform)
    }
    fn __repr__(&self) -> String {
        let a = &self.row;
        format!(
            "Accepted(auction={}, user={}, amount_kobo={}, seq={}, end_time_ms={}, extended={}, \
             is_proxy={}, answered={})",
            a.bid.auction,
            a.bid.user,
            a.bid.amount,
            a.seq,
            a.end_time,
            if a.extended { "True" } else { "False" },
            if a.is_proxy { "True" } else { "False" },
            if a.answer.is_some() { "True" } else { "False" }
        )
    }
}

#[pyclass(module = "bidcore", frozen)]
#[derive(Clone)]
pub struct Rejected(pub bidcore_rules::Rejected);

#[pymethods]
impl Rejected {
    #[getter]
    fn accepted(&self) -> bool {
        false
    }
    #[getter]
    fn code(&self) -> &'static str {
        self.0.reason.code()
    }
    #[getter]
    fn auction(&self) -> u32 {
        self.0.bid.auction
    }
    #[getter]
    fn user(&self) -> u32 {
        self.0.bid.user
    }
    #[getter]
    fn amount_kobo(&self) -> i64 {
        self.0.bid.amount
    }
    #[getter]
    fn at_ms(&self) -> i64 {
        self.0.bid.at
    }
    #[getter]
    fn is_platform(&self) -> bool {
        self.0.bid.platform
    }
    fn __repr__(&self) -> String {
        let r = &self.0;
        format!(
            "Rejected(code='{}', auction={}, user={}, amount_kobo={})",
            r.reason.code(),
            r.bid.auction,
            r.bid.user,
            r.bid.amount
        )
    }
}

/// A maximum set or raised (`MaxSet`), and the bid rows it placed.
#[pyclass(module = "bidcore", frozen)]
pub struct MaxSet(pub bidcore_rules::MaxSet);

#[pymethods]
impl MaxSet {
    #[getter]
    fn accepted(&self) -> bool {
        true
    }
    #[getter]
    fn code(&self) -> &'static str {
        "accepted"
    }
    #[getter]
    fn auction(&self) -> u32 {
        self.0.auction
    }
    #[getter]
    fn user(&self) -> u32 {
        self.0.user
    }
    #[getter]
    fn max_kobo(&self) -> i64 {
        self.0.max
    }
    #[getter]
    fn leading(&self) -> bool {
        self.0.leading
    }
    #[getter]
    fn price_kobo(&self) -> i64 {
        self.0.price
    }
    #[getter]
    fn bids(&self) -> Vec<Accepted> {
        rows(&self.0.bids, &self.0.hashes)
    }
    fn __repr__(&self) -> String {
        let m = &self.0;
        format!(
            "MaxSet(auction={}, user={}, max_kobo={}, leading={}, price_kobo={}, bids={})",
            m.auction,
            m.user,
            m.max,
            if m.leading { "True" } else { "False" },
            m.price,
            m.bids.len()
        )
    }
}

/// An auction opened: the state change's seq and the bid rows its pre-bids placed.
#[pyclass(module = "bidcore", frozen)]
pub struct Opened(pub bidcore_rules::Opened);

#[pymethods]
impl Opened {
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn bids(&self) -> Vec<Accepted> {
        rows(&self.0.bids, &self.0.hashes)
    }
}

/// Rows a maximum or an opening placed (answers are rows of their own there).
fn rows(bids: &[bidcore_rules::Accepted], hashes: &[LogHash]) -> Vec<Accepted> {
    bids.iter()
        .zip(hashes)
        .map(|(row, hash)| Accepted::new(row.clone(), std::slice::from_ref(hash)))
        .collect()
}

pub fn max_outcome_to_py(
    py: Python<'_>,
    outcome: bidcore_rules::MaxOutcome,
) -> PyResult<Py<PyAny>> {
    Ok(match outcome {
        bidcore_rules::MaxOutcome::Set(set) => Bound::new(py, MaxSet(set))?.into_any().unbind(),
        bidcore_rules::MaxOutcome::Rejected(r) => Bound::new(py, Rejected(r))?.into_any().unbind(),
    })
}

/// `outcome` as a Python value; `hashes` starts with its rows' hashes.
pub fn outcome_to_py(py: Python<'_>, outcome: &Outcome, hashes: &[LogHash]) -> PyResult<Py<PyAny>> {
    Ok(match outcome {
        Outcome::Accepted(a) => Bound::new(py, Accepted::new(a.clone(), hashes))?
            .into_any()
            .unbind(),
        Outcome::Rejected(r) => Bound::new(py, Rejected(*r))?.into_any().unbind(),
    })
}

/// Outcomes of a batch, in the batch's order.
#[pyclass(module = "bidcore", frozen)]
pub struct BatchResult {
    outcomes: Vec<Outcome>,
    /// The accepted outcomes' rows' hashes, in the outcomes' order.
    hashes: Vec<LogHash>,
    /// Where each outcome's hashes start in `hashes`, made on first lookup.
    first_row: OnceLock<Vec<u32>>,
}

impl BatchResult {
    pub fn new(outcomes: Vec<Outcome>, hashes: Vec<LogHash>) -> Self {
        BatchResult {
            outcomes,
            hashes,
            first_row: OnceLock::new(),
        }
    }

    fn first_row(&self, index: usize) -> usize {
        let starts = self.first_row.get_or_init(|| {
            let mut at = 0u32;
            self.outcomes
                .iter()
                .map(|outcome| {
                    let start = at;
                    at += rows_of(outcome) as u32;
                    start
                })
                .collect()
        });
        starts[index] as usize
    }
}

#[pymethods]
impl BatchResult {
    #[getter]
    fn accepted_count(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_accepted()).count()
    }

    /// One byte per bid: 0 accepted, else the index of its reason in REASON_CODES.
    fn codes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let codes: Vec<u8> = self.outcomes.iter().map(Outcome::code_byte).collect();
        PyBytes::new(py, &codes)
    }

    fn accepted(&self) -> Vec<Accepted> {
        let mut at = 0;
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Accepted(a) => {
                    let row = Accepted::new(a.clone(), &self.hashes[at..]);
                    at += rows_of(o);
                    Some(row)
                }
                Outcome::Rejected(_) => None,
            })
            .collect()
    }

    fn __len__(&self) -> usize {
        self.outcomes.len()
    }

    fn __getitem__(&self, py: Python<'_>, index: isize) -> PyResult<Py<PyAny>> {
        let len = self.outcomes.len() as isize;
        let at = if index < 0 { index + len } else { index };
        if !(0..len).contains(&at) {
            return Err(PyIndexError::new_err("batch result index out of range"));
        }
        let at = at as usize;
        outcome_to_py(py, &self.outcomes[at], &self.hashes[self.first_row(at)..])
    }
}

// Keep the byte codes and REASON_CODES in step.
const _: () = assert!(Reason::InsufficientBuyingPower as u8 == 9);
