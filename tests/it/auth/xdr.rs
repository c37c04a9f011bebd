//! XDR's RS256 configuration tokens (SPEC §9) and the module type (§10),
//! against the harness's HTTPS server as the JWKS host (its test
//! certificate trusted through `SSL_CERT_FILE`) and RSA keys made at test
//! time with the `openssl` command (the harness's `SigningKey`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::support::*;

const AUDIENCE: &str = "https://relay.example.test";
const OBSERVE: &str = "/observe/observables";

// ---- RSA keys and tokens ----

/// Two keys for the whole suite (making one takes a moment).
fn keys() -> &'static [SigningKey; 2] {
    static KEYS: OnceLock<[SigningKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| [SigningKey::generate("key-1"), SigningKey::generate("key-2")])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// XDR's claims for `jwks_host`, as its tokens carry them.
fn claims(jwks_host: &str) -> Value {
    json!({"key": KEY, "jwks_host": jwks_host, "aud": AUDIENCE, "iss": "XDR",
           "iat": now(), "exp": now() + 600, "CTR_ENTITIES_LIMIT": "100"})
}

fn drop_claim(payload: &mut Value, name: &str) {
    if let Some(claims) = payload.as_object_mut() {
        claims.remove(name);
    }
}

fn header(kid: &str) -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": kid})
}

/// An RS256 token naming `jwks_host` that anyone can make: its signature is
/// garbage, but the keys are fetched before it is checked.
fn forged(jwks_host: &str) -> String {
    jwt_unsigned(&header("any"), &claims(jwks_host)) + "Zm9yZ2Vk"
}

const WRONG_JWKS_HOST: &str = "Authorization failed: Wrong jwks_host in JWT payload. Make sure domain follows the visibility.<region>.cisco.com structure";

/// How long a failed fetch is remembered (SPEC §9).
const FAILED_FOR: Duration = Duration::from_secs(10);

// ---- the JWKS host ----

/// The fake OTX over HTTPS as an XDR JWKS host: `GET /.well-known/jwks`
/// answers the keys it is given (500 while "down").
struct JwksHost {
    server: FakeOtx,
    keys: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
}

impl JwksHost {
    fn start(keys: Vec<Value>) -> JwksHost {
        let keys = Arc::new(Mutex::new(keys));
        let down = Arc::new(AtomicBool::new(false));
        let (served, is_down) = (keys.clone(), down.clone());
        let server = FakeOtx::start_tls();
        server.fallback(move |request| match request.path.as_str() {
            _ if is_down.load(Ordering::SeqCst) => Reply::status(500),
            "/.well-known/jwks" => {
                let keys = served.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Reply::json(json!({ "keys": keys }))
            }
            _ => Reply::status(404),
        });
        JwksHost { server, keys, down }
    }

