//! `Core`: the Python class around the rules' `Core`.

use bidcore_rules::{AuctionSpec, BidRequest, PreBid, Restore};
use pyo3::prelude::*;

use crate::args::{self, Ranged};
use crate::batch::BidBatch;
use crate::errors::PyCoreError;
use crate::outcomes::{max_outcome_to_py, outcome_to_py, BatchResult, Opened};
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
    pool: Option<u32>,
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
        pool,
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
    fn upsert_user(
        &mut self,
        user_id: Ranged<u128>,
        balance_kobo: Ranged<i64>,
        eligible: bool,
    ) -> CoreResult<u32> {
        Ok(self.0.upsert_user(user_id.0, balance_kobo.0, eligible)?)
    }

    fn user_handle(&self, user_id: u128) -> Option<u32> {
        self.0.user_handle(user_id)
    }

    fn set_balance(&mut self, user: &Bound<'_, PyAny>, balance_kobo: Ranged<i64>) -> PyResult<()> {
        let handle = args::handle(user)?;
        Ok(self
            .0
            .set_balance(handle, balance_kobo.0)
            .map_err(PyCoreError::from)?)
    }

    fn set_eligible(&mut self, user: &Bound<'_, PyAny>, eligible: bool) -> PyResult<()> {
        Ok(self
            .0
            .set_eligible(args::handle(user)?, eligible)
            .map_err(PyCoreError::from)?)
    }

    /// Sets what `pool` may commit of the user's balance (several nodes: the
    /// allowance of the partition). An auction added with a `pool` weighs its
    /// bidders' buying power against that pool's allowance and exposure only.
    fn set_allowance(
        &mut self,
        user: &Bound<'_, PyAny>,
        pool: Ranged<u32>,
        allowance_kobo: Ranged<i64>,
    ) -> PyResult<()> {
        let handle = args::handle(user)?;
        Ok(self
            .0
            .set_allowance(handle, pool.0, allowance_kobo.0)
            .map_err(PyCoreError::from)?)
    }

    /// (allowance, exposure) of the user in `pool`; (0, 0) for none.
    fn allowance(&self, user: &Bound<'_, PyAny>, pool: Ranged<u32>) -> PyResult<(i64, i64)> {
        Ok(self
            .0
            .allowance(args::handle(user)?, pool.0)
            .map_err(PyCoreError::from)?)
    }

    /// Forgets every user's allowance in `pool` (call once its auctions are gone).
    fn close_pool(&mut self, pool: Ranged<u32>) {
        self.0.close_pool(pool.0);
    }

    /// What the auction adds to the user's exposure now (a lead's deposit, a
    /// leading pre-bid's).
    fn exposed_here(&self, auction: &Bound<'_, PyAny>, user: &Bound<'_, PyAny>) -> PyResult<i64> {
        Ok(self
            .0
            .exposed_here(args::handle(auction)?, args::handle(user)?)
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
        reserve_price_kobo=None, deposit_pct_bp=Ranged(2000), anti_snipe_window_ms=Ranged(120_000),
        anti_snipe_extension_ms=Ranged(120_000), sellers=None, live=false, pool=None
    ), text_signature = "(self, /, auction_id, *, start_time_ms, end_time_ms, start_price_kobo, \
        bid_increment_kobo, reserve_price_kobo=None, deposit_pct_bp=2000, \
        anti_snipe_window_ms=120000, anti_snipe_extension_ms=120000, sellers=None, live=False, \
        pool=None)")]
    #[allow(clippy::too_many_arguments)]
    fn add_auction(
        &mut self,
        auction_id: Ranged<u128>,
        start_time_ms: Ranged<i64>,
        end_time_ms: Ranged<i64>,
        start_price_kobo: Ranged<i64>,
        bid_increment_kobo: Ranged<i64>,
        reserve_price_kobo: Option<Ranged<i64>>,
        deposit_pct_bp: Ranged<u32>,
        anti_snipe_window_ms: Ranged<i64>,
        anti_snipe_extension_ms: Ranged<i64>,
        sellers: Option<Vec<Ranged<u128>>>,
        live: bool,
        pool: Option<Ranged<u32>>,
    ) -> CoreResult<u32> {
        let spec = spec(
            auction_id.0,
            start_time_ms.0,
            end_time_ms.0,
            start_price_kobo.0,
            bid_increment_kobo.0,
            reserve_price_kobo.map(|r| r.0),
            deposit_pct_bp.0,
            anti_snipe_window_ms.0,
            anti_snipe_extension_ms.0,
            sellers
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.0)
                .collect(),
            pool.map(|p| p.0),
        );
        Ok(self.0.add_auction(spec, live)?)
    }

    #[pyo3(signature = (
        auction_id, *, start_time_ms, end_time_ms, original_end_ms, start_price_kobo,
        bid_increment_kobo, reserve_price_kobo, deposit_pct_bp, anti_snipe_window_ms,
        anti_snipe_extension_ms, sellers, live, leader, leading_amount_kobo,
        leader_is_platform, bidders, bid_count, platform_bid_count, seq, ended=false,
        leader_max_kobo=None, prebids=Vec::new(), pool=None, log_head=None
    ), text_signature = "(self, /, auction_id, *, start_time_ms, end_time_ms, original_end_ms, \
        start_price_kobo, bid_increment_kobo, reserve_price_kobo, deposit_pct_bp, \
        anti_snipe_window_ms, anti_snipe_extension_ms, sellers, live, leader, \
        leading_amount_kobo, leader_is_platform, bidders, bid_count, platform_bid_count, seq, \
        ended=False, leader_max_kobo=None, prebids=(), pool=None, log_head=None)")]
    #[allow(clippy::too_many_arguments)]
    fn restore_auction(
        &mut self,
        auction_id: Ranged<u128>,
        start_time_ms: Ranged<i64>,
        end_time_ms: Ranged<i64>,
        original_end_ms: Ranged<i64>,
        start_price_kobo: Ranged<i64>,
        bid_increment_kobo: Ranged<i64>,
        reserve_price_kobo: Option<Ranged<i64>>,
        deposit_pct_bp: Ranged<u32>,
        anti_snipe_window_ms: Ranged<i64>,
        anti_snipe_extension_ms: Ranged<i64>,
        sellers: Vec<Ranged<u128>>,
        live: bool,
        leader: Option<Ranged<u32>>,
        leading_amount_kobo: Option<Ranged<i64>>,
        leader_is_platform: bool,
        bidders: Vec<Ranged<u32>>,
        bid_count: Ranged<u32>,
        platform_bid_count: Ranged<u32>,
        seq: Ranged<u64>,
        ended: bool,
        leader_max_kobo: Option<Ranged<i64>>,
        prebids: Vec<(Ranged<u32>, Ranged<i64>)>,
        pool: Option<Ranged<u32>>,
        log_head: Option<&[u8]>,
    ) -> PyResult<u32> {
        let leader = match (leader, leading_amount_kobo) {
            (Some(user), Some(amount)) => Some((user.0, amount.0, leader_is_platform)),
            (None, None) => None,
            _ => {
                return Err(crate::errors::InvalidArgument::new_err(
                    "restore: leader and leading_amount_kobo go together",
                ))
            }
        };
        let spec = spec(
            auction_id.0,
            start_time_ms.0,
            end_time_ms.0,
            start_price_kobo.0,
            bid_increment_kobo.0,
            reserve_price_kobo.map(|r| r.0),
            deposit_pct_bp.0,
            anti_snipe_window_ms.0,
            anti_snipe_extension_ms.0,
            sellers.into_iter().map(|s| s.0).collect(),
            pool.map(|p| p.0),
        );
        let restore = Restore {
            live,
            ended,
            end_time: end_time_ms.0,
            original_end: original_end_ms.0,
            leader,
            leader_max: leader_max_kobo.map(|m| m.0),
            prebids: prebids
                .into_iter()
                .map(|(user, max)| PreBid {
                    user: user.0,
                    max: max.0,
                })
                .collect(),
            bidders: bidders.into_iter().map(|b| b.0).collect(),
            bid_count: bid_count.0,
            platform_bid_count: platform_bid_count.0,
            seq: seq.0,
            log_head: args::log_hash("log_head", log_head)?,
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

    fn open_auction(&mut self, auction: &Bound<'_, PyAny>, now_ms: i64) -> PyResult<Opened> {
        Ok(Opened(
            self.0
                .open_auction(args::handle(auction)?, now_ms)
                .map_err(PyCoreError::from)?,
        ))
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

    fn extend_auction(
        &mut self,
        auction: &Bound<'_, PyAny>,
        end_time_ms: Ranged<i64>,
    ) -> PyResult<u64> {
        let handle = args::handle(auction)?;
        Ok(self
            .0
            .extend_auction(handle, end_time_ms.0)
            .map_err(PyCoreError::from)?)
    }

    fn remove_auction(&mut self, auction: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(self
            .0
            .remove_auction(args::handle(auction)?)
            .map_err(PyCoreError::from)?)
    }

    /// Lets an auction go whatever its status (its partition moved to another
    /// node), releasing what it exposed.
    fn evict_auction(&mut self, auction: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(self
            .0
            .evict_auction(args::handle(auction)?)
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
        let mut log = Vec::new();
        let outcome = self.0.place_bid(&bid, &mut log);
        outcome_to_py(py, &outcome, &log)
    }

    /// Sets or raises a maximum (a pre-bid on a scheduled auction).
    fn set_max(
        &mut self,
        py: Python<'_>,
        auction: &Bound<'_, PyAny>,
        user: &Bound<'_, PyAny>,
        max_kobo: &Bound<'_, PyAny>,
        now_ms: i64,
    ) -> PyResult<Py<PyAny>> {
        let outcome = self.0.set_max(
            args::handle(auction)?,
            args::handle(user)?,
            args::amount(max_kobo)?,
            now_ms,
        );
        max_outcome_to_py(py, outcome)
    }

    /// Decides a batch with the interpreter detached.
    fn place_batch(&mut self, py: Python<'_>, batch: PyRef<'_, BidBatch>) -> BatchResult {
        let bids: &[BidRequest] = &batch.bids;
        let core = &mut self.0;
        let (outcomes, log) = py.detach(|| {
            let mut log = Vec::with_capacity(bids.len());
            (core.place_batch(bids, &mut log), log)
        });
        BatchResult::new(outcomes, log)
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
