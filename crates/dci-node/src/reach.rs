//! How other machines reach a host's services (R-SC3): the runtime glue
//! between the workload runtime and the agent core.
//!
//! A runtime starts every service on `127.0.0.1:<port>` and reports that
//! URL. [`Exposed`] wraps it and turns the URL into one others can dial
//! before the agent core sees it (so sessions, warm instances and checkers'
//! evaluation instances alike):
//! - [`Reach::Local`]: the host listens on loopback or every interface
//!   (the devnet): the URL as it is;
//! - [`Reach::Direct`]: the host listens on one address other machines
//!   reach: a forwarder on `<that address>:<free port>` to the service's
//!   local port, `http://<address>:<port>`;
//! - [`Reach::Relay`]: the host is behind NAT: a public port of the
//!   gateway's relay that forwards over the host's tunnel to the service's
//!   local port, `http://<relay public host>:<public port>`.
//!
//! The port is given back when the service stops or exits. The gateway core
//! then composes `http://<registered host>:<reported port>` as always: a
//! relayed host registers the relay's public host, so the two agree.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use dci_agent::runtime::{Runtime, RuntimeError};
use dci_model::{ServiceName, SessionId};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How others reach the host's services.
#[derive(Debug)]
pub enum Reach {
    /// As the runtime reports them (loopback, or a wildcard listen address).
    Local,
    /// Through a forwarder on this address, which others reach.
    Direct(IpAddr),
    /// Through the gateway's relay.
    Relay(dci_relay::RelayClient),
}

impl Reach {
    /// `Direct` when the host listens on one address that is neither
    /// loopback nor a wildcard, else `Local`.
    pub fn for_listen(listen: &str) -> Reach {
        match listen.parse::<SocketAddr>() {
            Ok(a) if !a.ip().is_loopback() && !a.ip().is_unspecified() => Reach::Direct(a.ip()),
            _ => Reach::Local,
        }
    }
}

enum Opened {
    Forwarder(CancellationToken),
    Relayed(u16),
}

/// A runtime whose endpoints others can reach. See the module docs.
pub struct Exposed<R> {
    inner: R,
    reach: Reach,
    opened: Mutex<HashMap<SessionId, Opened>>,
}

/// `(host, port, rest)` of an `http://host:port/rest` URL.
fn split_url(url: &str) -> Option<(&str, u16, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    let (host, port) = authority.rsplit_once(':')?;
    Some((host, port.parse().ok()?, path))
}

impl<R: Runtime> Exposed<R> {
    /// `inner`'s services, reached as `reach` says.
    pub fn new(inner: R, reach: Reach) -> Self {
        Exposed { inner, reach, opened: Mutex::new(HashMap::new()) }
    }

    /// The runtime it wraps.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The public URL for `endpoint`, and what to undo at stop.
    async fn expose(&self, endpoint: &str) -> Result<(String, Option<Opened>), String> {
        let (_, local, path) = split_url(endpoint)
            .ok_or_else(|| format!("expected http://host:port from the runtime, found {endpoint:?}"))?;
        match &self.reach {
            Reach::Local => Ok((endpoint.to_owned(), None)),
            Reach::Direct(ip) => {
                let listener =
                    TcpListener::bind((*ip, 0)).await.map_err(|e| format!("binding a forwarder on {ip}: {e}"))?;
                let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                let stop = CancellationToken::new();
                tokio::spawn(forward(listener, local, stop.clone()));
                let host = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
                Ok((format!("http://{host}:{port}{path}"), Some(Opened::Forwarder(stop))))
            }
            Reach::Relay(client) => {
                let public = client.forward(local).await.map_err(|e| format!("no public port from the relay: {e}"))?;
                Ok((format!("http://{}:{public}{path}", client.public_host()), Some(Opened::Relayed(public))))
            }
        }
    }