    /// `127.0.0.1:PORT`, as `jwks_host` and `JWKS_HOSTS` name it.
    fn host(&self) -> String {
        self.server.addr().to_string()
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// Key fetches answered so far.
    fn fetches(&self) -> usize {
        self.server.requests().len()
    }

    fn connections(&self) -> usize {
        self.server.connections()
    }
}

/// A JWKS host that accepts connections and never answers nor closes
/// them, as behind a firewall that swallows packets or from a host that
/// stalls on purpose. It counts the connections it accepts.
struct SilentHost {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SilentHost {
    fn start() -> SilentHost {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the silent host");
        let addr = listener.local_addr().expect("its address");
        let (accepted, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (count, stopped) = (accepted.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                // Kept open, unread, until the host is dropped.
                held.extend(stream.ok());
            }
        });
        SilentHost {
            addr,
            accepted,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A relay that accepts XDR tokens whose keys `hosts` serve.
fn xdr_relay(otx: &FakeOtx, hosts: &[&JwksHost], extra: &[(&str, &str)]) -> Relay {
    let allowed: Vec<String> = hosts.iter().map(|h| h.host()).collect();
    xdr_relay_for(otx, &allowed, extra)
}

/// A relay that accepts XDR tokens from the JWKS hosts `allowed`.
fn xdr_relay_for(otx: &FakeOtx, allowed: &[String], extra: &[(&str, &str)]) -> Relay {
    let allowed = allowed.join(",");
    let mut env = vec![
        ("RELAY_AUDIENCE", AUDIENCE),
        ("JWKS_HOSTS", allowed.as_str()),
        ("SSL_CERT_FILE", TEST_CERT),
    ];
    env.extend_from_slice(extra);
    Relay::start(otx, &env)
}

/// `/health` with `token`: its one error's message, or "ok".
#[track_caller]
fn health(relay: &Relay, token: &str) -> String {
    let (status, body) = relay.post("/health", Some(&bearer(token)), "");
    assert_eq!(status, 200, "{body}");
    match body["errors"][0]["message"].as_str() {
        Some(message) => {
            assert_eq!(body["errors"][0]["code"], "authorization error", "{body}");
            message.to_owned()
        }
        None => {
            assert_eq!(body, json!({"data": {"status": "ok"}}));
            "ok".to_owned()
        }
    }
}

fn otx_with_user_me() -> FakeOtx {
    let otx = FakeOtx::start();
    otx.on("/api/v1/user/me", Reply::json(json!({"username": "x"})));
    otx
}

// ---- the tests ----

#[test]
fn every_row_of_the_rs256_table_in_its_order() {
    let [k1, k2] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    let host = jwks.host();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut payload = claims(&host);
        edit(&mut payload);
        payload
    };
    let cases: Vec<(String, &str)> = vec![
        (
            k1.sign(&header("key-1"), &with(&|p| drop_claim(p, "jwks_host"))),
            "Authorization failed: jwks_host is missing in JWT payload. Make sure custom_jwks_host field is present in module_type",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["jwks_host"] = json!(42))),
            "Authorization failed: jwks_host is missing in JWT payload. Make sure custom_jwks_host field is present in module_type",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["jwks_host"] = json!("visibility.amp.cisco.com"))),
            "Authorization failed: Wrong jwks_host in JWT payload. Make sure domain follows the visibility.<region>.cisco.com structure",
        ),
        (
            k1.sign(&json!({"alg": "RS256", "typ": "JWT"}), &with(&|_| {})),
            "Authorization failed: kid from JWT header not found in API response",
        ),
        (
            k1.sign(&header("key-9"), &with(&|_| {})),
            "Authorization failed: kid from JWT header not found in API response",
        ),
        (
            // Signed by another key than the one its kid names.
            k2.sign(&header("key-1"), &with(&|_| {})),
            "Authorization failed: Failed to decode JWT with provided key. Make sure domain in custom_jwks_host corresponds to your SecureX instance region.",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["aud"] = json!("https://other.example"))),
            "Authorization failed: Wrong configuration-token-audience",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["aud"] = json!(["https://a.example", 7]))),
            "Authorization failed: Wrong configuration-token-audience",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| drop_claim(p, "aud"))),
            "Authorization failed: Wrong configuration-token-audience",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["key"] = json!(""))),
            "Authorization failed: Wrong JWT payload structure",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["exp"] = json!(now() - 3600))),
            "Authorization failed: Token expired",
        ),
        (
            k1.sign(&header("key-1"), &with(&|p| p["nbf"] = json!(now() + 3600))),
            "Authorization failed: Token not yet valid",
        ),
        (
            k1.sign(&json!({"alg": "PS256", "kid": "key-1"}), &with(&|_| {})),
            "Authorization failed: Failed to decode JWT with provided key",
        ),
        ("a.b".to_owned(), "Authorization failed: Wrong JWT structure"),
    ];
    for (token, message) in &cases {
        assert_eq!(&health(&relay, token), message, "{token}");
    }
    // And a good one, with `aud` as a string, as a list, and with a trailing slash.
    for aud in [
        json!(AUDIENCE),
        json!(["https://x.example", AUDIENCE]),
        json!(format!("{AUDIENCE}/")),
    ] {
        let token = k1.sign(&header("key-1"), &with(&|p| p["aud"] = aud.clone()));
        assert_eq!(health(&relay, &token), "ok");
    }
    assert_eq!(
        otx.requests_to("/api/v1/user/me")
            .last()
            .and_then(|r| r.header("X-OTX-API-KEY").map(str::to_owned)),
        Some(KEY.to_owned())
    );
}

