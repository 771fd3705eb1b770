//! The wall clock, read only at the edge and passed to the cores as `now`.

use dci_model::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as milliseconds since the Unix epoch.
pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}
