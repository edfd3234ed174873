//! `Core`: the Python class around the rules' `Core`.

use bidcore_rules::{AuctionSpec, BidRequest, Restore};
use pyo3::prelude::*;

use crate::args;
use crate::batch::BidBatch;
use crate::errors::PyCoreError;
use crate::outcomes::{outcome_to_py, BatchResult};
use crate::state::{AuctionState, Closed, UserState};

#[pyclass(module = "bidcore")]
pub struct Core(bidcore_rules::Core);

type CoreResult<T> = Result<T, PyCoreError>;

#[allow(clippy::too_many_arguments)]
fn spec(
    auction_id: u128,
    start_time_ms: i64,
    end_time_ms: i64,
    start_price_kobo: i64,
    bid_increment_kobo: i64,
    reserve_price_kobo: Option<i64>,
    deposit_pct_bp: u32,
    anti_snipe_window_ms: i64,
    anti_snipe_extension_ms: i64,
    sellers: Vec<u128>,
) -> AuctionSpec {
    AuctionSpec {
        id: auction_id,
        sellers,
        start_time: start_time_ms,
        end_time: end_time_ms,
        start_price: start_price_kobo,
        increment: bid_increment_kobo,
        reserve: reserve_price_kobo,
        deposit_bp: deposit_pct_bp,
        snipe_window: anti_snipe_window_ms,
        snipe_extension: anti_snipe_extension_ms,
    }
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (shards=8, parallel_min_batch=4096))]
    fn new(shards: usize, parallel_min_batch: usize) -> CoreResult<Self> {
        Ok(Core(bidcore_rules::Core::new(shards, parallel_min_batch)?))
    }

    #[getter]
    fn shard_count(&self) -> usize {
        self.0.shard_count()
    }

    #[getter]
    fn auction_count(&self) -> usize {
        self.0.auction_count()
    }

    #[getter]
    fn user_count(&self) -> usize {
        self.0.user_count()
    }

    // ---- users -------------------------------------------------------------

    #[pyo3(signature = (user_id, *, balance_kobo, eligible))]
    fn upsert_user(&mut self, user_id: u128, balance_kobo: i64, eligible: bool) -> CoreResult<u32> {
        Ok(self.0.upsert_user(user_id, balance_kobo, eligible)?)
    }

    fn user_handle(&self, user_id: u128) -> Option<u32> {
        self.0.user_handle(user_id)
    }

    fn set_balance(&mut self, user: &Bound<'_, PyAny>, balance_kobo: i64) -> PyResult<()> {
        Ok(self
            .0
            .set_balance(args::handle(user)?, balance_kobo)
            .map_err(PyCoreError::from)?)
    }

    fn set_eligible(&mut self, user: &Bound<'_, PyAny>, eligible: bool) -> PyResult<()> {
        Ok(self
            .0
            .set_eligible(args::handle(user)?, eligible)
            .map_err(PyCoreError::from)?)
    }

    fn user(&self, user: &Bound<'_, PyAny>) -> PyResult<UserState> {
        Ok(UserState(
            self.0
                .user(args::handle(user)?)
                .map_err(PyCoreError::from)?,
        ))
    }

    // ---- auctions ----------------------------------------------------------

    #[pyo3(signature = (
        auction_id, *, start_time_ms, end_time_ms, start_price_kobo, bid_increment_kobo,
        reserve_price_kobo=None, deposit_pct_bp=2000, anti_snipe_window_ms=120_000,
        anti_snipe_extension_ms=120_000, sellers=None, live=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn add_auction(
        &mut self,
        auction_id: u128,
        start_time_ms: i64,
        end_time_ms: i64,
        start_price_kobo: i64,
        bid_increment_kobo: i64,
        reserve_price_kobo: Option<i64>,
        deposit_pct_bp: u32,
        anti_snipe_window_ms: i64,
        anti_snipe_extension_ms: i64,
        sellers: Option<Vec<u128>>,
        live: bool,
    ) -> CoreResult<u32> {
        let spec = spec(
            auction_id,
            start_time_ms,
            end_time_ms,
            start_price_kobo,
            bid_increment_kobo,
            reserve_price_kobo,
            deposit_pct_bp,
            anti_snipe_window_ms,
            anti_snipe_extension_ms,
            sellers.unwrap_or_default(),
        );
        Ok(self.0.add_auction(spec, live)?)
    }

    #[pyo3(signature = (
        auction_id, *, start_time_ms, end_time_ms, original_end_ms, start_price_kobo,
        bid_increment_kobo, reserve_price_kobo, deposit_pct_bp, anti_snipe_window_ms,
        anti_snipe_extension_ms, sellers, live, leader, leading_amount_kobo,
        leader_is_platform, bidders, bid_count, platform_bid_count, seq
    ))]
    #[allow(clippy::too_many_arguments)]
    fn restore_auction(
        &mut self,
        auction_id: u128,
        start_time_ms: i64,
        end_time_ms: i64,
        original_end_ms: i64,
        start_price_kobo: i64,
        bid_increment_kobo: i64,
        reserve_price_kobo: Option<i64>,
        deposit_pct_bp: u32,
        anti_snipe_window_ms: i64,
        anti_snipe_extension_ms: i64,
        sellers: Vec<u128>,
        live: bool,
        leader: Option<u32>,
        leading_amount_kobo: Option<i64>,
        leader_is_platform: bool,
        bidders: Vec<u32>,
        bid_count: u32,
        platform_bid_count: u32,
        seq: u64,
    ) -> PyResult<u32> {
        let leader = match (leader, leading_amount_kobo) {
            (Some(user), Some(amount)) => Some((user, amount, leader_is_platform)),
            (None, None) => None,
            _ => {
                return Err(crate::errors::InvalidArgument::new_err(
                    "restore: leader and leading_amount_kobo go together",
                ))
            }
        };
        let spec = spec(
            auction_id,
            start_time_ms,
            end_time_ms,
            start_price_kobo,
            bid_increment_kobo,
            reserve_price_kobo,
            deposit_pct_bp,
            anti_snipe_window_ms,
            anti_snipe_extension_ms,
            sellers,
        );
        let restore = Restore {
            live,
            end_time: end_time_ms,
            original_end: original_end_ms,
            leader,
            bidders,
            bid_count,
            platform_bid_count,
            seq,
        };
        Ok(self
            .0
            .restore_auction(spec, restore)
            .map_err(PyCoreError::from)?)
    }

    fn auction_handle(&self, auction_id: u128) -> Option<u32> {
        self.0.auction_handle(auction_id)
    }

    fn auction(&self, auction: &Bound<'_, PyAny>) -> PyResult<AuctionState> {
        Ok(AuctionState(
            self.0
                .auction(args::handle(auction)?)
                .map_err(PyCoreError::from)?,
        ))
    }

    fn status_counts(&self) -> std::collections::HashMap<&'static str, usize> {
        self.0
            .status_counts()
            .iter()
            .map(|(status, n)| (status.as_str(), *n))
            .collect()
    }

    fn auction_handles(&self) -> Vec<u32> {
        self.0.auction_handles()
    }

    fn open_auction(&mut self, auction: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self
            .0
            .open_auction(args::handle(auction)?)
            .map_err(PyCoreError::from)?)
    }

    fn close_auction(&mut self, auction: &Bound<'_, PyAny>) -> PyResult<Closed> {
        Ok(Closed(
            self.0
                .close_auction(args::handle(auction)?)
                .map_err(PyCoreError::from)?,
        ))
    }

    fn cancel_auction(&mut self, auction: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self
            .0
            .cancel_auction(args::handle(auction)?)
            .map_err(PyCoreError::from)?)
    }

    fn extend_auction(&mut self, auction: &Bound<'_, PyAny>, end_time_ms: i64) -> PyResult<u64> {
        Ok(self
            .0
            .extend_auction(args::handle(auction)?, end_time_ms)
            .map_err(PyCoreError::from)?)
    }

    fn remove_auction(&mut self, auction: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(self
            .0
            .remove_auction(args::handle(auction)?)
            .map_err(PyCoreError::from)?)
    }

    // ---- bids --------------------------------------------------------------

    #[pyo3(signature = (auction, user, amount_kobo, now_ms, platform=false))]
    fn place_bid(
        &mut self,
        py: Python<'_>,
        auction: &Bound<'_, PyAny>,
        user: &Bound<'_, PyAny>,
        amount_kobo: &Bound<'_, PyAny>,
        now_ms: i64,
        platform: bool,
    ) -> PyResult<Py<PyAny>> {
        let bid = BidRequest {
            auction: args::handle(auction)?,
            user: args::handle(user)?,
            amount: args::amount(amount_kobo)?,
            at: now_ms,
            platform,
        };
        outcome_to_py(py, &self.0.place_bid(&bid))
    }

    /// Decides a batch with the interpreter detached.
    fn place_batch(&mut self, py: Python<'_>, batch: PyRef<'_, BidBatch>) -> BatchResult {
        let bids: &[BidRequest] = &batch.bids;
        let core = &mut self.0;
        let outcomes = py.detach(|| core.place_batch(bids));
        BatchResult { outcomes }
    }

    /// (to open, to close): scheduled auctions whose start has come, live ones whose end has.
    fn due(&self, now_ms: i64) -> (Vec<u32>, Vec<u32>) {
        self.0.due(now_ms)
    }

    fn reserve_protection(&self, now_ms: i64) -> Vec<(u32, i64)> {
        self.0.reserve_protection(now_ms)
    }

    fn __repr__(&self) -> String {
        format!(
            "Core(shards={}, auctions={}, users={})",
            self.0.shard_count(),
            self.0.auction_count(),
            self.0.user_count()
        )
    }
}
