//! The command line: `serve` (the default), `token`, `healthcheck`,
//! `module-type`, `check`, `--help`, `--version`. [`parse`] turns the
//! arguments into a [`Command`] (lexopt: strict, no magic); [`run`] runs it.
//! Errors are a [`Failure`]: what to print and the exit code (`main` prints
//! it); a usage error of `module-type` exits 2, everything else 1.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lexopt::Arg::{Long, Short, Value};

use crate::auth::{self, MIN_SECRET_KEY_BYTES};
use crate::config::{self, Config};

pub const HELP: &str = "\
otx-relay — Threat Response relay module for AlienVault OTX

USAGE:
    otx-relay [serve]         serve on $HOST:$PORT (default 0.0.0.0:9090)
    otx-relay token --key KEY [--limit N] [--ttl SECONDS] [--pulse-id ID]
                              print a JWT for Threat Response, signed with $SECRET_KEY
                              (--pulse-id: the OTX pulse respond actions add to)
    otx-relay healthcheck     GET /watchdog on $HOST:$PORT (127.0.0.1 or ::1 when HOST is
                              unset or 0.0.0.0 or ::); exit 0 if it answers, 1 if not
    otx-relay module-type --url URL [--jwks-host HOST]
                              print the module type to register the relay in Cisco XDR
                              (URL: its public https:// base URL; HOST: your XDR region's
                              visibility host [visibility.amp.cisco.com])
    otx-relay check [--key KEY] [--jwks-host HOST]
                              check the way to OTX step by step, as the server would go
                              (KEY: an OTX API key, else $OTX_API_KEY; HOST: also check an
                              XDR JWKS host); exit 0 only when every step passes
    otx-relay --help | --version
";

/// The longest `token --ttl`: 100 years, in seconds.
const MAX_TTL: u64 = 100 * 365 * 24 * 60 * 60 + 25 * 24 * 60 * 60;
const _: () = assert!(MAX_TTL > 100 * 365 * 86_400 && MAX_TTL < 101 * 365 * 86_400);

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Help,
    Version,
    Token(Token),
    Healthcheck,
    ModuleType {
        url: String,
        jwks_host: Option<String>,
    },
    Check {
        key: Option<String>,
        jwks_host: Option<String>,
    },
}

/// `token`'s options, checked.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Token {
    pub key: String,
    pub limit: Option<usize>,
    pub ttl: Option<u64>,
    pub pulse_id: Option<String>,
}

impl std::fmt::Debug for Token {
    // Hand-written: the key is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("limit", &self.limit)
            .field("ttl", &self.ttl)
            .field("pulse_id", &self.pulse_id)
            .finish_non_exhaustive()
    }
}

/// Why the command failed: the line to print (none when the command has
/// said it already) and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: Option<String>,
    pub code: u8,
}

impl Failure {
    /// Exit 1 with `message`.
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: Some(message.into()),
            code: 1,
        }
    }

    /// A usage error: exit 2 (`module-type`).
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: Some(message.into()),
            code: 2,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::new(message)
    }
}

/// The command `args` (without the program name) ask for.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Failure> {
    let mut args = args.into_iter();
    // The first argument picks the command, taken whole (`-hV` is no
    // command); lexopt reads the options after it.
    let Some(first) = args.next() else {
        return Ok(Command::Serve);
    };
    let mut parser = lexopt::Parser::from_args(args);
    match first.to_string_lossy().as_ref() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        "serve" => no_more(&mut parser, "serve").map(|()| Command::Serve),
        "healthcheck" => no_more(&mut parser, "healthcheck").map(|()| Command::Healthcheck),
        "token" => token(&mut parser).map(Command::Token),
        "module-type" => module_type(&mut parser).map_err(Failure::usage),
        "check" => check(&mut parser),
        other => Err(Failure::new(format!(
            "unknown argument '{other}'; see otx-relay --help"
        ))),
    }
}

