//! The outbound HTTPS client every call to the outside world shares (OTX,
//! and the JWKS hosts of XDR tokens): one keep-alive pool, the configured
//! roots (`SSL_CERT_FILE` or the built-in Mozilla ones) and proxy, no
//! redirects followed, statuses returned rather than raised, host names
//! resolved at most once a minute ([`resolver`]).

use std::sync::Arc;
use std::time::Duration;

use ureq::unversioned::transport::DefaultConnector;

use crate::config::{url_host_port, Config, Proxy};
use crate::metrics::Metrics;

pub mod resolver;
use resolver::CachingResolver;

/// Every request names the relay (SPEC §4).
pub const USER_AGENT: &str =
    "SecureX Threat Response Integrations <tr-integrations-support@cisco.com>";

/// The agent, keeping up to `idle` connections alive, counting its name
/// lookups in `metrics`.
pub fn agent(config: &Config, idle: usize, metrics: &Arc<Metrics>) -> Result<ureq::Agent, String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(pem) = &config.ca_pem {
        let certs: Vec<_> = ureq::tls::parse_pem(pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let agent_config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        // A key travels in a header: never follow a server elsewhere.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(config.otx_timeout))
        // What a call may take at most; a caller whose deadline is nearer
        // sets a shorter one for its request.
        .timeout_global(Some(config.otx_timeout))
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle)
        .max_idle_age(Duration::from_secs(50))
        // Each pooled connection keeps its buffers (128 KiB each way by
        // default: 16 MiB for 64 connections), zeroed, so resident. An
        // answer's head is a few hundred bytes and pages stream through
        // (16 KiB instead of 32: 0.1 byte less RSS per answer byte of a
        // 2 000-observable answer, the popular observable unchanged);
        // requests are a few hundred bytes, but for a long URL observable.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .tls_config(tls.build())
        // The proxy `config` read, never one ureq would find itself.
        .proxy(
            config
                .proxy
                .as_ref()
                .map(|p| proxy(p, config))
                .transpose()?,
        )
        .build();
    // ureq's own connectors (TCP, CONNECT proxy, rustls); only the resolver
    // is ours.
    Ok(ureq::Agent::with_parts(
        agent_config,
        DefaultConnector::new(),
        CachingResolver::new(metrics.clone()),
    ))
}

/// The ureq form of the configured proxy. ureq reads `NO_PROXY` entries as
/// host names only (no CIDR range, no `host:port`), so `NO_PROXY` is read
/// here ([`Proxy::bypasses`]) for the hosts the relay calls, which are
/// known (OTX, the JWKS hosts), and ureq is given those it bypasses.
fn proxy(p: &Proxy, config: &Config) -> Result<ureq::Proxy, String> {
    let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
        .host(&p.host)
        .port(p.port);
    if let Some(user) = &p.user {
        builder = builder.username(user);
    }
    if let Some(password) = &p.password {
        builder = builder.password(password);
    }
    let jwks = config.jwks_hosts.iter().map(|h| format!("https://{h}"));
    let called = std::iter::once(config.otx_url.clone()).chain(jwks);
    for (host, port) in called.filter_map(|url| url_host_port(&url)) {
        if p.bypasses(&host, port) {
            builder = builder.no_proxy(&host);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot use the proxy {}:{}: {e}", p.host, p.port))
}