    fn close(&self, session: SessionId) {
        let opened = self.opened.lock().expect("exposed lock").remove(&session);
        match opened {
            Some(Opened::Forwarder(stop)) => stop.cancel(),
            Some(Opened::Relayed(port)) => {
                if let Reach::Relay(client) = &self.reach {
                    let client = client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.release(port).await {
                            tracing::warn!(port, error = %e, "could not give a public port back to the relay");
                        }
                    });
                }
            }
            None => {}
        }
    }
}

/// Accepts on `listener` and splices each connection to `127.0.0.1:local`.
async fn forward(listener: TcpListener, local: u16, stop: CancellationToken) {
    loop {
        let (mut conn, _) = tokio::select! {
            _ = stop.cancelled() => break,
            c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
        };
        let _ = conn.set_nodelay(true);
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut service) = TcpStream::connect(("127.0.0.1", local)).await else { return };
            let _ = service.set_nodelay(true);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut conn, &mut service) => {}
            }
        });
    }
}

impl<R: Runtime> Runtime for Exposed<R> {
    async fn start(&self, session: SessionId, service: &ServiceName) -> Result<String, RuntimeError> {
        let endpoint = self.inner.start(session, service).await?;
        match self.expose(&endpoint).await {
            Ok((url, opened)) => {
                if let Some(o) = opened {
                    self.opened.lock().expect("exposed lock").insert(session, o);
                }
                Ok(url)
            }
            Err(detail) => {
                let _ = self.inner.stop(session).await;
                Err(RuntimeError::NoEndpoint { service: service.clone(), secs: 0, detail })
            }
        }
    }

    async fn stop(&self, session: SessionId) -> Result<(), RuntimeError> {
        self.close(session);
        self.inner.stop(session).await
    }

    fn exited(&self) -> Vec<SessionId> {
        let gone = self.inner.exited();
        for s in &gone {
            self.close(*s);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_the_reach_follows_the_listen_address() {
        assert_eq!(split_url("http://127.0.0.1:8080"), Some(("127.0.0.1", 8080, "")));
        assert_eq!(split_url("http://127.0.0.1:8080/v1"), Some(("127.0.0.1", 8080, "/v1")));
        assert_eq!(split_url("ws://x:1"), None);
        assert!(matches!(Reach::for_listen("127.0.0.1:7300"), Reach::Local));
        assert!(matches!(Reach::for_listen("0.0.0.0:7300"), Reach::Local));
        assert!(matches!(Reach::for_listen("10.0.0.5:7300"), Reach::Direct(_)));
        assert!(matches!(Reach::for_listen("localhost:7300"), Reach::Local));
    }

    /// A runtime whose one service is a real local TCP server answering "hi".
    struct OneService;

    impl Runtime for OneService {
        async fn start(&self, _: SessionId, _: &ServiceName) -> Result<String, RuntimeError> {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Ok((mut s, _)) = l.accept().await {
                    let _ = s.write_all(b"hi").await;
                }
            });
            Ok(format!("http://127.0.0.1:{port}"))
        }
        async fn stop(&self, _: SessionId) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn exited(&self) -> Vec<SessionId> {
            vec![]
        }
    }

    #[tokio::test]
    async fn a_direct_host_forwards_from_its_address_until_the_service_stops() {
        use tokio::io::AsyncReadExt;
        // 127.0.0.2 stands for the host's address on its network (Linux
        // routes all of 127/8 to loopback).
        let exposed = Exposed::new(OneService, Reach::Direct("127.0.0.2".parse().unwrap()));
        let s = SessionId([1; 16]);
        let url = exposed.start(s, &ServiceName::new("render").unwrap()).await.unwrap();
        let (host, port, _) = split_url(&url).unwrap();
        assert_eq!(host, "127.0.0.2");
        let mut c = TcpStream::connect(("127.0.0.2", port)).await.unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        exposed.stop(s).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.2", port)).await.is_err(), "the forwarder is gone");
    }
}
