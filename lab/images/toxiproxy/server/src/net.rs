//! Listening like Go's net.Listen("tcp", addr): "host:port", ":port" or "" (any address, any port);
//! a wildcard host listens dual-stack on [::] (so 0.0.0.0:8666 is reported as [::]:8666, as Toxiproxy
//! reports it), falling back to IPv4 where IPv6 is unavailable; a host name binds its first IPv4 address.

use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenTarget {
    Wildcard(u16),
    Addr(SocketAddr),
}

/// Go's net.SplitHostPort for the forms Toxiproxy accepts.
pub fn split_host_port(addr: &str) -> Result<(&str, &str), &'static str> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']' in address")?;
        let port = after.strip_prefix(':').ok_or("missing port in address")?;
        return Ok((host, port));
    }
    let (host, port) = addr.rsplit_once(':').ok_or("missing port in address")?;
    if host.contains(':') {
        return Err("too many colons in address");
    }
    Ok((host, port))
}

/// `host:port`, bracketing IPv6 hosts (Go's net.JoinHostPort).
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub async fn listen_target(addr: &str) -> Result<ListenTarget, String> {
    if addr.is_empty() {
        return Ok(ListenTarget::Wildcard(0));
    }
    let (host, port) = split_host_port(addr).map_err(|e| format!("listen tcp: address {addr}: {e}"))?;
    let port: u16 = port.parse().map_err(|_| format!("listen tcp: address {addr}: unknown port"))?;
    if host.is_empty() {
        return Ok(ListenTarget::Wildcard(port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(if ip.is_unspecified() {
            ListenTarget::Wildcard(port)
        } else {
            ListenTarget::Addr(SocketAddr::new(ip, port))
        });
    }
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("listen tcp: lookup {host}: no such host"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .map(|a| ListenTarget::Addr(*a))
        .ok_or_else(|| format!("listen tcp: lookup {host}: no such host"))
}

/// Whether two listen addresses denote the same listener (Toxiproxy resolves before comparing).
pub async fn same_listen(current: &str, requested: &str) -> bool {
    if current == requested {
        return true;
    }
    match (listen_target(current).await, listen_target(requested).await) {
        (Ok(a), Ok(b)) => a == b && !matches!(a, ListenTarget::Wildcard(0)),
        _ => false,
    }
}

fn go_error_text(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => err.to_string(),
    }
}

fn bind_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    // Go sets SO_REUSEADDR on listeners: a proxy can be re-enabled while old connections linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

pub async fn bind(addr: &str) -> Result<TcpListener, String> {
    let target = listen_target(addr).await?;
    let bound = match target {
        ListenTarget::Wildcard(port) => {
            bind_socket(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), true).or_else(|err| {
                if err.kind() == io::ErrorKind::AddrInUse {
                    Err(err)
                } else {
                    bind_socket(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), false)
                }
            })
        }
        ListenTarget::Addr(addr) => bind_socket(addr, false),
    };
    let listener = bound.map_err(|err| format!("listen tcp {addr}: bind: {}", go_error_text(&err)))?;
    TcpListener::from_std(listener).map_err(|err| format!("listen tcp {addr}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go() {
        assert_eq!(split_host_port("127.0.0.1:80"), Ok(("127.0.0.1", "80")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port(":80"), Ok(("", "80")));
        assert!(split_host_port("127.0.0.1").is_err());
        assert!(split_host_port("::1:80").is_err());
        assert_eq!(join_host_port("::", "8474"), "[::]:8474");
    }

    #[tokio::test]
    async fn targets_and_equivalence() {
        assert_eq!(listen_target("").await, Ok(ListenTarget::Wildcard(0)));
        assert_eq!(listen_target("0.0.0.0:8666").await, Ok(ListenTarget::Wildcard(8666)));
        assert_eq!(listen_target("[::]:8666").await, Ok(ListenTarget::Wildcard(8666)));
        assert!(listen_target("127.0.0.1:http").await.is_err());
        assert!(same_listen("[::]:8666", "0.0.0.0:8666").await);
        assert!(!same_listen("127.0.0.1:8666", "127.0.0.1:0").await);
        assert!(same_listen("127.0.0.1:8666", "localhost:8666").await);
    }

    #[tokio::test]
    async fn wildcard_reports_dual_stack_and_port_zero_is_real() {
        let listener = bind("0.0.0.0:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        assert_ne!(local.port(), 0);
        assert!(local.ip().is_unspecified());
        let taken = local.to_string();
        assert!(bind(&taken).await.unwrap_err().contains("address already in use"));
    }
}
