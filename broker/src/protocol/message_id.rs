//! Offset message ids: uppercase hex of `store ip | i32 port | i64 commit-log offset` (REMOTING.md §8).
//! 32 hex chars for IPv4, 56 for IPv6. Clients decode them to find the broker and the offset for
//! VIEW_MESSAGE_BY_ID.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::BodyError;

/// Length of an IPv4 offset message id.
pub const MSG_ID_LEN_V4: usize = 32;
/// Length of an IPv6 offset message id.
pub const MSG_ID_LEN_V6: usize = 56;

/// Appends the offset message id of (`store_host`, `commit_log_offset`) to `out`.
pub fn encode_into(out: &mut String, store_host: SocketAddr, commit_log_offset: i64) {
    let mut raw = [0u8; 28];
    let n = match store_host.ip() {
        IpAddr::V4(ip) => {
            raw[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            raw[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    raw[n..n + 4].copy_from_slice(&(store_host.port() as i32).to_be_bytes());
    raw[n + 4..n + 12].copy_from_slice(&commit_log_offset.to_be_bytes());
    let mut text = [0u8; MSG_ID_LEN_V6];
    let text = &mut text[..(n + 12) * 2];
    // Lengths match by construction: 2 hex digits per byte.
    if hex::encode_to_slice(&raw[..n + 12], text).is_ok() {
        text.make_ascii_uppercase();
        out.push_str(std::str::from_utf8(text).unwrap_or_default());
    }
}

/// The offset message id of (`store_host`, `commit_log_offset`).
pub fn encode(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut s = String::with_capacity(MSG_ID_LEN_V6);
    encode_into(&mut s, store_host, commit_log_offset);
    s
}

/// Decodes an offset message id (hex case-insensitive) into (store host, commit-log offset).
pub fn decode(id: &str) -> Result<(SocketAddr, i64), BodyError> {
    let invalid = || BodyError::InvalidMessageId(id.chars().take(64).collect());
    let ip_len = match id.len() {
        MSG_ID_LEN_V4 => 4,
        MSG_ID_LEN_V6 => 16,
        _ => return Err(invalid()),
    };
    let mut raw = [0u8; 28];
    hex::decode_to_slice(id, &mut raw[..id.len() / 2]).map_err(|_| invalid())?;
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&raw[..16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    let mut p = [0u8; 4];
    p.copy_from_slice(&raw[ip_len..ip_len + 4]);
    let port = u16::try_from(i32::from_be_bytes(p)).map_err(|_| invalid())?;
    let mut o = [0u8; 8];
    o.copy_from_slice(&raw[ip_len + 4..ip_len + 12]);
    Ok((SocketAddr::new(ip, port), i64::from_be_bytes(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_id() {
        // From a captured C++ transaction check: 127.0.0.1:9876, offset 5000.
        let (addr, off) = decode("7F000001000026940000000000001388").unwrap();
        assert_eq!(addr, "127.0.0.1:9876".parse::<SocketAddr>().unwrap());
        assert_eq!(off, 5000);
        assert_eq!(encode(addr, off), "7F000001000026940000000000001388");
    }

    #[test]
    fn v6_and_errors() {
        let a: SocketAddr = "[::1]:10911".parse().unwrap();
        let id = encode(a, i64::MAX);
        assert_eq!(id.len(), MSG_ID_LEN_V6);
        assert_eq!(decode(&id).unwrap(), (a, i64::MAX));
        assert_eq!(decode(&id.to_lowercase()).unwrap(), (a, i64::MAX));
        for bad in [
            "",
            "7F00",
            "ZZ000001000026940000000000001388",
            "7F0000010001FFFF0000000000001388",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        // Non-ASCII of the right byte length must not panic.
        assert!(decode("é7000001000026940000000000001388").is_err());
    }
}