#[test]
fn hs256_still_works_beside_rs256_and_rs256_needs_no_secret_key() {
    let [k1, _] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    assert_eq!(health(&relay, &token()), "ok");
    let rs256 = k1.sign(&header("key-1"), &claims(&jwks.host()));
    assert_eq!(health(&relay, &rs256), "ok");

    let allowed = jwks.host();
    let relay = Relay::spawn(
        &otx.url(),
        &[
            ("RELAY_AUDIENCE", AUDIENCE),
            ("JWKS_HOSTS", &allowed),
            ("SSL_CERT_FILE", TEST_CERT),
        ],
        &["SECRET_KEY"],
    );
    // The start-up warning says what holds (not that every call will fail).
    assert!(relay.wait_log("SECRET_KEY is not set"), "{}", relay.logs());
    let warning = "WARN SECRET_KEY is not set: HS256 tokens will be refused ('<SECRET_KEY> is missing'); XDR's RS256 tokens are still accepted (RELAY_AUDIENCE is set)\n";
    assert!(relay.stderr().contains(warning), "{}", relay.stderr());
    assert_eq!(health(&relay, &rs256), "ok");
    // The structure check comes before the SECRET_KEY check here.
    assert_eq!(
        health(&relay, "x.y"),
        "Authorization failed: Wrong JWT structure"
    );
    assert_eq!(
        health(&relay, &token()),
        "Authorization failed: <SECRET_KEY> is missing"
    );

    // Without RELAY_AUDIENCE, RS256 is refused as SPEC §2 says, and no key
    // is ever fetched.
    let fetched = jwks.fetches();
    let relay = Relay::start(
        &otx,
        &[("JWKS_HOSTS", &allowed), ("SSL_CERT_FILE", TEST_CERT)],
    );
    assert_eq!(
        health(&relay, &rs256),
        "Authorization failed: Failed to decode JWT with provided key"
    );
    assert_eq!(jwks.fetches(), fetched);
}

#[test]
fn an_rs256_header_over_an_hmac_of_the_secret_is_refused() {
    let [k1, _] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    // Algorithm confusion: the attacker signs with the HS256 secret (or with
    // the public key's bytes as an HMAC key) and claims RS256.
    let header = URL_SAFE_NO_PAD.encode(header("key-1").to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims(&jwks.host()).to_string());
    for secret in [
        SECRET.as_bytes().to_vec(),
        k1.jwk()["n"].as_str().unwrap_or("").as_bytes().to_vec(),
    ] {
        let signature = hs256_raw(&secret, &format!("{header}.{payload}"));
        let forged = format!("{header}.{payload}.{signature}");
        assert_eq!(
            health(&relay, &forged),
            "Authorization failed: Failed to decode JWT with provided key. Make sure domain in custom_jwks_host corresponds to your SecureX instance region."
        );
    }
    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    assert_eq!(
        health(&relay, &none),
        "Authorization failed: Failed to decode JWT with provided key"
    );
}

