//! The gateway's relay for container hosts behind NAT (R-SC3, `dci-relay`),
//! started with the gateway when its node.toml has a `[relay]` table. The
//! gateway holds the ledger, so it is the relay's admission check: a host is
//! admitted only with the container stake the indexer asks at registration
//! (`Params::min_container_stake`) bonded from its own account.

use std::sync::Arc;

use dci_ledger::{Settlement, StakeRole};
use dci_model::{AccountId, NodeId};
use tokio_util::sync::CancellationToken;

use crate::config::RelaySection;
use crate::gateway::GatewayNode;

/// Admits a node with at least the governance minimum of container stake
/// bonded from `node:<id>`, read from the gateway's ledger at each hello.
pub struct StakeAdmission(pub Arc<GatewayNode>);

impl dci_relay::Admission for StakeAdmission {
    async fn admit(&self, node: NodeId) -> Result<(), String> {
        let account = AccountId::for_node(&node);
        let read = self.0.with_ledger(|l| {
            let bonded = Settlement::staked(l, &account, StakeRole::Container)?;
            Ok::<_, dci_ledger::LedgerError>((bonded, Settlement::params(l)?.min_container_stake))
        });
        match read {
            Ok((bonded, minimum)) if bonded >= minimum => Ok(()),
            Ok((bonded, minimum)) => Err(format!(
                "expected a container stake of at least {minimum} ATH bonded by {account}, found {bonded} ATH; bond it with `dci container stake` on the host"
            )),
            Err(e) => Err(format!("the gateway cannot read its ledger now ({e}); try again")),
        }
    }
}

/// Starts the relay of `section` with the gateway's key (hosts check the
/// relay's welcome against the gateway's id in their network file).
pub async fn start(
    section: &RelaySection,
    identity: dci_proto::Identity,
    node: Arc<GatewayNode>,
    shutdown: CancellationToken,
) -> anyhow::Result<dci_relay::RelayHandle> {
    let config = section.relay_config()?;
    let listen = config.listen.clone();
    dci_relay::serve(identity, config, StakeAdmission(node), shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("binding the relay on {listen}: {e}"))
}
