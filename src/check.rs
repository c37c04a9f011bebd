//! `otx-relay check` (SPEC §8): the first thing to run after a deploy. It
//! walks the way to OTX one step at a time, as the server would go —
//! name resolution, the connection (through the proxy if one applies),
//! TLS with the configured roots, the key (`user/me`), one known
//! indicator — and prints one line per step: its time, and `ok` or what is
//! wrong and which variable to look at. With `--jwks-host`, an XDR JWKS
//! host the same way. It stops at the first step of a way that fails (the
//! next ones could only fail too) and never prints the key.
//!
//! Resolution and the connection are made here, by hand, so that each can
//! be named; everything over HTTP goes through the relay's own agent
//! ([`egress::agent`]), with the relay's roots, proxy and timeouts.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{url_host_port, Config, Proxy};
use crate::egress;
use crate::jwks;
use crate::metrics::Metrics;
use crate::otx::{self, Probe};

/// What a step found: `Ok` with an optional detail, or what is wrong.
type Verdict = Result<Option<String>, String>;

/// Where the lines go, and whether every step so far passed.
struct Report<'a> {
    out: &'a mut dyn Write,
    passed: bool,
}

impl Report<'_> {
    /// Runs `step`, prints its line, and returns its verdict.
    fn step(&mut self, name: fmt::Arguments, step: impl FnOnce() -> Verdict) -> Verdict {
        let started = Instant::now();
        let verdict = step();
        let took = started.elapsed().as_millis();
        let said = match &verdict {
            Ok(None) => "ok".to_owned(),
            Ok(Some(detail)) => format!("ok ({detail})"),
            Err(why) => why.clone(),
        };
        self.passed &= verdict.is_ok();
        // A closed stdout cannot be reported anywhere.
        let _ = writeln!(self.out, "[{took:>5} ms] {name}: {said}");
        verdict
    }

    /// A line that is no step of its own (a configuration mistake).
    fn note(&mut self, text: &str) {
        self.passed = false;
        let _ = writeln!(self.out, "[{:>5} ms] {text}", 0);
    }
}

/// Runs the checks, writing one line per step to `out`; whether they all
/// passed. `key` is the OTX key (`--key` or `OTX_API_KEY`).
pub fn run(
    config: &Config,
    key: Option<&str>,
    jwks_host: Option<&str>,
    out: &mut dyn Write,
) -> bool {
    let mut report = Report { out, passed: true };
    // The check's name lookups are counted nowhere anyone reads: it prints
    // its own steps.
    let agent = match egress::agent(config, 2, &Arc::new(Metrics::new())) {
        Ok(agent) => agent,
        Err(why) => {
            report.note(&why);
            return false;
        }
    };
    let http = Http {
        agent,
        timeout: config.otx_timeout,
    };
    if let Some(warning) = otx::base_url_warning(&config.otx_url) {
        report.note(&warning);
    }
    let base = &config.otx_url;
    if reach(
        &mut report,
        config,
        base,
        "AVOTX_URL",
        &http,
        Probe::Tls.url(base),
    ) {
        otx_steps(&mut report, &http, base, key);
    }
    if let Some(host) = jwks_host {
        let url = format!("https://{host}");
        let jwks = format!("{url}/.well-known/jwks");
        if reach(
            &mut report,
            config,
            &url,
            "--jwks-host",
            &http,
            jwks.clone(),
        ) {
            let _ = report.step(format_args!("GET {}", path(&jwks)), || {
                let response = http.get(&jwks, None).map_err(|e| failure(&e, config))?;
                match response.0 {
                    200 => {}
                    status => {
                        return Err(format!(
                            "answered {}; check --jwks-host",
                            status_text(status)
                        ))
                    }
                }
                match jwks::parse(&response.1) {
                    Ok(keys) if !keys.is_empty() => Ok(Some(format!("{} usable keys", keys.len()))),
                    Ok(_) => Err("no usable RSA key in the answer; check --jwks-host".to_owned()),
                    Err(why) => Err(format!("{why}; check --jwks-host")),
                }
            });
        }
    }
    report.passed
}

/// The key, then the known indicator.
fn otx_steps(report: &mut Report, http: &Http, base: &str, key: Option<&str>) {
    for probe in [Probe::Key, Probe::Indicator] {
        let url = probe.url(base);
        let verdict = report.step(format_args!("GET {}", path(&url)), || {
            let key = key.ok_or("no key: pass --key KEY or set OTX_API_KEY")?;
            let (status, body) = http.get(&url, Some(key)).map_err(|e| e.to_string())?;
            match status {
                200 if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() => Ok(None),
                200 => Err(
                    "the answer is not JSON; check AVOTX_URL (a proxy's or portal's page?)"
                        .to_owned(),
                ),
                403 => Err(
                    "OTX refused the key (403 Forbidden); check --key or OTX_API_KEY".to_owned(),
                ),
                429 => Err(
                    "OTX throttles this key or address (429 Too Many Requests); try again later"
                        .to_owned(),
                ),
                500..=599 => Err(format!(
                    "OTX failed ({}); try again later",
                    status_text(status)
                )),
                _ => Err(format!(
                    "OTX answered {}; check AVOTX_URL",
                    status_text(status)
                )),
            }
        });
        if verdict.is_err() {
            return;
        }
    }
}

