//! The network-namespace tests (`crates/dci/tests/nat.rs`, the harness in
//! `crates/dci/tests/common/netns.rs`): `ip` (iproute2) makes namespaces,
//! veth pairs and a bridge; `iptables` masquerades behind the NAT router.
//! Installed from Debian's packages when missing.

use std::process::Command;

fn works(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success())
}

/// `ip` and `iptables` run, or are installed.
pub fn ensure() -> Result<(), String> {
    if works("ip", "-V") && works("iptables", "--version") {
        return Ok(());
    }
    crate::apt::install(&["iproute2", "iptables"], "the NAT test builds network namespaces with ip and iptables")?;
    if works("ip", "-V") && works("iptables", "--version") {
        Ok(())
    } else {
        Err("ip or iptables still does not run after installing iproute2 and iptables".into())
    }
}
