//! One blocking connection to a broker: frames out, frames in.
//!
//! Why blocking and ours: the member sends one heartbeat every few seconds
//! from its own thread, so a plain socket with read and write timeouts is all
//! it needs, and librdkafka has no way to send a request it does not know.
//! The connection speaks the listener's `security.protocol` (see
//! `security.rs` for TLS and SASL) with the same settings the rest of the
//! application gives librdkafka.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::codec::{Reader, Writer};
use super::messages::{self, Coordinator, code};
use super::security::{self, Security};
use super::{GroupError, GroupResult};

/// A byte stream to a broker: plain TCP or TLS.
pub(crate) trait Transport: Read + Write + Send {}
impl<T: Read + Write + Send> Transport for T {}

/// The largest response frame accepted (a heartbeat with the endpoint map
/// of a large group is well under this).
const MAX_FRAME: usize = 64 << 20;

pub(crate) struct Connection {
    stream: Box<dyn Transport>,
    correlation: i32,
    client_id: String,
    /// Where it is connected, for messages.
    pub addr: String,
}

impl Connection {
    /// Connects, secures the connection as configured, and checks that the
    /// broker speaks the Streams rebalance protocol.
    pub fn open(
        addr: &str,
        sec: &Security,
        client_id: &str,
        timeout: Duration,
    ) -> GroupResult<Self> {
        let (host, _) = split_host_port(addr)?;
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| GroupError::Io(format!("cannot resolve {addr}: {e}")))?
            .find_map(|a| TcpStream::connect_timeout(&a, timeout).ok())
            .ok_or_else(|| GroupError::Io(format!("cannot connect to {addr}")))?;
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| GroupError::Io(format!("{addr}: {e}")))?;
        let stream = security::wrap(sock, host, sec)?;
        let mut c = Connection {
            stream,
            correlation: 0,
            client_id: client_id.to_string(),
            addr: addr.to_string(),
        };
        c.check_api_versions()?;
        if sec.sasl.is_some() {
            security::authenticate(&mut c, sec)?;
        }
        Ok(c)
    }

    fn check_api_versions(&mut self) -> GroupResult<()> {
        // ApiVersions answers with a v0 header (no tagged fields) whatever
        // the request's version.
        let body = self.call(messages::API_VERSIONS, 3, true, false, |w| {
            messages::api_versions_request(w)
        })?;
        let (error, keys) = messages::api_versions_response(&mut Reader::new(&body))?;
        if error != code::NONE {
            return Err(GroupError::broker("ApiVersions", error, None));
        }
        let hb = keys
            .iter()
            .find(|(k, _, _)| *k == messages::STREAMS_GROUP_HEARTBEAT);
        if hb.is_none_or(|(_, min, _)| *min > 0) {
            return Err(GroupError::Unsupported(format!(
                "the broker at {} does not offer the Streams rebalance protocol \
                 (StreamsGroupHeartbeat, KIP-1071). It needs Apache Kafka 4.2 or newer with \
                 'streams' in group.coordinator.rebalance.protocols; or set \
                 group.protocol=classic",
                self.addr
            )));
        }
        Ok(())
    }

    /// Sends one request and returns the response body (after its header).
    pub fn call(
        &mut self,
        api_key: i16,
        version: i16,
        flexible_request: bool,
        flexible_response_header: bool,
        body: impl FnOnce(&mut Writer),
    ) -> GroupResult<Vec<u8>> {
        self.correlation = self.correlation.wrapping_add(1);
        let id = self.correlation;
        let mut w = Writer::default();
        w.i32(0); // size, filled in below
        messages::request_header(
            &mut w,
            api_key,
            version,
            id,
            &self.client_id,
            flexible_request,
        );
        body(&mut w);
        let size = (w.buf.len() - 4) as i32;
        w.buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&w.buf)
            .and_then(|()| self.stream.flush())
            .map_err(|e| GroupError::Io(format!("sending to {}: {e}", self.addr)))?;
        let frame = self.read_frame()?;
        let mut r = Reader::new(&frame);
        let got = r.i32()?;
        if got != id {
            return Err(GroupError::Io(format!(
                "{} answered correlation id {got} to request {id}",
                self.addr
            )));
        }
        if flexible_response_header {
            r.skip_tags()?;
        }
        let consumed = frame.len() - r.remaining();
        Ok(frame[consumed..].to_vec())
    }

    /// Reads one size-prefixed frame (also used by SASL's raw tokens).
    pub fn read_frame(&mut self) -> GroupResult<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| GroupError::Io(format!("reading from {}: {e}", self.addr)))?;
        let n = i32::from_be_bytes(len);
        if n < 0 || n as usize > MAX_FRAME {
            return Err(GroupError::Io(format!(
                "{} sent a frame of {n} bytes",
                self.addr
            )));
        }
        let mut frame = vec![0u8; n as usize];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| GroupError::Io(format!("reading from {}: {e}", self.addr)))?;
        Ok(frame)
    }

    /// The group's coordinator, as this broker knows it.
    pub fn find_coordinator(&mut self, group: &str) -> GroupResult<Coordinator> {
        let body = self.call(messages::FIND_COORDINATOR, 4, true, true, |w| {
            messages::find_coordinator_request(w, group)
        })?;
        let c = messages::find_coordinator_response(&mut Reader::new(&body))?;
        if c.error != code::NONE {
            return Err(GroupError::broker(
                "FindCoordinator",
                c.error,
                c.message.clone(),
            ));
        }
        Ok(c)
    }
}

