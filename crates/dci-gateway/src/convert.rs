//! From the gateway core's domain values to the public API's JSON bodies
//! and status codes: one place where a record becomes what a consumer sees.

use std::collections::HashMap;

use dci_gateway_core::{CommitteeView, GatewayError, SessionRecord, Status};
use dci_ledger::LedgerError;
use dci_proto::{ContainerView, OfferView};

use crate::api::{
    ApiError, CandidateInfo, CommitteeInfo, ContainerInfo, OfferInfo, PenaltyInfo, SegmentInfo, SessionInfo,
    SessionStatus, TransitionInfo, VerdictInfo, ath,
};

impl From<Status> for SessionStatus {
    fn from(s: Status) -> SessionStatus {
        match s {
            Status::Starting => SessionStatus::Starting,
            Status::Running => SessionStatus::Running,
            Status::Recovering => SessionStatus::Recovering,
            Status::Stopped => SessionStatus::Stopped,
            Status::Interrupted => SessionStatus::Interrupted,
        }
    }
}

impl From<&SessionRecord> for SessionInfo {
    fn from(r: &SessionRecord) -> SessionInfo {
        let p = &r.placement;
        let host = p.host.as_ref();
        SessionInfo {
            id: r.id.to_string(),
            service: r.service.to_string(),
            container: host.map(|h| h.container.to_string()).unwrap_or_default(),
            endpoint: r.endpoint().unwrap_or_default(),
            price_ath_per_hour: host.map(|h| ath(h.price.0)).unwrap_or_default(),
            estimated_rtt_ms: host.and_then(|h| h.estimated_rtt_ms),
            indexer: host.and_then(|h| h.indexer).map(|i| i.to_string()),
            status: r.status.into(),
            started_at_ms: r.started_at.unwrap_or(r.created_at).0,
            ended_at_ms: r.ended_at.map(|t| t.0),
            escrow_ath: ath(r.budget),
            billed_seconds: r.billed_seconds,
            charged_ath: r.charged.filter(|_| r.status.is_terminal()).map(ath),
            refunded_ath: r.refunded().filter(|_| r.status.is_terminal()).map(ath),
            requests: r.requests,
            tokens: r.tokens,
            token_price_ath_per_1k: r.token_price.map(ath),
            token_charged_ath: r.token_charged.filter(|_| r.status.is_terminal()).map(ath),
            openai_path: r.token_price.map(|_| format!("/openai/{}/v1", r.id)),
            view_path: (r.service.as_str() == "render").then(|| format!("/view/{}", r.id)),
            placed_at_ms: p.serving_since.or(r.started_at).unwrap_or(r.created_at).0,
            ended_because: r.end_reason.clone(),
            segments: r
                .segments
                .iter()
                .map(|g| SegmentInfo {
                    container: g.container.to_string(),
                    started_at_ms: g.started_at.0,
                    ended_at_ms: g.ended_at.0,
                    billed_seconds: g.billed_seconds,
                    charged_ath: ath(g.charged),
                    ended_because: g.reason.clone(),
                })
                .collect(),
        }
    }
}

impl From<&OfferView> for OfferInfo {
    fn from(o: &OfferView) -> OfferInfo {
        let gpu = o.spec.gpu.as_ref();
        OfferInfo {
            id: o.id.to_string(),
            state: o.state.to_string(),
            gpu_model: gpu.map(|g| g.model.clone()),
            gpu_count: gpu.map_or(0, |g| g.count),
            vram_gib: gpu.map_or(0, |g| g.vram_gib),
            gpu_simulated: gpu.is_some_and(|g| g.simulated),
            cpu_cores: o.spec.cpu_cores,
            ram_gib: o.spec.ram_gib,
            location: (o.spec.location.lat(), o.spec.location.lon()),
            services: o.services.iter().map(|s| s.to_string()).collect(),
            price_ath_per_hour: ath(o.price.0),
            free_slots: o.free_slots,
            slots: o.slots,
            reputation: o.reputation,
            estimated_rtt_ms: o.estimated_rtt_ms,
        }
    }
}

