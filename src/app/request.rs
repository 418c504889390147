//! What a request says about its sender: its address, whether it came
//! over HTTPS, and whether it comes from a page of this site.

use actix_web::http::header;

/// The last value of a header a proxy appends to (`X-Forwarded-For`) or
/// sets (`X-Forwarded-Proto`): the proxy's own, where every earlier one is
/// the client's to write.
fn last_forwarded<'a>(req: &'a actix_web::HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(name)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .last()
        .map(str::trim)
}

/// Whether the client reached us over HTTPS: `COOKIE_SECURE` says every
/// client does; behind a trusted proxy (`TRUST_FORWARDED`), the proxy's
/// `X-Forwarded-Proto` says so.
pub fn over_https(req: &actix_web::HttpRequest, config: &crate::config::Config) -> bool {
    config.cookie_secure
        || (config.trust_forwarded
            && last_forwarded(req, "x-forwarded-proto")
                .is_some_and(|proto| proto.eq_ignore_ascii_case("https")))
}

/// The client's address, as throttles and caps count it: the peer's, or
/// with `trust_forwarded` (behind a proxy such as traefik) the last
/// `X-Forwarded-For` hop, the one the proxy itself appended; every earlier
/// hop (and `Forwarded`, which traefik passes through) is the client's to
/// write. An IPv6 address counts by its /64, what one subscriber holds.
pub fn client_address(req: &actix_web::HttpRequest, trust_forwarded: bool) -> std::net::IpAddr {
    let peer = req
        .peer_addr()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |addr| addr.ip());
    let address = if trust_forwarded {
        last_forwarded(req, "x-forwarded-for")
            .and_then(|hop| hop.parse().ok())
            .unwrap_or(peer)
    } else {
        peer
    };
    match address {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::Ipv6Addr::from(prefix).into()
            }
        },
        v4 => v4,
    }
}

/// Whether a browser request comes from a page of this site. Browsers send
/// `Origin` on WebSocket handshakes and POSTs (`Referer` where they do
/// not), and apply no CORS to either, so a page on another site could
/// otherwise use the user's cookie, or log them in as someone else.
/// Requests that carry neither (not browsers) are let through.
pub fn same_origin(req: &actix_web::HttpRequest) -> bool {
    let headers = req.headers();
    let Some(claimed) = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
    else {
        return true;
    };
    let Some(host) = headers.get(header::HOST) else {
        return false;
    };
    match (claimed.to_str(), host.to_str()) {
        (Ok(claimed), Ok(host)) => claimed
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}
