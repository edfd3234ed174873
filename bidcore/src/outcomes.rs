//! Bid outcomes as Python values: `Accepted`, `Rejected`, `BatchResult`.

use bidcore_rules::{Outcome, Reason};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(module = "bidcore", frozen)]
#[derive(Clone)]
pub struct Accepted(pub bidcore_rules::Accepted);

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
    #[getter]
    fn is_proxy(&self) -> bool {
        self.0.is_proxy
    }
    /// The leader's proxy answer placed right after this bid, if any.
    #[getter]
    fn answer(&self) -> Option<Accepted> {
        self.0.answer.as_deref().cloned().map(Accepted)
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn end_time_ms(&self) -> i64 {
        self.0.end_time
    }
    #[getter]
    fn extended(&self) -> bool {
        self.0.extended
    }
    #[getter]
    fn min_next_bid_kobo(&self) -> i64 {
        self.0.min_next_bid
    }
    #[getter]
    fn bid_count(&self) -> u32 {
        self.0.bid_count
    }
    #[getter]
    fn bidder_count(&self) -> u32 {
        self.0.bidder_count
    }
    #[getter]
    fn bidder_number(&self) -> u32 {
        self.0.bidder_number
    }
    #[getter]
    fn deposit_kobo(&self) -> i64 {
        self.0.deposit
    }
    /// This row's hash in the bid log: the chain's head after it (32 bytes).
    #[getter]
    fn hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.hash)
    }
    #[getter]
    fn previous_leader(&self) -> Option<u32> {
        self.0.previous.map(|lead| lead.user)
    }
    #[getter]
    fn previous_amount_kobo(&self) -> Option<i64> {
        self.0.previous.map(|lead| lead.amount)
    }
    #[getter]
    fn previous_was_platform(&self) -> bool {
        self.0.previous.is_some_and(|lead| lead.platform)
    }
    fn __repr__(&self) -> String {
        let a = &self.0;
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
        self.0.bids.iter().cloned().map(Accepted).collect()
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
        self.0.bids.iter().cloned().map(Accepted).collect()
    }
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

pub fn outcome_to_py(py: Python<'_>, outcome: &Outcome) -> PyResult<Py<PyAny>> {
    Ok(match outcome {
        Outcome::Accepted(a) => Bound::new(py, Accepted(a.clone()))?.into_any().unbind(),
        Outcome::Rejected(r) => Bound::new(py, Rejected(*r))?.into_any().unbind(),
    })
}

/// Outcomes of a batch, in the batch's order.
#[pyclass(module = "bidcore", frozen)]
pub struct BatchResult {
    pub outcomes: Vec<Outcome>,
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
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Accepted(a) => Some(Accepted(a.clone())),
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
        outcome_to_py(py, &self.outcomes[at as usize])
    }
}

// Keep the byte codes and REASON_CODES in step.
const _: () = assert!(Reason::InsufficientBuyingPower as u8 == 9);