impl From<ContainerView> for ContainerInfo {
    fn from(v: ContainerView) -> ContainerInfo {
        let gpu = v.spec.gpu.as_ref();
        ContainerInfo {
            id: v.id.to_string(),
            state: v.state.to_string(),
            gpu_model: gpu.map(|g| g.model.clone()),
            gpu_count: gpu.map_or(0, |g| g.count),
            vram_gib: gpu.map_or(0, |g| g.vram_gib),
            gpu_simulated: gpu.is_some_and(|g| g.simulated),
            cpu_cores: v.spec.cpu_cores,
            ram_gib: v.spec.ram_gib,
            disk_gib: v.spec.disk_gib,
            location: (v.spec.location.lat(), v.spec.location.lon()),
            services: v.services.iter().map(|s| s.to_string()).collect(),
            warm: v.warm.iter().map(|s| s.to_string()).collect(),
            price_ath_per_hour: ath(v.price.0),
            slots: v.slots,
            reserved: v.reserved,
            reputation: v.reputation,
            last_heartbeat_ago_ms: v.last_heartbeat_ago_ms,
            verified_class: v.verified.as_ref().map(|c| c.class.clone()),
            verified_units: v.verified.as_ref().map(|c| c.units),
            transitions: v
                .transitions
                .into_iter()
                .map(|t| TransitionInfo {
                    from: t.from.to_string(),
                    to: t.to.to_string(),
                    actor: format!("{:?}", t.actor).to_lowercase(),
                    reason: t.reason,
                    at_ms: t.at.0,
                })
                .collect(),
            verdicts: v
                .verdicts
                .into_iter()
                .map(|r| VerdictInfo {
                    at_ms: r.at.0,
                    checker: r.checker.to_string(),
                    kind: r.kind.as_str().to_owned(),
                    passed: r.passed,
                    reason: r.reason,
                    compute_ms: r.compute_ms,
                })
                .collect(),
        }
    }
}

impl From<CommitteeView> for CommitteeInfo {
    fn from(c: CommitteeView) -> CommitteeInfo {
        CommitteeInfo {
            epoch: c.epoch,
            seed: hex::encode(c.seed),
            size: c.size as u32,
            quorum: c.quorum as u32,
            members: c.members.iter().map(|m| m.to_string()).collect(),
            candidates: c
                .candidates
                .into_iter()
                .map(|x| CandidateInfo {
                    id: x.id.to_string(),
                    stake: ath(x.stake),
                    selected_before: x.selected_before,
                    member: x.member,
                    weight: x.weight,
                })
                .collect(),
            announcement: hex::encode(c.announcement),
            penalties: c
                .penalties
                .into_iter()
                .map(|p| PenaltyInfo {
                    at_ms: p.at.0,
                    container: p.container.to_string(),
                    epoch: p.epoch,
                    evidence_hash: hex::encode(p.evidence_hash),
                    reporter: p.reporter.to_string(),
                    signers: p.signers.iter().map(|s| s.to_string()).collect(),
                    quorum: p.quorum as u32,
                    asked: ath(p.asked),
                    taken: ath(p.taken),
                    outcome: p.outcome,
                })
                .collect(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        let e = e.unbatch();
        match e {
            LedgerError::InsufficientFunds { .. } | LedgerError::InsufficientStake { .. } => {
                ApiError::insufficient_funds(e.to_string())
            }
            LedgerError::NothingToWithdraw { .. } | LedgerError::NoPendingRewards(_) => {
                ApiError::new(409, "nothing_to_withdraw", e.to_string())
            }
            LedgerError::InvalidAmount { .. }
            | LedgerError::InvalidInput(_)
            | LedgerError::ZeroAmount
            | LedgerError::SameAccount(_)
            | LedgerError::Amount(_) => ApiError::bad_request(e.to_string()),
            LedgerError::UnknownAccount(_) | LedgerError::EpochNotDistributed(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let message = e.to_string();
        match e {
            GatewayError::BadRequest(_) => ApiError::bad_request(message),
            GatewayError::NoMatch(el) => {
                let details = serde_json::json!({
                    "considered": el.considered,
                    "eliminated_by": el
                        .by_criterion
                        .iter()
                        .map(|(c, n)| (format!("{c:?}").to_lowercase(), *n))
                        .collect::<HashMap<_, _>>(),
                });
                ApiError::new(409, "no_match", message).with_details(details)
            }
            GatewayError::Ledger(l) => l.into(),
            GatewayError::NoSession(_) | GatewayError::NotOffered(_) | GatewayError::NotFound(_) => {
                ApiError::not_found(message)
            }
            GatewayError::NotRunning { .. } | GatewayError::Stopping(_) => ApiError::new(409, "not_running", message),
            GatewayError::Recovering(_) => ApiError::new(409, "recovering", message),
            GatewayError::Unavailable(_) => ApiError::unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_model::{Amount, Eliminations, SessionId};

    #[test]
    fn domain_errors_map_to_stable_codes() {
        let check = |e: GatewayError, status: u16, code: &str| {
            let api = ApiError::from(e);
            assert_eq!((api.status, api.body.code.as_str()), (status, code), "{}", api.body.message);
        };
        let s = SessionId([1; 16]);
        check(GatewayError::BadRequest("hours".into()), 400, "bad_request");
        check(GatewayError::NoMatch(Eliminations::default()), 409, "no_match");
        let poor = LedgerError::InsufficientFunds {
            account: dci_model::AccountId::new("consumer:a").unwrap(),
            need: Amount(2),
            have: Amount(1),
        };
        check(GatewayError::Ledger(poor), 402, "insufficient_funds");
        check(GatewayError::NoSession(s), 404, "not_found");
        check(GatewayError::NotRunning { session: s, status: Status::Stopped }, 409, "not_running");
        check(GatewayError::Recovering(s), 409, "recovering");
        check(GatewayError::Unavailable("no answer".into()), 503, "unavailable");
    }
}
