//! Who a request comes from, and how much that client may ask for.
//!
//! **The client address.** It is the TCP peer, unless the peer is one of `--trusted-proxy`
//! (CIDR ranges): then the proxy says who its client is, in `Forwarded: for=…` (RFC 7239) or,
//! without it, `X-Forwarded-For`. Those lists grow by one hop per proxy, rightmost last, and a
//! client can write anything into them before the first proxy; so they are read from the
//! right, skipping hops that are trusted proxies themselves, and the first untrusted hop is
//! the client. From any other peer the headers are ignored: anybody can send them.
//!
//! **The client.** An authenticated identity (a JWT's `sub`, the proxy's user header) is the
//! client wherever it connects from; otherwise the address. IPv6 addresses count by their /64
//! (one host is handed a whole /64 and can use any address in it).
//!
//! **Rates.** Two token-bucket tables keyed by client, across all its pages and the API: one
//! for posts (a page's message, `POST /api/…`), one looser for reads (`GET /api/…`; the page
//! and its assets are not counted). Past them: `429` with `Retry-After` (a page gets an error
//! frame). Each table is bounded: when it is full, the clients whose bucket has refilled (as
//! good as new) are dropped, at most once a second; if none has, a new client is refused until
//! one has, rather than letting a flood of addresses reset everyone's bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::limits::Bucket;

/// An address range (`10.0.0.0/8`, `::1/128`, or a bare address: the one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad =
            || format!("'{s}': expected an address or a range such as 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr {
            net: net.to_canonical(),
            prefix,
        })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32, self.prefix)
                    == masked(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.into(), 128, self.prefix) == masked(ip.into(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-wide number.
fn masked(n: u128, bits: u32, prefix: u8) -> u128 {
    let keep = u32::from(prefix).min(bits);
    if keep == 0 {
        return 0;
    }
    n >> (bits - keep)
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// untrusted hop of `Forwarded` (preferred) or `X-Forwarded-For`. A hop that is not an address
/// (`unknown`, an obfuscated `_name`, garbage) ends the walk: the client is the last trusted
/// hop before it, as nothing left of it can be believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let hops = forwarded_hops(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return ip,
            None => return client,
        }
    }
    client
}

/// The hops a request went through, leftmost (the original client) first, as written.
fn forwarded_hops(headers: &HeaderMap) -> Vec<String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        // `for=1.2.3.4;proto=https, for="[2001:db8::1]:443"`: one element per hop.
        return forwarded
            .iter()
            .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                    .unwrap_or_default()
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| {
            v.split(',')
                .map(|h| h.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An address as a hop writes it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let bracketed = hop.strip_prefix('[')?.split(']').next()?;
    bracketed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Who is counted: an identity, or an address (IPv6 by its /64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Identity(String),
    Net(IpAddr),
}

impl ClientKey {
    /// The key of an anonymous client at `ip`.
    pub fn of_ip(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey::Net(IpAddr::V6(bits.into()))
            }
            v4 => ClientKey::Net(v4),
        }
    }
}

/// Who a request is from, as the handlers see it (put into each request by [`crate::auth`]'s
/// middleware).
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address (forwarded, when from a trusted proxy).
    pub ip: IpAddr,
    /// Whether the TCP peer is one of the trusted proxies.
    pub via_trusted_proxy: bool,
}

/// Most clients a rate table keeps.
pub const MAX_CLIENTS: usize = 100_000;

/// One table of buckets: a rate and a burst per client.
pub struct RateTable {
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
    rate: f64,
    burst: f64,
    max: usize,
    /// When the table was last swept of refilled buckets (at most once a second).
    swept: Mutex<Option<Instant>>,
}

impl RateTable {
    pub fn new(rate: f64, burst: f64, max: usize) -> RateTable {
        RateTable {
            buckets: Mutex::new(HashMap::new()),
            rate,
            burst,
            max: max.max(1),
            swept: Mutex::new(None),
        }
    }

    /// Take one token for `key`: `Err(wait)` when it has none (wait: until the next one).
    pub fn take(&self, key: &ClientKey) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max {
            self.sweep(&mut buckets, now);
            if buckets.len() >= self.max {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(self.rate, self.burst));
        if bucket.take(now) {
            Ok(())
        } else {
            Err(bucket.wait())
        }
    }

    /// Drop the buckets that have refilled (they are as good as new), once a second at most.
    fn sweep(&self, buckets: &mut HashMap<ClientKey, Bucket>, now: Instant) {
        let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
        if swept.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        *swept = Some(now);
        buckets.retain(|_, b| !b.is_full(now));
    }

    /// The sustained rate, per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// `Retry-After` for a wait: whole seconds, at least 1.
pub fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().expect("header"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains(ip("10.1.2.3")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!c.contains(ip("11.0.0.1")));
        let one: Cidr = "127.0.0.1".parse().expect("cidr");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .expect("all")
            .contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_only_from_a_trusted_peer() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        // From the proxy: the rightmost untrusted hop (the spoofed 6.6.6.6 is left of it).
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &trusted), ip("203.0.113.7"));
        // From anyone else: the headers are ignored.
        assert_eq!(
            client_ip(ip("198.51.100.9"), &xff, &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(client_ip(ip("198.51.100.9"), &xff, &[]), ip("198.51.100.9"));
        // Forwarded wins over X-Forwarded-For; quoted IPv6 with a port.
        let fwd = headers(&[
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
            ),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(client_ip(ip("10.9.9.9"), &fwd, &trusted), ip("2001:db8::7"));
        // Several header lines are one list, in order.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.8:5555"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &split, &trusted),
            ip("203.0.113.8")
        );
        // Garbage or an obfuscated hop: the last trusted hop is all that is known.
        let junk = headers(&[("x-forwarded-for", "203.0.113.7, garbage, 10.0.0.3")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &junk, &trusted), ip("10.0.0.3"));
        let hidden = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &hidden, &trusted), ip("10.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            ClientKey::of_ip(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of_ip(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            ClientKey::of_ip(ip("2001:db8:1:2::1")),
            ClientKey::of_ip(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of_ip(ip("::ffff:1.2.3.4")),
            ClientKey::of_ip(ip("1.2.3.4"))
        );
    }

    #[test]
    fn a_full_table_drops_refilled_buckets_and_refuses_otherwise() {
        let table = RateTable::new(1000.0, 1.0, 2);
        let key = |n: u8| ClientKey::Net(IpAddr::from([10, 0, 0, n]));
        assert!(table.take(&key(1)).is_ok());
        assert!(table.take(&key(1)).is_err(), "one token only");
        assert!(table.take(&key(2)).is_ok());
        // Full, and both buckets empty: a third client waits.
        assert!(table.take(&key(3)).is_err());
        std::thread::sleep(Duration::from_millis(1100));
        // Refilled by now: dropped, and the newcomer gets a bucket.
        assert!(table.take(&key(3)).is_ok());
        assert_eq!(retry_after(Duration::from_millis(10)), 1);
        assert_eq!(retry_after(Duration::from_millis(2100)), 3);
    }
}