fn hs256_raw(secret: &[u8], input: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[test]
fn a_new_kid_costs_one_refetch_and_unknown_kids_at_most_one_a_minute() {
    let [k1, k2] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    let host = jwks.host();
    assert_eq!(
        health(&relay, &k1.sign(&header("key-1"), &claims(&host))),
        "ok"
    );
    assert_eq!(
        health(&relay, &k1.sign(&header("key-1"), &claims(&host))),
        "ok"
    );
    assert_eq!(jwks.fetches(), 1, "the keys are kept");
    // Rotation: a new key appears at the host.
    jwks.set_keys(vec![k1.jwk(), k2.jwk()]);
    assert_eq!(
        health(&relay, &k2.sign(&header("key-2"), &claims(&host))),
        "ok"
    );
    assert_eq!(jwks.fetches(), 2, "one refetch for the new kid");
    // 100 calls with a kid the host does not have: no more than one refetch
    // a minute (the last one was just now).
    for _ in 0..100 {
        assert_eq!(
            health(&relay, &k1.sign(&header("key-unknown"), &claims(&host))),
            "Authorization failed: kid from JWT header not found in API response"
        );
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "unknown kids within a minute fetch nothing"
    );
    assert_eq!(
        health(&relay, &k2.sign(&header("key-2"), &claims(&host))),
        "ok"
    );
}

#[test]
fn concurrent_first_calls_share_one_fetch() {
    let [k1, _] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    // Slow enough that all the calls arrive while the fetch runs.
    jwks.server.set_latency(Duration::from_millis(500));
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    let token = k1.sign(&header("key-1"), &claims(&jwks.host()));
    thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| assert_eq!(health(&relay, &token), "ok"));
        }
    });
    assert_eq!(jwks.server.requests_to("/.well-known/jwks").len(), 1);
    assert_eq!(jwks.fetches(), 1);
}

#[test]
fn forged_tokens_naming_a_silent_host_cost_one_connection_and_no_queue() {
    let silent = SilentHost::start();
    let otx = otx_with_user_me();
    let relay = xdr_relay_for(&otx, &[silent.host()], &[("AVOTX_TIMEOUT", "2")]);
    let token = forged(&silent.host());
    let started = Instant::now();
    let took: Vec<Duration> = thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    assert_eq!(health(&relay, &token), WRONG_JWKS_HOST);
                    started.elapsed()
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("a call"))
            .collect()
    });
    // All share the one fetch, bounded by AVOTX_TIMEOUT (2 s), plus 1 s.
    for one in &took {
        assert!(*one < Duration::from_secs(3), "{one:?} of {took:?}");
    }
    assert_eq!(silent.connections(), 1);
    // The failure is remembered: the next calls are answered at once.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(health(&relay, &token), WRONG_JWKS_HOST);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    assert_eq!(silent.connections(), 1);
}

#[test]
fn a_failed_fetch_is_remembered_for_ten_seconds() {
    let [k1, _] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    jwks.down.store(true, Ordering::SeqCst);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    let (token, good) = (
        forged(&jwks.host()),
        k1.sign(&header("key-1"), &claims(&jwks.host())),
    );
    // The host answers 500 at once: 30 forged tokens in a row, one request.
    assert_eq!(health(&relay, &token), WRONG_JWKS_HOST);
    let failed = Instant::now();
    for _ in 1..30 {
        assert_eq!(health(&relay, &token), WRONG_JWKS_HOST);
    }
    assert_eq!((jwks.fetches(), jwks.connections()), (1, 1));
    // Even a good token, once the host is back, until 10 s have passed.
    jwks.down.store(false, Ordering::SeqCst);
    assert_eq!(health(&relay, &good), WRONG_JWKS_HOST);
    assert!(failed.elapsed() < FAILED_FOR, "the test ran too slowly");
    assert_eq!(jwks.fetches(), 1);
    thread::sleep(
        (failed + FAILED_FOR + Duration::from_millis(300))
            .saturating_duration_since(Instant::now()),
    );
    assert_eq!(health(&relay, &good), "ok");
    assert_eq!(jwks.fetches(), 2);
}

