//! The `otx-relay` command: serve (the default), `token`, `healthcheck`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otx_relay::app::App;
use otx_relay::auth::{self, MIN_SECRET_KEY_BYTES};
use otx_relay::config::Config;
use otx_relay::log;
use otx_relay::server::{OnFailure, Relay};

const HELP: &str = "\
otx-relay — Threat Response relay module for AlienVault OTX

USAGE:
    otx-relay                 serve on $HOST:$PORT (default 0.0.0.0:9090)
    otx-relay token --key KEY [--limit N] [--ttl SECONDS] [--pulse-id ID]
                              print a JWT for Threat Response, signed with $SECRET_KEY
                              (--pulse-id: the OTX pulse respond actions add to)
    otx-relay healthcheck     GET /watchdog on $HOST:$PORT (127.0.0.1 or ::1 when HOST is
                              unset or 0.0.0.0 or ::); exit 0 if it answers, 1 if not
    otx-relay module-type --url URL [--jwks-host HOST]
                              print the module type to register the relay in Cisco XDR
                              (URL: its public https:// base URL; HOST: your XDR region's
                              visibility host [visibility.amp.cisco.com])
    otx-relay --help | --version

ENVIRONMENT (empty counts as unset):
    SECRET_KEY          HS256 secret of the Bearer JWT (unset: every call is refused)
    AVOTX_URL           OTX base URL                      [https://otx.alienvault.com]
    CTR_ENTITIES_LIMIT  max sightings per observable       [100, at most 1000]
    HOST, PORT          listening address                  [0.0.0.0, 9090]
    AVOTX_TIMEOUT       seconds for one OTX request         [10]
    RELAY_DEADLINE      seconds for one /observe call       [25]
    RELAY_THREADS       HTTP worker threads                [64]
    AVOTX_CONCURRENCY   OTX requests in flight at once      [32]
    CACHE_TTL           seconds OTX answers are cached, 0 = off [300]
    CACHE_MAX_ENTRIES   cache size                          [10000]
    AVOTX_MAX_BODY      largest OTX answer read, bytes      [67108864]
    OTX_MALICIOUS_PULSES  pulses that make a verdict Malicious [2]
    VERDICT_VALID_DAYS  lifetime of a verdict, days         [7]
    RELAY_CLIENT_TIMEOUT  seconds a silent client is kept     [10]
    SSL_CERT_FILE       PEM bundle replacing the built-in roots
    HTTPS_PROXY, NO_PROXY  egress proxy (http:// CONNECT proxies only)
    RELAY_AUDIENCE      this relay's public base URLs; set: accept XDR's RS256 tokens
    JWKS_HOSTS          hosts XDR tokens may name for their keys [the 3 Cisco visibility hosts]
    JWKS_TTL            seconds fetched keys are trusted    [3600]
    TILE_CACHE_TTL      seconds one walk of subscribed pulses serves the tiles [600]
    TILE_MAX_PULSES     most subscribed pulses one walk reads [1000]
    PASSIVE_DNS         on: /observe adds OTX's passive DNS of IPs, domains, hostnames [on]
    PASSIVE_DNS_LIMIT   most resolutions per observable, 1 to 1000 [50]
";

/// The longest `token --ttl`: 100 years, in seconds.
const MAX_TTL: u64 = 100 * 365 * 24 * 60 * 60 + 25 * 24 * 60 * 60;
const _: () = assert!(MAX_TTL > 100 * 365 * 86_400 && MAX_TTL < 101 * 365 * 86_400);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => serve(),
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("otx-relay {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("token") => token(&args[1..]),
        Some("healthcheck") => healthcheck(),
        Some("module-type") => match module_type(&args[1..]) {
            Ok(document) => {
                println!("{document}");
                Ok(())
            }
            // A usage error: exit 2, as `--url` validation promises.
            Err(message) => {
                eprintln!("otx-relay: {message}");
                return ExitCode::from(2);
            }
        },
        Some(other) => Err(format!("unknown argument '{other}'; see otx-relay --help")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("otx-relay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    match &config.secret_key {
        None => log::warn(format_args!(
            "SECRET_KEY is not set: every authenticated call will answer '<SECRET_KEY> is missing'"
        )),
        // RFC 7518 §3.2: an HS256 key shorter than the hash is guessable.
        Some(key) if key.len() < MIN_SECRET_KEY_BYTES => log::warn(format_args!(
            "SECRET_KEY is {} bytes long: use at least {MIN_SECRET_KEY_BYTES} random bytes (RFC 7518 §3.2)",
            key.len()
        )),
        Some(_) => {}
    }
    // Block SIGTERM/SIGINT before any thread starts, then wait for them on
    // this one.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let app = App::new(config)?;
    // A listener that fails for good ends the wait below as a signal would,
    // and the process with an error.
    let failure = Arc::new(Mutex::new(None::<String>));
    let on_failure: OnFailure = {
        let (failure, handle) = (failure.clone(), signals.handle());
        Arc::new(move |why: String| {
            failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(why);
            handle.close();
        })
    };
    let relay = Relay::start(app, on_failure)?;
    log::info(format_args!(
        "otx-relay {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        relay.addr()
    ));
    let signal = signals.forever().next();
    if let Some(why) = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(why);
    }
    log::info(format_args!(
        "signal {} received: finishing in-flight requests",
        signal.unwrap_or(0)
    ));
    if relay.shutdown() {
        log::info(format_args!("stopped"));
    } else {
        log::warn(format_args!(
            "some requests were still running after the drain time"
        ));
    }
    Ok(())
}

fn token(args: &[String]) -> Result<(), String> {
    let (mut key, mut limit, mut ttl, mut pulse_id) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--key" => key = Some(value()?.clone()),
            "--pulse-id" => {
                let v = value()?;
                if !auth::is_pulse_id(v) {
                    return Err(format!(
                        "--pulse-id must be an OTX pulse id (24 hex digits), not '{v}'"
                    ));
                }
                pulse_id = Some(v.to_ascii_lowercase());
            }
            "--limit" => {
                let v = value()?;
                limit = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("--limit must be a positive integer, not '{v}'"))?,
                );
            }
            "--ttl" => {
                let v = value()?;
                ttl = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| (1..=MAX_TTL).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "--ttl must be a positive number of seconds no larger than {MAX_TTL} (100 years), not '{v}'"
                            )
                        })?,
                );
            }
            other => {
                return Err(format!(
                    "unknown option '{other}' for token; see otx-relay --help"
                ))
            }
        }
    }
    let key = key.ok_or("token needs --key <OTX API key>")?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("--key must be a non-empty OTX API key of visible ASCII characters".to_owned());
    }
    let secret = otx_relay::config::secret_key_from_env().unwrap_or_default();
    if secret.is_empty() {
        return Err(
            "SECRET_KEY is not set; set it to the relay's secret (32 bytes or more)".to_owned(),
        );
    }
    if secret.len() < MIN_SECRET_KEY_BYTES {
        return Err(format!(
            "SECRET_KEY is {} bytes long; use {MIN_SECRET_KEY_BYTES} bytes or more (e.g. `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let expires_at = match ttl {
        None => None,
        Some(t) => Some(
            now.checked_add(t)
                .ok_or_else(|| format!("--ttl {t} puts the expiry past the end of time"))?,
        ),
    };
    let extra = auth::Mint {
        limit,
        expires_at,
        pulse_id,
    };
    println!("{}", auth::mint(&secret, &key, &extra));
    Ok(())
}

/// `module-type --url URL [--jwks-host HOST]`: the document to print.
fn module_type(args: &[String]) -> Result<String, String> {
    use otx_relay::module_type::{check_url, document, DEFAULT_JWKS_HOST};
    let (mut url, mut jwks_host) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(check_url(value?)?),
            "--jwks-host" => {
                let host = value?.trim().to_ascii_lowercase();
                if host.is_empty() || host.contains(['/', ' ', '@']) {
                    return Err(format!("--jwks-host must be a host name, not '{host}'"));
                }
                jwks_host = Some(host);
            }
            other => return Err(format!("unknown argument '{other}'; see otx-relay --help")),
        }
    }
    let url = url.ok_or("module-type needs --url <the relay's public https:// base URL>")?;
    let document = document(&url, jwks_host.as_deref().unwrap_or(DEFAULT_JWKS_HOST));
    serde_json::to_string_pretty(&document).map_err(|e| e.to_string())
}

