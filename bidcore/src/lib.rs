//! `bidcore`: the Python face of the bid core. This layer only converts
//! values and dispatches; the rules live in the `bidcore-rules` crate.

use pyo3::prelude::*;

mod args;
mod batch;
mod bidlog;
mod core;
mod errors;
mod outcomes;
mod state;

use bidcore_rules::{Reason, MAX_AMOUNT, MAX_SHARDS, MAX_TIME_MS};

#[pyfunction]
#[pyo3(signature = (amount_kobo, deposit_pct_bp))]
fn deposit(amount_kobo: i64, deposit_pct_bp: u32) -> PyResult<i64> {
    if !bidcore_rules::is_valid_amount(amount_kobo)
        || deposit_pct_bp > bidcore_rules::MAX_BASIS_POINTS
    {
        return Err(errors::InvalidArgument::new_err(format!(
            "deposit needs 0 < amount_kobo < {MAX_AMOUNT} and 0 <= deposit_pct_bp <= 10000"
        )));
    }
    Ok(bidcore_rules::deposit(amount_kobo, deposit_pct_bp))
}

#[pymodule]
fn bidcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let mut codes = vec!["accepted"];
    codes.extend(Reason::ALL.iter().map(|r| r.code()));
    m.add("REASON_CODES", pyo3::types::PyTuple::new(py, codes)?)?;
    m.add("MAX_AMOUNT_KOBO", MAX_AMOUNT)?;
    m.add("MAX_TIME_MS", MAX_TIME_MS)?;
    m.add("MAX_SHARDS", MAX_SHARDS)?;
    m.add_function(wrap_pyfunction!(deposit, m)?)?;
    errors::register(m)?;
    m.add_class::<core::Core>()?;
    m.add_class::<batch::BidBatch>()?;
    m.add_class::<bidlog::LogBatch>()?;
    m.add_class::<outcomes::Accepted>()?;
    m.add_class::<outcomes::Rejected>()?;
    m.add_class::<outcomes::BatchResult>()?;
    m.add_class::<outcomes::MaxSet>()?;
    m.add_class::<outcomes::Opened>()?;
    m.add_class::<state::Closed>()?;
    m.add_class::<state::AuctionState>()?;
    m.add_class::<state::UserState>()?;
    let public: Vec<&str> = vec![
        "__version__",
        "MAX_AMOUNT_KOBO",
        "MAX_SHARDS",
        "MAX_TIME_MS",
        "REASON_CODES",
        "Accepted",
        "AuctionState",
        "BatchResult",
        "BidBatch",
        "Closed",
        "Core",
        "CoreError",
        "DuplicateAuction",
        "InvalidArgument",
        "InvalidTransition",
        "LogBatch",
        "MaxSet",
        "Opened",
        "Rejected",
        "UnknownAuction",
        "UnknownUser",
        "UserState",
        "deposit",
    ];
    m.add("__all__", public)?;
    Ok(())
}