#[test]
fn a_refetch_delays_no_call_whose_key_is_known() {
    let [k1, k2] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    let known = k1.sign(&header("key-1"), &claims(&jwks.host()));
    assert_eq!(health(&relay, &known), "ok");
    jwks.set_keys(vec![k1.jwk(), k2.jwk()]);
    jwks.server.set_latency(Duration::from_secs(2));
    let rotated = k2.sign(&header("key-2"), &claims(&jwks.host()));
    thread::scope(|s| {
        let refetch = s.spawn(|| health(&relay, &rotated));
        // Once the refetch has reached the host.
        while jwks.fetches() < 2 {
            thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        assert_eq!(health(&relay, &known), "ok");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(refetch.join().expect("the refetch call"), "ok");
    });
    assert_eq!(jwks.fetches(), 2);
}

#[test]
fn keys_outlive_their_host_until_jwks_ttl() {
    let [k1, _] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&jwks], &[("JWKS_TTL", "2")]);
    let token = k1.sign(&header("key-1"), &claims(&jwks.host()));
    assert_eq!(health(&relay, &token), "ok");
    jwks.down.store(true, Ordering::SeqCst);
    // A refetch for an unknown kid fails: the keys still valid are kept.
    assert_eq!(
        health(&relay, &k1.sign(&header("key-x"), &claims(&jwks.host()))),
        "Authorization failed: kid from JWT header not found in API response"
    );
    assert_eq!(health(&relay, &token), "ok");
    let failed = Instant::now();
    thread::sleep(Duration::from_millis(2300));
    assert_eq!(health(&relay, &token), WRONG_JWKS_HOST);
    // Back up: accepted again once the failed fetch is no longer
    // remembered (until then no fetch is tried).
    jwks.down.store(false, Ordering::SeqCst);
    assert_eq!(health(&relay, &token), WRONG_JWKS_HOST);
    assert_eq!(jwks.fetches(), 2);
    thread::sleep(
        (failed + FAILED_FOR + Duration::from_millis(300))
            .saturating_duration_since(Instant::now()),
    );
    assert_eq!(health(&relay, &token), "ok");
}

#[test]
fn a_jwks_host_outside_the_list_is_never_contacted() {
    let [k1, _] = keys();
    let allowed = JwksHost::start(vec![k1.jwk()]);
    let outside = JwksHost::start(vec![k1.jwk()]);
    let otx = otx_with_user_me();
    let relay = xdr_relay(&otx, &[&allowed], &[]);
    for host in [
        outside.host(),
        outside.host().replace("127.0.0.1", "localhost"),
    ] {
        let token = k1.sign(&header("key-1"), &claims(&host));
        assert_eq!(
            health(&relay, &token),
            "Authorization failed: Wrong jwks_host in JWT payload. Make sure domain follows the visibility.<region>.cisco.com structure"
        );
    }
    assert_eq!(outside.connections(), 0);
    assert_eq!(allowed.connections(), 0);
    // The same port on another host is another host.
    let other_port = format!("127.0.0.1:{}", outside.server.addr().port());
    let token = k1.sign(&header("key-1"), &claims(&other_port));
    assert!(health(&relay, &token).contains("Wrong jwks_host"));
    assert_eq!(outside.connections(), 0);
    assert_eq!(
        health(&relay, &k1.sign(&header("key-1"), &claims(&allowed.host()))),
        "ok"
    );
}

#[test]
fn claims_drive_observe_as_with_hs256() {
    let [k1, _] = keys();
    let jwks = JwksHost::start(vec![k1.jwk()]);
    let ip = "198.51.100.77";
    let otx = FakeOtx::start();
    let pulses: Vec<Value> = ["5f0000000000000000000a01", "5f0000000000000000000a02"]
        .iter()
        .map(|id| json!({"id": id, "name": id, "indicator_type_counts": {"IPv4": 1}}))
        .collect();
    otx.on(
        &format!("/api/v1/indicators/IPv4/{ip}/general"),
        Reply::json(json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": pulses}})),
    );
    for (id, day) in [
        ("5f0000000000000000000a01", 1),
        ("5f0000000000000000000a02", 2),
    ] {
        otx.on(
            &format!("/api/v1/pulses/{id}/indicators"),
            Reply::json(json!({"results": [{"indicator": ip, "created": format!("2020-01-0{day}T00:00:00")}], "next": null})),
        );
    }
    let relay = xdr_relay(&otx, &[&jwks], &[]);
    let mut payload = claims(&jwks.host());
    payload["key"] = json!("xdr-configured-otx-key");
    payload["CTR_ENTITIES_LIMIT"] = json!(1);
    let token = k1.sign(&header("key-1"), &payload);
    relay.forbid("xdr-configured-otx-key");
    let body = json!([{"type": "ip", "value": ip}]).to_string();
    let (status, answer) = relay.post(OBSERVE, Some(&bearer(&token)), &body);
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["sightings"]["count"], 1, "{answer}");
    // The newest record's pulse is the one kept.
    assert_eq!(
        answer["data"]["sightings"]["docs"][0]["external_ids"],
        json!(["5f0000000000000000000a02"])
    );
    let general = otx.requests_to(&format!("/api/v1/indicators/IPv4/{ip}/general"));
    assert_eq!(
        general.first().and_then(|r| r.header("X-OTX-API-KEY")),
        Some("xdr-configured-otx-key")
    );
}

