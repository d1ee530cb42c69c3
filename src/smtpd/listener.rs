//! The listening sockets of the SMTP services (master.cf's inet lines) and the accept loops.
//!
//! The daemon binds every socket while it is still root ([`bind_all`], before privileges are
//! dropped), then serves them on its event loop ([`serve`]): one task per connection, so a
//! slow or hostile client only ever holds its own task. Two caps are applied at accept time,
//! before any byte is read: smtpd_process_limit connections per service, and
//! smtpd_client_connection_count_limit per client address across services (clients in
//! mynetworks are exempt, as with Postfix's smtpd_client_event_limit_exceptions default). A
//! client over a cap gets a 421 and is closed, in its own task, so it cannot stall accepting.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::credentials::Verifier;
use super::restrictions::Restrictions;
use super::{reply, session, tls};
use crate::config::{Config, Service};
use crate::maps::search::NetworkList;
use crate::queue::QueueStore;
use crate::{mail_info, mail_warning};

const SERVICE: &str = "smtpd";
const BACKLOG: u32 = 1024;

/// One service, ready to serve: its configuration and what is built from it once.
pub struct ServiceContext {
    pub name: String,
    pub cfg: Arc<Config>,
    pub restrictions: Restrictions,
    pub verifier: Option<Verifier>,
    pub tls: Option<TlsAcceptor>,
    pub tls_level: tls::Level,
    pub mynetworks: NetworkList,
    /// Connections open now on this service.
    pub open: AtomicUsize,
}

/// What every session shares.
pub struct Shared {
    pub store: QueueStore,
    /// Asks the queue worker for a flush (ETRN).
    pub flush: Box<dyn Fn() + Send + Sync>,
    /// Tells the queue worker that a message is in incoming.
    pub wake: Box<dyn Fn() + Send + Sync>,
    /// Open connections per client address, all services together.
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

impl Shared {
    pub fn new(store: QueueStore, flush: Box<dyn Fn() + Send + Sync>, wake: Box<dyn Fn() + Send + Sync>) -> Shared {
        Shared { store, flush, wake, per_client: Mutex::new(HashMap::new()) }
    }
}

/// A bound socket of a service.
pub struct Listener {
    pub service: Arc<ServiceContext>,
    pub addr: SocketAddr,
    socket: TcpListener,
}

/// Builds each service and binds its sockets. Must run inside the runtime that will serve
/// them. Any failure (a bad TLS key, a port in use) is an error naming the service; for the
/// implicit default smtp service (no [service.*] table) a socket that cannot be bound is
/// only warned about, so that a machine (or a test) that never configured the SMTP server
/// still starts.
pub fn bind_all(cfg: &Config) -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    for service in cfg.services() {
        let context = Arc::new(context(&service)?);
        for addr in socket_addresses(&service) {
            match bind(addr) {
                Ok(socket) => out.push(Listener { service: context.clone(), addr, socket }),
                Err(e) if !service.explicit => {
                    let e = strerror(&e);
                    mail_warning!(SERVICE, "service {}: cannot listen on {addr}: {e}; not serving it", service.name);
                }
                Err(e) => return Err(format!("service {}: cannot listen on {addr}: {}", service.name, strerror(&e))),
            }
        }
    }
    Ok(out)
}

/// An I/O error as strerror() words it, without Rust's " (os error N)".
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

fn context(service: &Service) -> Result<ServiceContext, String> {
    let cfg = service.config.clone();
    let at = |e: String| format!("service {}: {e}", service.name);
    let mynetworks = NetworkList::new(cfg.mynetworks()).map_err(|e| at(format!("mynetworks: {e}")))?;
    Ok(ServiceContext {
        name: service.name.clone(),
        restrictions: Restrictions::new(cfg.clone()).map_err(at)?,
        verifier: Verifier::new(cfg.clone()).map_err(at)?,
        tls: tls::acceptor(&cfg).map_err(at)?,
        tls_level: tls::Level::of(&cfg),
        mynetworks,
        cfg,
        open: AtomicUsize::new(0),
    })
}