/// Resolution, connection (and the proxy's tunnel) and TLS of `url`, the
/// TLS step by a GET of `probe`; whether they all passed. `variable` is
/// what names `url` (to fix when it does not resolve or connect).
fn reach(
    report: &mut Report,
    config: &Config,
    url: &str,
    variable: &str,
    http: &Http,
    probe: String,
) -> bool {
    let Some((host, port)) = url_host_port(url) else {
        report.note(&format!("{url} names no host; check {variable}"));
        return false;
    };
    let proxy = config.proxy.as_ref().filter(|p| !p.bypasses(&host, port));
    let (to_host, to_port, to_fix, whose) = match proxy {
        Some(p) => (p.host.as_str(), p.port, p.variable, " (the proxy)"),
        None => (host.as_str(), port, variable, ""),
    };
    let bare = to_host.trim_start_matches('[').trim_end_matches(']');
    let mut addr = None;
    let resolved = report.step(format_args!("resolve {to_host}{whose}"), || {
        let found = (bare, to_port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next());
        addr = found;
        match found {
            Some(a) => Ok(Some(a.ip().to_string())),
            None => Err(format!(
                "the name does not resolve; check {to_fix} (and this host's DNS)"
            )),
        }
    });
    let Some(addr) = addr.filter(|_| resolved.is_ok()) else {
        return false;
    };
    let mut stream = None;
    let connected = report.step(format_args!("connect {addr}{whose}"), || {
        let s = connect(addr, config.otx_timeout, to_fix)?;
        stream = Some(s);
        Ok(None)
    });
    let Some(stream) = stream.filter(|_| connected.is_ok()) else {
        return false;
    };
    if let Some(p) = proxy {
        let tunnel = report.step(
            format_args!("CONNECT {host}:{port} through the proxy"),
            || tunnel(stream, p, &host, port, config.otx_timeout),
        );
        if tunnel.is_err() {
            return false;
        }
    }
    if !url.starts_with("https://") {
        return true;
    }
    let tls = report.step(format_args!("TLS {host}"), || {
        http.get(&probe, None)
            .map(|_| None)
            .map_err(|e| failure(&e, config))
    });
    tls.is_ok()
}

/// A TCP connection to `addr` within `timeout`, or what is wrong.
fn connect(addr: SocketAddr, timeout: Duration, to_fix: &str) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("refused; check {to_fix}"),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!(
            "no answer within AVOTX_TIMEOUT ({} s); check {to_fix} and the firewalls on the way",
            timeout.as_secs()
        ),
        _ => format!("{e}; check {to_fix}"),
    })
}

/// Asks the proxy on `stream` for a tunnel to `host:port` (what ureq does
/// before every OTX call through it), or says what it answered.
fn tunnel(stream: TcpStream, proxy: &Proxy, host: &str, port: u16, timeout: Duration) -> Verdict {
    use base64::Engine;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(user) = &proxy.user {
        let pair = format!("{user}:{}", proxy.password.as_deref().unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    let mut writer = &stream;
    writer
        .write_all(request.as_bytes())
        .map_err(|e| format!("the proxy went away ({e}); check {}", proxy.variable))?;
    let mut line = String::new();
    BufReader::new(stream.take(4096))
        .read_line(&mut line)
        .map_err(|e| format!("the proxy did not answer ({e}); check {}", proxy.variable))?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(None),
        Some(status) => Err(format!(
            "the proxy refused ({}); check {} and NO_PROXY",
            status_text(status),
            proxy.variable
        )),
        None => Err(format!(
            "the proxy's answer is not HTTP; check {}",
            proxy.variable
        )),
    }
}

/// What a failed exchange means, and what to look at.
fn failure(e: &ureq::Error, config: &Config) -> String {
    use ureq::Error as E;
    let tls = |why: String| format!("the certificate did not verify ({why}); check SSL_CERT_FILE");
    match e {
        E::Tls(why) => tls((*why).to_owned()),
        E::Rustls(why) => tls(why.to_string()),
        E::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(why) => tls(why.to_string()),
            None => io.to_string(),
        },
        E::Timeout(_) => format!(
            "no answer within AVOTX_TIMEOUT ({} s)",
            config.otx_timeout.as_secs()
        ),
        other => other.to_string(),
    }
}

/// `403 Forbidden`.
fn status_text(status: u16) -> String {
    match ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// The path of `url` (what follows its authority).
fn path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// GETs through the relay's agent.
struct Http {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Http {
    /// The status and (at most 1 MiB of) the body of `GET url`.
    fn get(&self, url: &str, key: Option<&str>) -> Result<(u16, Vec<u8>), ureq::Error> {
        let response = otx::probe(&self.agent, url, key, self.timeout)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .into_body()
            .into_with_config()
            .limit(1024 * 1024)
            .reader()
            .read_to_end(&mut body)?;
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_urls() {
        assert_eq!(path("https://example.com/a/b/c?d"), "/a/b/c?d");
        assert_eq!(path("http://127.0.0.1:9"), "/");
    }
}
