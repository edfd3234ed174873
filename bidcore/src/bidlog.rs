//! `LogBatch`: bid log records as machine integers, hashed in one call.

use bidcore_rules::bidlog::{self, LogEntry};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::InvalidArgument;

#[pyclass(module = "bidcore", frozen)]
pub struct LogBatch {
    rows: Vec<(u128, LogEntry)>,
}

#[pymethods]
impl LogBatch {
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn from_columns(
        auction_ids: Vec<u128>,
        seqs: Vec<u64>,
        numbers: Vec<u32>,
        amounts_kobo: Vec<i64>,
        at_ms: Vec<i64>,
        platform: Vec<bool>,
        proxy: Vec<bool>,
    ) -> PyResult<Self> {
        let len = auction_ids.len();
        let lengths = [
            seqs.len(),
            numbers.len(),
            amounts_kobo.len(),
            at_ms.len(),
            platform.len(),
            proxy.len(),
        ];
        if lengths.iter().any(|&l| l != len) {
            return Err(PyValueError::new_err(
                "LogBatch.from_columns: columns differ in length",
            ));
        }
        let mut rows = Vec::with_capacity(len);
        for i in 0..len {
            let entry = LogEntry {
                seq: seqs[i],
                number: numbers[i],
                amount: amounts_kobo[i],
                at: at_ms[i],
                platform: platform[i],
                proxy: proxy[i],
            };
            if !entry.fits() {
                return Err(InvalidArgument::new_err(format!(
                    "row {i}: seq, amount or time outside the bid log's record"
                )));
            }
            rows.push((auction_ids[i], entry));
        }
        Ok(LogBatch { rows })
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// Each auction's head after the rows, chained from its genesis, with the
    /// interpreter detached: (auction id, head) in the order auctions first appear.
    fn heads<'py>(&self, py: Python<'py>) -> Vec<(u128, Bound<'py, PyBytes>)> {
        let rows = &self.rows;
        let heads = py.detach(|| bidlog::heads(rows));
        heads
            .into_iter()
            .map(|(auction, head)| (auction, PyBytes::new(py, &head)))
            .collect()
    }
}