/// Runs `command`; `serve` is what serving is (`server::serve`, which
/// `main` passes in: the command line sits below the server).
pub fn run(command: Command, serve: impl FnOnce() -> Result<(), String>) -> Result<(), Failure> {
    match command {
        Command::Serve => serve().map_err(Failure::new),
        Command::Help => {
            print!(
                "{HELP}\nENVIRONMENT (empty counts as unset):\n{}",
                config::help()
            );
            Ok(())
        }
        Command::Version => {
            println!("otx-relay {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Token(options) => mint(&options).map_err(Failure::new),
        Command::Healthcheck => healthcheck().map_err(Failure::new),
        Command::ModuleType { url, jwks_host } => {
            use crate::module_type::{document, DEFAULT_JWKS_HOST};
            let document = document(&url, jwks_host.as_deref().unwrap_or(DEFAULT_JWKS_HOST));
            let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        Command::Check { key, jwks_host } => {
            let mut config = Config::from_env().map_err(|e| e.to_string())?;
            let key = key.or_else(crate::config::otx_api_key_from_env);
            if let Some(host) = &jwks_host {
                // The host is called as the server would call an allowed one.
                config.jwks_hosts = vec![host.clone()];
            }
            let passed = crate::check::run(
                &config,
                key.as_deref(),
                jwks_host.as_deref(),
                &mut std::io::stdout().lock(),
            );
            if passed {
                Ok(())
            } else {
                // Each step has said what failed.
                Err(Failure {
                    message: None,
                    code: 1,
                })
            }
        }
    }
}

/// An option or value as the user typed it, for messages.
fn shown(arg: &lexopt::Arg) -> String {
    match arg {
        Long(name) => format!("--{name}"),
        Short(c) => format!("-{c}"),
        Value(v) => v.to_string_lossy().into_owned(),
    }
}

/// The value of `flag`, as text.
fn value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let value = parser
        .value()
        .map_err(|_| format!("{flag} needs a value"))?;
    value
        .into_string()
        .map_err(|_| format!("{flag} must be valid UTF-8"))
}

/// Nothing may follow `command`.
fn no_more(parser: &mut lexopt::Parser, command: &str) -> Result<(), Failure> {
    match parser.next().map_err(|e| Failure::new(e.to_string()))? {
        None => Ok(()),
        Some(arg) => Err(Failure::new(format!(
            "unknown argument '{}' for {command}; see otx-relay --help",
            shown(&arg)
        ))),
    }
}

/// `token --key KEY [--limit N] [--ttl SECONDS] [--pulse-id ID]`.
fn token(parser: &mut lexopt::Parser) -> Result<Token, Failure> {
    let mut options = Token::default();
    let mut key = None;
    while let Some(arg) = parser.next().map_err(|e| Failure::new(e.to_string()))? {
        match arg {
            Long("key") => key = Some(value(parser, "--key")?),
            Long("pulse-id") => {
                let v = value(parser, "--pulse-id")?;
                if !auth::is_pulse_id(&v) {
                    return Err(Failure::new(format!(
                        "--pulse-id must be an OTX pulse id (24 hex digits), not '{v}'"
                    )));
                }
                options.pulse_id = Some(v.to_ascii_lowercase());
            }
            Long("limit") => {
                let v = value(parser, "--limit")?;
                options.limit = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("--limit must be a positive integer, not '{v}'"))?,
                );
            }
            Long("ttl") => {
                let v = value(parser, "--ttl")?;
                options.ttl = Some(
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
                return Err(Failure::new(format!(
                    "unknown option '{}' for token; see otx-relay --help",
                    shown(&other)
                )))
            }
        }
    }
    let key = key.ok_or_else(|| Failure::new("token needs --key <OTX API key>"))?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::new(
            "--key must be a non-empty OTX API key of visible ASCII characters",
        ));
    }
    options.key = key;
    Ok(options)
}

/// `module-type --url URL [--jwks-host HOST]`.
fn module_type(parser: &mut lexopt::Parser) -> Result<Command, String> {
    let (mut url, mut jwks_host) = (None, None);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("url") => url = Some(crate::module_type::check_url(&value(parser, "--url")?)?),
            Long("jwks-host") => jwks_host = Some(host(&value(parser, "--jwks-host")?)?),
            other => {
                return Err(format!(
                    "unknown argument '{}'; see otx-relay --help",
                    shown(&other)
                ))
            }
        }
    }
    let url = url.ok_or("module-type needs --url <the relay's public https:// base URL>")?;
    Ok(Command::ModuleType { url, jwks_host })
}

