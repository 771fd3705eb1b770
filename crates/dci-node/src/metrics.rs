//! The process-wide Prometheus recorder behind `/metrics` (R-UX5).

use std::sync::{Arc, OnceLock};

use dci_gateway::server::MetricsRender;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process and returns a renderer.
pub fn install() -> MetricsRender {
    let handle = HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone();
    Arc::new(move || handle.as_ref().map(|h| h.render()).unwrap_or_default())
}

/// Logs a gateway core's event and counts it.
pub fn gateway_event(e: &dci_gateway_core::Event) {
    use dci_gateway_core::Event;
    match e {
        Event::Placed { session, container, failovers } => {
            let name =
                if *failovers == 0 { "dci_gateway_sessions_started_total" } else { "dci_gateway_failovers_total" };
            metrics::counter!(name).increment(1);
            tracing::info!(session = %session.short(), container = %container.short(), failovers, "session serving");
        }
        Event::Moving { session, container, reason } => {
            tracing::warn!(session = %session.short(), container = %container.short(), %reason, "placement ended; moving the session")
        }
        Event::Ended { record } => {
            metrics::counter!("dci_gateway_sessions_settled_total").increment(1);
            tracing::info!(
                session = %record.id.short(),
                status = ?record.status,
                seconds = record.billed_seconds,
                charged = %record.charged.unwrap_or_default(),
                reason = record.end_reason.as_deref().unwrap_or(""),
                "session ended and settled"
            );
        }
        Event::Exhausted { session } => {
            metrics::counter!("dci_gateway_escrow_exhausted_total").increment(1);
            tracing::info!(session = %session.short(), "escrow used up; stopping the session");
        }
        Event::EpochDistributed { epoch, result: Ok(paid) } => {
            tracing::info!(epoch, released = %paid, "epoch rewards distributed")
        }
        Event::EpochDistributed { epoch, result: Err(why) } => {
            tracing::warn!(epoch, error = %why, "epoch rewards not distributed")
        }
        Event::Flushed { result: Ok(ops) } => tracing::info!(ops, "the epoch's settlement is on chain"),
        Event::Flushed { result: Err(why) } => tracing::warn!(error = %why, "the epoch's settlement stays queued"),
        Event::CommitteeSelected { epoch, members } => tracing::info!(epoch, members, "committee selected"),
        Event::NoCommittee { why } => tracing::warn!(%why, "no committee this epoch"),
        Event::CommitteePublished { epoch, result: Ok(()) } => tracing::info!(epoch, "committee on chain"),
        Event::CommitteePublished { epoch, result: Err(why) } => {
            tracing::warn!(epoch, %why, "committee not on chain; its slashes wait")
        }
        Event::Penalty { record } => tracing::info!(
            container = %record.container.short(),
            outcome = %record.outcome,
            taken = %record.taken,
            "penalty decided"
        ),
        Event::LedgerFailed { what, error } => tracing::error!(%what, %error, "ledger call failed"),
    }
}
