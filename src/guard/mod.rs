//! Guards on what jobs reach: [`net`] decides which addresses HTTP jobs may dial, the
//! [`GuardedResolver`] applies it to every name lookup (so the address checked is the address
//! dialled), and [`files`] opens files beneath the files root only.

pub mod files;
pub mod net;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub use net::{AllowRule, NetPolicy, Refusal};

/// Looks host names up. The system resolver in production; tests put a fixed table here.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (getaddrinfo, on tokio's blocking pool).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// The last word before a connection is made, with the addresses the policy allowed. In
/// production it lets them through; tests record the decision and connect nowhere.
pub trait Dialer: Send + Sync + 'static {
    fn approve(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal>;
}

/// Lets every allowed address through.
pub struct Connect;

impl Dialer for Connect {
    fn approve(&self, _host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        Ok(addrs)
    }
}

/// The outbound guard as the HTTP client uses it.
#[derive(Clone)]
pub struct NetGuard {
    pub policy: Arc<NetPolicy>,
    pub lookup: Arc<dyn Lookup>,
    pub dialer: Arc<dyn Dialer>,
}

impl NetGuard {
    pub fn new(policy: NetPolicy) -> NetGuard {
        NetGuard {
            policy: Arc::new(policy),
            lookup: Arc::new(SystemLookup),
            dialer: Arc::new(Connect),
        }
    }

    /// Checks a URL before any request: scheme, credentials, and (for an IP literal, which
    /// the client dials without a lookup) the address itself. Returns what the resolver needs
    /// to judge the name's addresses.
    pub fn preflight(&self, url: &url::Url) -> Result<Target, Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal(format!(
                "scheme {:?} is refused: only http and https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal(
                "URLs with a user name or password are refused".into(),
            ));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.literal(IpAddr::V4(ip), port),
            Some(url::Host::Ipv6(ip)) => self.literal(IpAddr::V6(ip), port),
            Some(url::Host::Domain(name)) => {
                let host_allowed = self.policy.host_allowed(name, port);
                // Refused before any lookup: what a resolver says of these names cannot be
                // trusted, and one that does not resolve them would make it a `dns` error.
                if let Some((means, stands_for)) = net::reserved_name(name)
                    && !host_allowed
                    && stands_for
                        .iter()
                        .all(|ip| self.policy.check(*ip, port).is_err())
                {
                    let name = net::normalize_host(name);
                    return Err(Refusal(format!(
                        "{name} always means {means}, refused by name: to reach it, add \
                         --allow-net {name}:{port}"
                    )));
                }
                Ok(Target { port, host_allowed })
            }
            None => Err(Refusal("the URL has no host".into())),
        }
    }

    fn literal(&self, ip: IpAddr, port: u16) -> Result<Target, Refusal> {
        self.policy.check(ip, port)?;
        self.dialer
            .approve(&ip.to_string(), vec![SocketAddr::new(ip, port)])?;
        Ok(Target {
            port,
            host_allowed: false,
        })
    }
}

/// What a request's lookups are judged against: set for the duration of each request.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub port: u16,
    /// A host rule of `--allow-net` names this host (and port).
    pub host_allowed: bool,
}

tokio::task_local! {
    /// The target of the request being sent from this task. The resolver runs inside the
    /// request's future, so it sees this; without it, it judges as if no rule named the port.
    pub static TARGET: Target;
}

/// The HTTP client's resolver: looks the name up, then drops every address the policy
/// refuses. A name left with no address fails the request with the refusal.
pub struct GuardedResolver(pub NetGuard);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        let target = TARGET.try_with(|t| *t).ok();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let target = target.unwrap_or(Target {
                port: 0,
                host_allowed: false,
            });
            match guard.allowed_addresses(&host, target).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(Unreachable::Refused(r)) => Err(Box::new(r) as Box<_>),
                Err(Unreachable::Lookup(e)) => Err(e.into()),
            }
        })
    }
}

/// Why a name gave no address to dial.
#[derive(Debug)]
pub enum Unreachable {
    /// Every address it has is refused by the policy (or the dialer).
    Refused(Refusal),
    /// The lookup failed or found nothing.
    Lookup(String),
}

impl NetGuard {
    /// Looks `host` up and keeps the addresses the policy allows for `target`, then asks the
    /// dialer: what a connection to `host` may use.
    pub async fn allowed_addresses(
        &self,
        host: &str,
        target: Target,
    ) -> Result<Vec<SocketAddr>, Unreachable> {
        let found = self
            .lookup
            .lookup(host)
            .await
            .map_err(|e| Unreachable::Lookup(format!("{host}: name does not resolve ({e})")))?;
        if found.is_empty() {
            return Err(Unreachable::Lookup(format!(
                "{host}: name does not resolve (no address)"
            )));
        }
        let mut refusals = Vec::new();
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|ip| {
                target.host_allowed
                    || match self.policy.check(*ip, target.port) {
                        Ok(()) => true,
                        Err(r) => {
                            refusals.push(r.0);
                            false
                        }
                    }
            })
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect();
        if allowed.is_empty() {
            let why = refusals.into_iter().next().unwrap_or_default();
            return Err(Unreachable::Refused(Refusal(format!(
                "{host} resolves to {why}"
            ))));
        }
        self.dialer
            .approve(host, allowed)
            .map_err(Unreachable::Refused)
    }

    /// Every address a request to `url` may be sent to: the URL checked as [`preflight`]
    /// does, then an IP literal as it is, or a name through [`allowed_addresses`].
    ///
    /// [`preflight`]: NetGuard::preflight
    /// [`allowed_addresses`]: NetGuard::allowed_addresses
    pub async fn addresses(&self, url: &url::Url) -> Result<Vec<SocketAddr>, Unreachable> {
        let target = self.preflight(url).map_err(Unreachable::Refused)?;
        match url.host() {
            Some(url::Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(IpAddr::V4(ip), target.port)]),
            Some(url::Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(IpAddr::V6(ip), target.port)]),
            Some(url::Host::Domain(name)) => self.allowed_addresses(name, target).await,
            None => Err(Unreachable::Refused(Refusal("the URL has no host".into()))),
        }
    }
}