/// The socket addresses of a service: its `address` list, else inet_interfaces; `all` is
/// the IPv4 and IPv6 wildcards (as inet_protocols allows), `loopback-only` both loopbacks.
pub fn socket_addresses(service: &Service) -> Vec<SocketAddr> {
    let cfg = &service.config;
    let protocols: Vec<String> = cfg.inet_protocols().iter().map(|p| p.to_ascii_lowercase()).collect();
    let any = protocols.is_empty() || protocols.iter().any(|p| p == "all");
    let v4 = any || protocols.iter().any(|p| p == "ipv4");
    let v6 = any || protocols.iter().any(|p| p == "ipv6");
    let written = service.addresses.clone().unwrap_or_else(|| cfg.inet_interfaces().to_vec());
    let mut ips: Vec<IpAddr> = Vec::new();
    for entry in &written {
        let entry = entry.trim();
        match entry.to_ascii_lowercase().as_str() {
            "all" => ips.extend([IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)]),
            "loopback-only" => ips.extend([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]),
            other => ips.extend(other.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()),
        }
    }
    ips.retain(|ip| if ip.is_ipv4() { v4 } else { v6 });
    // An IPv6 wildcard is of no use where the machine has no IPv6.
    if !ipv6_available() {
        ips.retain(|ip| ip.is_ipv4());
    }
    ips.sort();
    ips.dedup();
    ips.into_iter().map(|ip| SocketAddr::new(ip, service.port)).collect()
}

fn ipv6_available() -> bool {
    TcpSocket::new_v6().is_ok()
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // The IPv6 wildcard must not also take the IPv4 port (the 0.0.0.0 socket has it).
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a valid pointer and length.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts on every listener until the runtime stops.
pub fn serve(listeners: Vec<Listener>, shared: Arc<Shared>) {
    for listener in listeners {
        mail_info!(SERVICE, "service {}: listening on {}", listener.service.name, listener.addr);
        let shared = shared.clone();
        tokio::spawn(accept_loop(listener, shared));
    }
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                mail_warning!(SERVICE, "accept on {}: {e}", listener.addr);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = listener.service.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some(_slot) = Slot::take(&service, &shared, canonical(peer.ip())) else {
                return refuse(stream, &service, &shared, canonical(peer.ip())).await;
            };
            session::run(stream, peer, service.clone(), shared.clone()).await;
        });
    }
}

/// An IPv4 client on an IPv6 socket is written as IPv4, as Postfix does.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A connection counted against the caps; uncounted when dropped.
struct Slot {
    service: Arc<ServiceContext>,
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Slot {
    fn take(service: &Arc<ServiceContext>, shared: &Arc<Shared>, ip: IpAddr) -> Option<Slot> {
        let cfg = &service.cfg;
        let total = usize::try_from(cfg.smtpd_process_limit()).unwrap_or(usize::MAX);
        if service.open.fetch_add(1, Ordering::SeqCst) >= total {
            service.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let per_client = usize::try_from(cfg.smtpd_client_connection_count_limit()).unwrap_or(0);
        let exempt = per_client == 0 || service.mynetworks.matches(ip).unwrap_or(false);
        let mut counts = shared.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if !exempt && *count >= per_client {
            drop(counts);
            service.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        *count += 1;
        Some(Slot { service: service.clone(), shared: shared.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.service.open.fetch_sub(1, Ordering::SeqCst);
        let mut counts = self.shared.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// 421 to a client over a cap, then close (bounded: the client may not read).
async fn refuse(mut stream: TcpStream, service: &ServiceContext, shared: &Shared, ip: IpAddr) {
    let cfg = &service.cfg;
    let total = usize::try_from(cfg.smtpd_process_limit()).unwrap_or(usize::MAX);
    let text = if service.open.load(Ordering::SeqCst) >= total {
        mail_warning!(
            SERVICE,
            "service {}: connection from {ip} refused: smtpd_process_limit {total} reached",
            service.name
        );
        reply::too_many_connections(cfg.myhostname())
    } else {
        let count = shared.per_client.lock().map(|c| c.get(&ip).copied().unwrap_or(0)).unwrap_or(0);
        mail_warning!(
            SERVICE,
            "Connection concurrency limit exceeded: {count} from unknown[{ip}] for service {}",
            service.name
        );
        reply::too_many_connections_from(cfg.myhostname(), &ip.to_string())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&reply::wire(&text)).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
