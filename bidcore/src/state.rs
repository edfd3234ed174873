//! Read-only copies of state: `AuctionState`, `UserState`, `Closed`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(module = "bidcore", frozen)]
pub struct AuctionState(pub bidcore_rules::AuctionState);

#[pymethods]
impl AuctionState {
    #[getter]
    fn handle(&self) -> u32 {
        self.0.handle
    }
    #[getter]
    fn auction_id(&self) -> u128 {
        self.0.spec.id
    }
    #[getter]
    fn status(&self) -> &'static str {
        self.0.status.as_str()
    }
    #[getter]
    fn sellers(&self) -> Vec<u128> {
        self.0.spec.sellers.clone()
    }
    #[getter]
    fn start_time_ms(&self) -> i64 {
        self.0.spec.start_time
    }
    #[getter]
    fn end_time_ms(&self) -> i64 {
        self.0.end_time
    }
    #[getter]
    fn original_end_ms(&self) -> i64 {
        self.0.original_end
    }
    #[getter]
    fn start_price_kobo(&self) -> i64 {
        self.0.spec.start_price
    }
    #[getter]
    fn bid_increment_kobo(&self) -> i64 {
        self.0.spec.increment
    }
    #[getter]
    fn reserve_price_kobo(&self) -> Option<i64> {
        self.0.spec.reserve
    }
    #[getter]
    fn deposit_pct_bp(&self) -> u32 {
        self.0.spec.deposit_bp
    }
    #[getter]
    fn anti_snipe_window_ms(&self) -> i64 {
        self.0.spec.snipe_window
    }
    #[getter]
    fn anti_snipe_extension_ms(&self) -> i64 {
        self.0.spec.snipe_extension
    }
    #[getter]
    fn current_price_kobo(&self) -> Option<i64> {
        self.0.lead.map(|lead| lead.amount)
    }
    #[getter]
    fn min_next_bid_kobo(&self) -> i64 {
        self.0.min_next_bid
    }
    #[getter]
    fn leader(&self) -> Option<u32> {
        self.0.lead.map(|lead| lead.user)
    }
    #[getter]
    fn leader_is_platform(&self) -> bool {
        self.0.lead.is_some_and(|lead| lead.platform)
    }
    /// The leader's active maximum (None: none, or a platform lead).
    #[getter]
    fn leader_max_kobo(&self) -> Option<i64> {
        self.0.lead.and_then(|lead| lead.max)
    }
    /// A scheduled auction's pre-bids, (user, max) in the order they were set.
    #[getter]
    fn prebids(&self) -> Vec<(u32, i64)> {
        self.0.prebids.iter().map(|p| (p.user, p.max)).collect()
    }
    #[getter]
    fn bid_count(&self) -> u32 {
        self.0.bid_count
    }
    #[getter]
    fn bidder_count(&self) -> usize {
        self.0.bidders.len()
    }
    #[getter]
    fn platform_bid_count(&self) -> u32 {
        self.0.platform_bid_count
    }
    #[getter]
    fn bidders(&self) -> Vec<u32> {
        self.0.bidders.clone()
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    /// The bid log's head: the last bid's hash, the auction's genesis before any.
    #[getter]
    fn log_head<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.log_head)
    }
    fn __repr__(&self) -> String {
        format!(
            "AuctionState(handle={}, status='{}', current_price_kobo={}, bid_count={}, seq={})",
            self.0.handle,
            self.0.status.as_str(),
            self.0
                .lead
                .map_or_else(|| "None".to_string(), |l| l.amount.to_string()),
            self.0.bid_count,
            self.0.seq
        )
    }
}

#[pyclass(module = "bidcore", frozen)]
pub struct UserState(pub bidcore_rules::UserState);

#[pymethods]
impl UserState {
    #[getter]
    fn handle(&self) -> u32 {
        self.0.handle
    }
    #[getter]
    fn user_id(&self) -> u128 {
        self.0.id
    }
    #[getter]
    fn balance_kobo(&self) -> i64 {
        self.0.balance
    }
    #[getter]
    fn eligible(&self) -> bool {
        self.0.eligible
    }
    #[getter]
    fn exposure_kobo(&self) -> i64 {
        self.0.exposure
    }
    fn __repr__(&self) -> String {
        format!(
            "UserState(handle={}, balance_kobo={}, eligible={}, exposure_kobo={})",
            self.0.handle,
            self.0.balance,
            if self.0.eligible { "True" } else { "False" },
            self.0.exposure
        )
    }
}

#[pyclass(module = "bidcore", frozen)]
pub struct Closed(pub bidcore_rules::Closed);

#[pymethods]
impl Closed {
    #[getter]
    fn auction(&self) -> u32 {
        self.0.auction
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn leader(&self) -> Option<u32> {
        self.0.lead.map(|lead| lead.user)
    }
    #[getter]
    fn leading_amount_kobo(&self) -> Option<i64> {
        self.0.lead.map(|lead| lead.amount)
    }
    #[getter]
    fn leader_is_platform(&self) -> bool {
        self.0.lead.is_some_and(|lead| lead.platform)
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
    fn platform_bid_count(&self) -> u32 {
        self.0.platform_bid_count
    }
    #[getter]
    fn end_time_ms(&self) -> i64 {
        self.0.end_time
    }
}
