//! `BidBatch`: bids in arrival order, as machine integers.

use bidcore_rules::BidRequest;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::args;

#[pyclass(module = "bidcore")]
#[derive(Default)]
pub struct BidBatch {
    pub bids: Vec<BidRequest>,
}

#[pymethods]
impl BidBatch {
    #[new]
    fn new() -> Self {
        BidBatch::default()
    }

    #[staticmethod]
    #[pyo3(signature = (auctions, users, amounts_kobo, at_ms, platform=None))]
    fn from_columns(
        auctions: &Bound<'_, PyAny>,
        users: &Bound<'_, PyAny>,
        amounts_kobo: &Bound<'_, PyAny>,
        at_ms: &Bound<'_, PyAny>,
        platform: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let len = auctions.len()?;
        let lengths = [users.len()?, amounts_kobo.len()?, at_ms.len()?];
        let platform_len = platform.map(|p| p.len()).transpose()?;
        if lengths.iter().chain(platform_len.iter()).any(|&l| l != len) {
            return Err(PyValueError::new_err(
                "BidBatch.from_columns: columns differ in length",
            ));
        }
        let mut bids = Vec::with_capacity(len);
        let mut flags = platform.map(|p| p.try_iter()).transpose()?;
        for (((auction, user), amount), at) in auctions
            .try_iter()?
            .zip(users.try_iter()?)
            .zip(amounts_kobo.try_iter()?)
            .zip(at_ms.try_iter()?)
        {
            let platform = match flags.as_mut().and_then(Iterator::next) {
                Some(flag) => flag?.extract::<bool>()?,
                None => false,
            };
            bids.push(BidRequest {
                auction: args::handle(&auction?)?,
                user: args::handle(&user?)?,
                amount: args::amount(&amount?)?,
                at: at?.extract::<i64>()?,
                platform,
            });
        }
        Ok(BidBatch { bids })
    }

    #[pyo3(signature = (auction, user, amount_kobo, at_ms, platform=false))]
    fn append(
        &mut self,
        auction: &Bound<'_, PyAny>,
        user: &Bound<'_, PyAny>,
        amount_kobo: &Bound<'_, PyAny>,
        at_ms: i64,
        platform: bool,
    ) -> PyResult<()> {
        self.bids.push(BidRequest {
            auction: args::handle(auction)?,
            user: args::handle(user)?,
            amount: args::amount(amount_kobo)?,
            at: at_ms,
            platform,
        });
        Ok(())
    }

    fn clear(&mut self) {
        self.bids.clear();
    }

    fn __len__(&self) -> usize {
        self.bids.len()
    }
}