fn healthcheck() -> Result<(), String> {
    use std::io::{Read, Write};
    let (host, port) = otx_relay::config::listen_address_from_env().map_err(|e| e.to_string())?;
    let addr = healthcheck_addr(host.as_deref(), port)?;
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("healthcheck: cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    stream
        .write_all(b"GET /watchdog HTTP/1.1\r\nHost: localhost\r\nHealth-Check: healthcheck\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("healthcheck: {e}"))?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    if answer.starts_with("HTTP/1.1 200") && answer.contains(r#"{"data":"healthcheck"}"#) {
        Ok(())
    } else {
        Err(format!("healthcheck: unexpected answer from {addr}"))
    }
}

/// Where `healthcheck` connects: `HOST` when it names one address (or a
/// name, resolved), the loopback address of its family when it is unset,
/// empty or a wildcard (`0.0.0.0`, `::`).
fn healthcheck_addr(host: Option<&str>, port: u16) -> Result<SocketAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
    let host = host.map(str::trim).unwrap_or("");
    // `[::1]` as well as `::1`.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = match bare.parse::<IpAddr>() {
        _ if bare.is_empty() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => {
            return (bare, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| format!("healthcheck: cannot resolve HOST '{bare}'"))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_addr_honours_host() {
        for (host, want) in [
            (None, "127.0.0.1:9090"),
            (Some(""), "127.0.0.1:9090"),
            (Some("0.0.0.0"), "127.0.0.1:9090"),
            (Some("::"), "[::1]:9090"),
            (Some("[::]"), "[::1]:9090"),
            (Some("127.0.0.2"), "127.0.0.2:9090"),
            (Some("10.1.2.3"), "10.1.2.3:9090"),
            (Some("::1"), "[::1]:9090"),
            (Some("[fe80::1]"), "[fe80::1]:9090"),
        ] {
            let got = healthcheck_addr(host, 9090).expect("an address");
            assert_eq!(got.to_string(), want, "{host:?}");
        }
        let local = healthcheck_addr(Some("localhost"), 9090).expect("localhost resolves");
        assert!(local.ip().is_loopback(), "{local}");
    }
}
