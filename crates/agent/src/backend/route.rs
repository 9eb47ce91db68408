//! Local routes: which IPv4 addresses this agent reaches directly, on a
//! network it is attached to (a connected route in its own network
//! namespace, from `/proc/net/route`). The network safety rule: the agent
//! probes only loopback or such addresses.

use std::net::Ipv4Addr;

const ROUTE_TABLE: &str = "/proc/net/route";
const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// A directly connected IPv4 route (no gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectedRoute {
    network: Ipv4Addr,
    mask: Ipv4Addr,
}

impl ConnectedRoute {
    fn covers(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask) == u32::from(self.network)
    }
}

/// The connected routes of this network namespace; empty when the table
/// cannot be read (so nothing is considered local).
pub(crate) async fn connected_routes() -> Vec<ConnectedRoute> {
    match tokio::fs::read_to_string(ROUTE_TABLE).await {
        Ok(text) => parse(&text),
        Err(e) => {
            tracing::warn!(error = %e, path = ROUTE_TABLE, "cannot read the route table");
            Vec::new()
        }
    }
}

/// Whether `ip` is on a directly connected network. Default routes never
/// count, whatever their gateway.
pub(crate) fn is_local(routes: &[ConnectedRoute], ip: Ipv4Addr) -> bool {
    routes.iter().any(|r| r.covers(ip))
}

fn parse(text: &str) -> Vec<ConnectedRoute> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_iface, dest, gateway, flags, _refcnt, _use, _metric, mask, ..] = fields[..]
            else {
                return None;
            };
            let dest = u32::from_str_radix(dest, 16).ok()?;
            let gateway = u32::from_str_radix(gateway, 16).ok()?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let mask = u32::from_str_radix(mask, 16).ok()?;
            let connected = flags & RTF_UP != 0 && flags & RTF_GATEWAY == 0 && gateway == 0;
            if !connected || mask == 0 {
                return None;
            }
            // The kernel prints the addresses as native-endian integers of
            // network-order bytes.
            Some(ConnectedRoute {
                network: Ipv4Addr::from(dest.to_ne_bytes()),
                mask: Ipv4Addr::from(mask.to_ne_bytes()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A container attached to a user-defined Docker network 172.18.0.0/16
    // with a default route through 172.18.0.1 (x86_64, little-endian).
    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    #[cfg(target_endian = "little")]
    fn only_connected_networks_are_local() {
        let routes = parse(TABLE);
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert!(is_local(&routes, Ipv4Addr::new(172, 18, 0, 5)));
        assert!(!is_local(&routes, Ipv4Addr::new(172, 17, 0, 2)));
        assert!(!is_local(&routes, Ipv4Addr::new(8, 8, 8, 8)));
        assert!(!is_local(&routes, Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn garbage_is_ignored() {
        assert!(parse("Iface\nnot a route\n").is_empty());
    }
}