#[test]
fn module_type_prints_the_document_and_checks_the_url() {
    let run = run_cli(&["module-type", "--url", "https://relay.example.com/"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let document: Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    assert_eq!(document["title"], "AlienVault OTX");
    assert_eq!(document["default_name"], "AlienVault OTX");
    // SPEC §15: hostnames are among the types, passive DNS among the answers.
    let description = document["description"].as_str().unwrap_or_default();
    assert!(description.contains("hostnames"), "{description}");
    assert!(description.contains("passive DNS"), "{description}");
    for field in ["short_description", "description", "tips"] {
        assert!(
            document[field].as_str().is_some_and(|t| t.len() > 20),
            "{field}"
        );
    }
    assert_eq!(
        document["external_references"].as_array().map(Vec::len),
        Some(2)
    );
    let spec = &document["configuration_spec"];
    assert_eq!(spec[0]["key"], "custom_key");
    assert_eq!(spec[0]["type"], "api_key");
    assert_eq!(spec[0]["label"], "OTX API Key");
    assert_eq!(spec[0]["required"], true);
    assert_eq!(spec[1]["key"], "custom_CTR_ENTITIES_LIMIT");
    assert_eq!(spec[1]["type"], "integer");
    assert_eq!(spec[1]["label"], "Entities Limit");
    assert_eq!(spec[1]["required"], false);
    for entry in spec.as_array().into_iter().flatten() {
        assert!(entry["tooltip"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let ids: Vec<&str> = document["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "health",
            "observe",
            "deliberate",
            "refer",
            "respond",
            "tiles"
        ]
    );
    assert_eq!(spec[2]["key"], "custom_respond_pulse_id");
    assert_eq!(spec[2]["type"], "string");
    assert_eq!(spec[2]["label"], "Pulse for respond actions");
    assert_eq!(spec[2]["required"], false);
    assert_eq!(spec.as_array().map(Vec::len), Some(3));
    assert_eq!(
        document["properties"],
        json!({
            "url": "https://relay.example.com",
            "supported-apis": ["health", "observe/observables", "deliberate/observables", "refer/observables",
                               "respond/observables", "respond/trigger", "tiles", "tiles/tile", "tiles/tile-data"],
            "auth-type": "configuration-token",
            "configuration-token-alg": "RS256",
            "custom_jwks_host": "visibility.amp.cisco.com",
            "configuration-token-audience": "https://relay.example.com"
        })
    );
    let eu = run_cli(
        &[
            "module-type",
            "--url",
            "http://127.0.0.1:9090",
            "--jwks-host",
            "visibility.eu.amp.cisco.com",
        ],
        &[],
    );
    assert_eq!(eu.code, Some(0), "{}", eu.stderr);
    let eu: Value = serde_json::from_str(&eu.stdout).expect("valid JSON");
    assert_eq!(
        eu["properties"]["custom_jwks_host"],
        "visibility.eu.amp.cisco.com"
    );
    // No secret is needed to print it.
    let bare = run_cli(
        &["module-type", "--url", "https://r.example"],
        &[("SECRET_KEY", "")],
    );
    assert_eq!(bare.code, Some(0));
    for bad in [
        vec!["module-type"],
        vec!["module-type", "--url", "http://relay.example.com"],
        vec!["module-type", "--url", "relay.example.com"],
        vec!["module-type", "--url"],
        vec!["module-type", "--url", "https://r.example", "--bogus", "x"],
    ] {
        let run = run_cli(&bad, &[]);
        assert_eq!(run.code, Some(2), "{bad:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{bad:?}: {}", run.stderr);
        assert!(run.stdout.is_empty());
    }
}