/// A broker's `host:port` as `FindCoordinator` names it (IPv6 in brackets).
pub(crate) fn broker_addr(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connection to `group`'s coordinator, found through the first
/// bootstrap server that answers. An error no retry fixes (credentials,
/// TLS, a broker without the protocol) is returned at once; otherwise the
/// last server's error.
pub(crate) fn connect_coordinator(
    bootstrap: &str,
    sec: &Security,
    client_id: &str,
    timeout: Duration,
    group: &str,
) -> GroupResult<Connection> {
    let mut last = GroupError::Io("no bootstrap server answered".into());
    for addr in bootstrap_addrs(bootstrap)? {
        let found = Connection::open(&addr, sec, client_id, timeout)
            .and_then(|mut c| c.find_coordinator(group).map(|co| (c, co)));
        match found {
            Ok((boot, co)) => {
                let addr = broker_addr(&co.host, co.port);
                if addr == boot.addr {
                    return Ok(boot);
                }
                return Connection::open(&addr, sec, client_id, timeout);
            }
            Err(e) if !e.is_retriable() => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `host:port`, also with a `PROTOCOL://` prefix as librdkafka accepts.
pub(crate) fn split_host_port(addr: &str) -> GroupResult<(&str, u16)> {
    let addr = addr.rsplit("://").next().unwrap_or(addr);
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| GroupError::Config(format!("bootstrap server '{addr}' is not host:port")))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| GroupError::Config(format!("bootstrap server '{addr}' has no valid port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host, port))
}

/// The bootstrap servers as `host:port` strings.
pub(crate) fn bootstrap_addrs(servers: &str) -> GroupResult<Vec<String>> {
    let mut v = Vec::new();
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, port) = split_host_port(s)?;
        v.push(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        });
    }
    if v.is_empty() {
        return Err(GroupError::Config("bootstrap.servers is empty".into()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_accept_protocol_prefixes_and_reject_garbage() {
        assert_eq!(
            bootstrap_addrs("a:1, SASL_SSL://b:2,[::1]:3").unwrap(),
            vec!["a:1", "b:2", "[::1]:3"]
        );
        assert!(bootstrap_addrs("a").is_err());
        assert!(bootstrap_addrs("a:x").is_err());
        assert!(bootstrap_addrs(" , ").is_err());
    }
}