/// `check [--key KEY] [--jwks-host HOST]`.
fn check(parser: &mut lexopt::Parser) -> Result<Command, Failure> {
    let (mut key, mut jwks_host) = (None, None);
    while let Some(arg) = parser.next().map_err(|e| Failure::new(e.to_string()))? {
        match arg {
            Long("key") => key = Some(value(parser, "--key")?),
            Long("jwks-host") => jwks_host = Some(host(&value(parser, "--jwks-host")?)?),
            other => {
                return Err(Failure::new(format!(
                    "unknown option '{}' for check; see otx-relay --help",
                    shown(&other)
                )))
            }
        }
    }
    Ok(Command::Check { key, jwks_host })
}

/// A `--jwks-host`: a host name (with a port, maybe), lower-cased.
fn host(raw: &str) -> Result<String, String> {
    let host = raw.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(format!("--jwks-host must be a host name, not '{host}'"));
    }
    Ok(host)
}

/// Prints a JWT for `options`, signed with `SECRET_KEY`.
fn mint(options: &Token) -> Result<(), String> {
    let secret = crate::config::secret_key_from_env().unwrap_or_default();
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
    let expires_at = match options.ttl {
        None => None,
        Some(t) => Some(
            now.checked_add(t)
                .ok_or_else(|| format!("--ttl {t} puts the expiry past the end of time"))?,
        ),
    };
    let extra = auth::Mint {
        limit: options.limit,
        expires_at,
        pulse_id: options.pulse_id.clone(),
    };
    println!("{}", auth::mint(&secret, &options.key, &extra));
    Ok(())
}

fn healthcheck() -> Result<(), String> {
    let (host, port) = crate::config::listen_address_from_env().map_err(|e| e.to_string())?;
    let addr = healthcheck_addr(host.as_deref(), port)?;
    // The relay's own HTTP client, not one of its agents: no proxy (the
    // environment's is for OTX), no TLS, three seconds in all.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let url = format!("http://{addr}/watchdog");
    let answer = agent
        .get(&url)
        .header("Health-Check", "healthcheck")
        .call()
        .map_err(|e| format!("healthcheck: cannot reach {addr}: {e}"))?;
    let status = answer.status().as_u16();
    let body = answer.into_body().read_to_string().unwrap_or_default();
    if status == 200 && body == r#"{"data":"healthcheck"}"# {
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

    fn parsed(args: &[&str]) -> Result<Command, Failure> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_and_their_options() {
        assert_eq!(parsed(&[]), Ok(Command::Serve));
        assert_eq!(parsed(&["serve"]), Ok(Command::Serve));
        assert_eq!(parsed(&["--help", "x"]), Ok(Command::Help));
        assert_eq!(parsed(&["-V"]), Ok(Command::Version));
        assert_eq!(
            parsed(&["check", "--key=k", "--jwks-host", "Visibility.Example:8443"]),
            Ok(Command::Check {
                key: Some("k".to_owned()),
                jwks_host: Some("visibility.example:8443".to_owned()),
            })
        );
        let token = parsed(&["token", "--key", "k", "--limit", "5", "--ttl", "60"]);
        let Ok(Command::Token(token)) = token else {
            panic!("{token:?}");
        };
        assert_eq!(
            (token.key.as_str(), token.limit, token.ttl),
            ("k", Some(5), Some(60))
        );
        for (args, code, message) in [
            (
                &["-hV"][..],
                1,
                "unknown argument '-hV'; see otx-relay --help",
            ),
            (&["token", "--key"], 1, "--key needs a value"),
            (
                &["token", "-k", "x"],
                1,
                "unknown option '-k' for token; see otx-relay --help",
            ),
            (&["token"], 1, "token needs --key <OTX API key>"),
            (
                &["check", "--bogus"],
                1,
                "unknown option '--bogus' for check; see otx-relay --help",
            ),
            (
                &["healthcheck", "x"],
                1,
                "unknown argument 'x' for healthcheck; see otx-relay --help",
            ),
            (
                &["module-type"],
                2,
                "module-type needs --url <the relay's public https:// base URL>",
            ),
            (&["module-type", "--url"], 2, "--url needs a value"),
        ] {
            let failure = parsed(args).expect_err(message);
            assert_eq!(
                failure,
                Failure {
                    message: Some(message.to_owned()),
                    code
                },
                "{args:?}"
            );
        }
        // The key is never in a Debug output.
        assert!(!format!("{:?}", parsed(&["token", "--key", "sekrit"])).contains("sekrit"));
    }

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
