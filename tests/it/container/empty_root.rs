//! The static binary alone in an empty root, as the `FROM scratch` image runs
//! it: `make static`, then a fresh directory holding only the binary,
//! `etc/hosts` and `etc/resolv.conf` (no `/dev`, no `/proc`, no CA files)
//! becomes `/` through `unshare --mount --root`, and the relay runs there as
//! uid/gid 65534 with no capabilities, like the image's `USER 65534:65534`.
//!
//! How the relay gets there depends on who runs the test (see `Jail`):
//!
//! - as root, `setpriv` drops to uid/gid 65534 with no groups on the host
//!   first, then `unshare` makes a user namespace that maps 65534 to itself:
//!   the relay is nobody inside and outside;
//! - as any other user, `unshare` makes an unprivileged user namespace that
//!   maps that user to 65534: the relay is nobody inside, and on the host it
//!   is that user with no capability (it keeps that user's supplementary
//!   groups, which only root could drop).
//!
//! It needs `make`, `file` and util-linux's `unshare` (and `setpriv` as
//! root); a missing tool fails the test with a message saying what. The
//! first build takes a minute or two.
//!
//! Where no such namespace can be made (not root, and unprivileged user
//! namespaces disabled or forbidden by a sandbox), the test prints one line
//! `skipped: <reason>` on stderr and passes, so that `make test` passes
//! anywhere. With the environment variable `OTX_RELAY_REQUIRE_EMPTY_ROOT=1`
//! it fails with that reason instead: `.ci/run` sets it, so CI always runs
//! this test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::*;

/// Where `make static` leaves the binary (the Makefile's `STATIC_BIN`).
const STATIC_BIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/static/x86_64-unknown-linux-gnu/release/otx-relay"
);
/// The uid and gid of the image's `USER` (nobody/nogroup).
const NOBODY: &str = "65534";
/// Set to `1`, the test fails rather than skips where it cannot make the
/// namespace it needs.
const REQUIRE: &str = "OTX_RELAY_REQUIRE_EMPTY_ROOT";
/// The `PATH` Docker gives a container; nothing is there in an empty root.
const DOCKER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The name the relay reaches the fake OTX by: only the root's own
/// `etc/hosts` knows it, so each OTX call also proves that the static
/// binary's resolver works with nothing but that file.
const OTX_HOST: &str = "otx.empty-root.test";
/// A record of this pulse holds `DOMAIN` in the recorded sample page.
const PULSE: &str = "57204e9b3c4c3e015d93cb12";
const DOMAIN: &str = "webserver.servehttp.com";
const GENERAL: &str = "/api/v1/indicators/domain/webserver.servehttp.com/general";
/// Python's `uuid.uuid5(uuid.NAMESPACE_X500, PULSE)`.
const INDICATOR_ID: &str = "transient:indicator-e5de6383-e922-50ca-bfbc-ee2a9dad3d50";

#[test]
fn static_binary_serves_from_an_empty_root_as_nobody() {
    let Some(jail) = Jail::for_this_user() else {
        return;
    };
    for tool in ["make", "file"] {
        require_tool(tool);
    }
    let binary = build_static_binary();
    assert_static(&binary);

    let otx = FakeOtx::start();
    let otx_url = format!("http://{OTX_HOST}:{}", otx.addr().port());
    program_otx(&otx);
    let root = EmptyRoot::new(&binary, jail);

    // A first run that only prints the version tells a root that cannot be
    // entered from a relay that misbehaves.
    let mut probe = root.command(&[], &["--version"]);
    let shown = shown(&probe);
    let probe = probe
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        probe.status.success(),
        "otx-relay --version did not run in the empty root ({}), although this \
         process could make the namespace ({jail:?}): {shown}\n{}",
        probe.status,
        outputs(&probe)
    );
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout),
        format!("otx-relay {}\n", env!("CARGO_PKG_VERSION"))
    );

    // `setpriv` and `unshare` exec in turn: the child's pid is the relay's.
    let relay = RelayCommand::wrapped(root.command(&[], &[]), &otx_url)
        .start()
        .unwrap_or_else(|e| {
            panic!(
                "in the empty root (a permission error means nobody cannot read the binary): {e}"
            )
        });
    assert_runs_as_nobody(relay.pid(), jail);
    let base = relay.url();
    let agent = http_agent();

    let (status, body) = call(&agent, "POST", &format!("{base}/version"), &[], "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": env!("CARGO_PKG_VERSION")}));

    let headers = [("Health-Check", "empty-root")];
    let (status, body) = call(&agent, "GET", &format!("{base}/watchdog"), &headers, "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": "empty-root"}));

    let observables = json!([{"type": "domain", "value": DOMAIN}]).to_string();
    let (status, body) = call(
        &agent,
        "POST",
        &format!("{base}/refer/observables"),
        &[],
        &observables,
    );
    assert_eq!(status, 200);
    check_json(
        &body,
        &json!({"data": [{
            "id": format!("ref-avotx-search-domain-{DOMAIN}"),
            "title": "Search for this domain",
            "description": "Lookup this domain on AlienVault OTX",
            "url": format!("{otx_url}/indicator/domain/{DOMAIN}"),
            "categories": ["Search", "AlienVault OTX"],
        }]}),
    );

    let auth = bearer(&token());
    let auth = [("Authorization", auth.as_str())];
    let (status, body) = call(&agent, "POST", &format!("{base}/health"), &auth, "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));

    let (status, body) = call(
        &agent,
        "POST",
        &format!("{base}/observe/observables"),
        &auth,
        &observables,
    );
    assert_eq!(status, 200);
    check_observe(&body, &otx_url);
    assert_eq!(otx.requests_to(GENERAL).len(), 1);
    assert!(
        otx.requests()
            .iter()
            .all(|r| r.header("X-OTX-API-KEY") == Some(KEY)),
        "every OTX request carries the tenant's key"
    );

    // The image's HEALTHCHECK: the same binary, in the same kind of root.
    let healthy = root
        .command(
            &[("PORT", &relay.addr().port().to_string())],
            &["healthcheck"],
        )
        .output()
        .expect("run otx-relay healthcheck");
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "healthcheck against the running relay\n{}",
        outputs(&healthy)
    );
    let refused = RefusedPort::bind();
    let nobody_there = root
        .command(&[("PORT", &refused.port().to_string())], &["healthcheck"])
        .output()
        .expect("run otx-relay healthcheck");
    assert_eq!(
        nobody_there.status.code(),
        Some(1),
        "healthcheck against a port where nothing listens\n{}",
        outputs(&nobody_there)
    );

    let mut relay = relay;
    let status = relay.stop();
    let logs = relay.logs();
    let code = status.and_then(|status| status.code());
    assert_eq!(
        code,
        Some(0),
        "exit status after SIGTERM ({status:?}); output:\n{logs}"
    );
    for line in [
        "POST /version 200",
        "GET /watchdog 200",
        "POST /refer/observables 200",
        "POST /health 200",
        "POST /observe/observables 200",
    ] {
        assert!(logs.contains(line), "no access line {line:?} in:\n{logs}");
    }
    assert!(!logs.contains("panicked"), "a panic in the logs:\n{logs}");
}

/// The whole `/observe` answer for `DOMAIN` found in one pulse. Every id but
/// the indicator's is a uuid4: a static binary with no `/dev/urandom` must
/// still draw them (getrandom's syscall backend), and draw different ones.
#[track_caller]
fn check_observe(body: &Value, otx_url: &str) {
    let observable = json!({"type": "domain", "value": DOMAIN});
    let record_time = "2016-04-27T05:31:07Z";
    let pulse_uri = format!("{otx_url}/pulse/{PULSE}");
    let valid_time = json!({"start_time": "<<time>>", "end_time": "<<time>>"});
    check_json(
        body,
        &json!({"data": {
            "sightings": {"count": 1, "docs": [{
                "type": "sighting",
                "schema_version": "1.0.17",
                "id": "<<prefix:transient:sighting->>",
                "confidence": "High",
                "count": 1,
                "internal": false,
                "source": "AlienVault OTX",
                "observables": [observable],
                "title": "Empty-root pulse",
                "description": "A pulse served to the relay in an empty root",
                "external_ids": [PULSE],
                "source_uri": pulse_uri,
                "tlp": "green",
                "observed_time": {"start_time": record_time, "end_time": record_time},
            }]},
            "indicators": {"count": 1, "docs": [{
                "type": "indicator",
                "schema_version": "1.0.17",
                "id": INDICATOR_ID,
                "confidence": "High",
                "source": "AlienVault OTX",
                "producer": "alice",
                "title": "Empty-root pulse",
                "short_description": "A pulse served to the relay in an empty root",
                "external_ids": [PULSE],
                "source_uri": pulse_uri,
                "tags": ["scratch"],
                "tlp": "green",
                "valid_time": {"start_time": record_time},
            }]},
            "relationships": {"count": 1, "docs": [{
                "type": "relationship",
                "schema_version": "1.0.17",
                "id": "<<prefix:transient:relationship->>",
                "relationship_type": "member-of",
                "source_ref": "<<prefix:transient:sighting->>",
                "target_ref": INDICATOR_ID,
            }]},
            "judgements": {"count": 1, "docs": [{
                "type": "judgement",
                "schema_version": "1.0.17",
                "id": "<<prefix:transient:judgement->>",
                "observable": observable,
                "disposition": 3,
                "disposition_name": "Suspicious",
                "source": "AlienVault OTX",
                "source_uri": format!("{otx_url}/indicator/domain/{DOMAIN}"),
                "priority": 85,
                "confidence": "Medium",
                "severity": "Medium",
                "tlp": "white",
                // SPEC 7: the reason states the pulse count as a number.
                "reason": r"<<re:\D*1\D*>>",
                "valid_time": valid_time,
            }]},
            "verdicts": {"count": 1, "docs": [{
                "type": "verdict",
                "disposition": 3,
                "disposition_name": "Suspicious",
                "observable": observable,
                "valid_time": valid_time,
                "judgement_id": "<<prefix:transient:judgement->>",
            }]},
        }}),
    );
    let data = &body["data"];
    let sighting = &data["sightings"]["docs"][0]["id"];
    let relationship = &data["relationships"]["docs"][0];
    let judgement = &data["judgements"]["docs"][0];
    assert_eq!(&relationship["source_ref"], sighting);
    assert_eq!(data["verdicts"]["docs"][0]["judgement_id"], judgement["id"]);
    // check_json saw each id end in a uuid: its last 36 characters.
    let uuid = |id: &Value| id.as_str().map(|s| s[s.len() - 36..].to_owned());
    let tails = [
        uuid(sighting),
        uuid(&relationship["id"]),
        uuid(&judgement["id"]),
    ];
    assert!(
        tails[0] != tails[1] && tails[1] != tails[2] && tails[0] != tails[2],
        "three uuid4 ids alike: {tails:?}"
    );
}

/// `/user/me` for `/health`; one pulse holding `DOMAIN` for `/observe`,
/// whose record is in the recorded page of that pulse's indicators.
fn program_otx(otx: &FakeOtx) {
    otx.on("/api/v1/user/me", Reply::file("user-me.json"));
    otx.on(
        GENERAL,
        Reply::json(json!({
            "indicator": DOMAIN,
            "type": "domain",
            "base_indicator": {"indicator": DOMAIN, "type": "hostname"},
            "pulse_info": {"count": 1, "pulses": [{
                "id": PULSE,
                "name": "Empty-root pulse",
                "description": "A pulse served to the relay in an empty root",
                "author": {"username": "alice"},
                "tags": ["scratch"],
                "TLP": "green",
                "indicator_type_counts": {"hostname": 13},
            }]},
            "false_positive": [],
            "validation": [],
        })),
    );
    otx.on(
        &format!("/api/v1/pulses/{PULSE}/indicators"),
        Reply::file("pulse-indicators-recorded-single-page.json"),
    );
}

// ---------------------------------------------------------------------------
// Prerequisites and the build

/// How the relay becomes nobody in the empty root; `command` gives the
/// start of its command line.
#[derive(Clone, Copy, Debug)]
enum Jail {
    /// This process is root: `setpriv` drops to uid/gid 65534 and no groups
    /// on the host, then `unshare`, already unprivileged, makes a user
    /// namespace mapping 65534 to itself (the image's `USER 65534:65534`).
    Root,
    /// This process is `uid`/`gid`: `unshare` makes an unprivileged user
    /// namespace mapping them to 65534. Inside, the relay is nobody with no
    /// capability (exec as a non-zero uid clears them); on the host it is
    /// this user, not 65534, and it keeps this user's supplementary groups
    /// (setgroups(2) is denied in a user namespace made without root). The
    /// strongest isolation a user without root can get.
    User { uid: u32, gid: u32 },
}

impl Jail {
    /// The jail this process can make, once a bare namespace of that kind
    /// (no new root, the host's `true`) has been made; `None` when it cannot
    /// be made and the test is skipped (see the top of this file).
    fn for_this_user() -> Option<Jail> {
        let status = own_status();
        let id = |name: &str| {
            let effective = status_field(&status, name);
            let effective = effective.split(' ').nth(1).unwrap_or_default();
            effective
                .parse::<u32>()
                .unwrap_or_else(|e| panic!("{name} {effective:?} in /proc/self/status: {e}"))
        };
        let (uid, gid) = (id("Uid:"), id("Gid:"));
        let jail = if uid == 0 {
            require_tool("setpriv");
            Jail::Root
        } else {
            Jail::User { uid, gid }
        };
        require_tool("unshare");
        let mut probe = jail.command();
        probe.args(["--mount", "true"]).stdin(Stdio::null());
        let shown = shown(&probe);
        let why = match probe.output() {
            Ok(probe) if probe.status.success() => return Some(jail),
            Ok(probe) => {
                let said = String::from_utf8_lossy(&probe.stderr);
                let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
                format!("`{shown}` failed ({}): {said}", probe.status)
            }
            Err(e) => format!("cannot run `{shown}`: {e}"),
        };
        let hint = match jail {
            Jail::Root => "even root cannot make one here (a sandbox forbids it?)",
            Jail::User { .. } => {
                "unprivileged user namespaces are not allowed here: run it as root, \
                 or allow them (sysctls user.max_user_namespaces, \
                 kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
            }
        };
        let reason = format!(
            "tests/it/empty_root.rs cannot make a user namespace as uid {uid}: {why}; {hint}"
        );
        if std::env::var_os(REQUIRE).is_some_and(|value| value == "1") {
            panic!("{reason}; {REQUIRE}=1, so this test may not be skipped");
        }
        // Where `make test` shows it (and a failure with OTX_RELAY_NO_SKIPS=1).
        crate::support::skip(&format!("{reason}; {REQUIRE}=1 makes this a failure"));
        None
    }

    /// `unshare` with the user namespace's mapping to 65534 (as root,
    /// behind `setpriv`); the caller adds `--mount`, the root and the command.
    fn command(self) -> Command {
        let mut command = match self {
            Jail::Root => {
                let mut setpriv = Command::new("setpriv");
                setpriv
                    .arg(format!("--reuid={NOBODY}"))
                    .arg(format!("--regid={NOBODY}"))
                    .arg("--clear-groups")
                    .arg("unshare");
                setpriv
            }
            Jail::User { .. } => Command::new("unshare"),
        };
        command
            .arg(format!("--map-user={NOBODY}"))
            .arg(format!("--map-group={NOBODY}"));
        command
    }
}

/// A command line as a shell would show it (without its environment).
fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn own_status() -> String {
    std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status")
}

/// A field of a `/proc/<pid>/status`, its words joined by single spaces.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn require_tool(tool: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    assert!(
        std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()),
        "`{tool}` is not installed (PATH={path:?}); this test needs make, file and \
         util-linux's unshare (and setpriv as root): .ci/run installs them"
    );
}

/// Runs `make static` in the checkout and returns the binary. The build has
/// its own target dir, so it neither waits on the lock `cargo test` holds
/// nor disturbs the normal build's cache.
fn build_static_binary() -> PathBuf {
    let mut make = Command::new("make");
    make.arg("static").current_dir(env!("CARGO_MANIFEST_DIR"));
    // Whatever flags or jobserver this test inherited (coverage, `make
    // test`) must not reach the static build: the recipe sets its own.
    for name in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
    ] {
        make.env_remove(name);
    }
    let started = Instant::now();
    let built = make.output().expect("run make static");
    assert!(
        built.status.success(),
        "`make static` failed ({}) after {:?}\n{}",
        built.status,
        started.elapsed(),
        outputs(&built)
    );
    let binary = PathBuf::from(STATIC_BIN);
    assert!(binary.is_file(), "`make static` left no {STATIC_BIN}");
    binary
}

fn assert_static(binary: &Path) {
    let described = Command::new("file")
        .arg("-L")
        .arg(binary)
        .output()
        .expect("run file");
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.contains("static") && !described.contains("dynamically linked"),
        "the binary of `make static` is not statically linked: {described}"
    );
}

// ---------------------------------------------------------------------------
// The empty root and the jailed relay

/// A fresh directory holding only `/otx-relay`, `/etc/hosts` and
/// `/etc/resolv.conf`, readable by nobody; removed on drop.
struct EmptyRoot {
    dir: PathBuf,
    jail: Jail,
}

impl EmptyRoot {
    fn new(binary: &Path, jail: Jail) -> EmptyRoot {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "otx-relay-empty-root-{}-{nanos}",
            std::process::id()
        ));
        let root = EmptyRoot { dir, jail };
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
        };
        let etc = root.dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("create {etc:?}: {e}"));
        mode(&root.dir, 0o755);
        mode(&etc, 0o755);
        let target = root.dir.join("otx-relay");
        std::fs::copy(binary, &target).unwrap_or_else(|e| panic!("copy the binary: {e}"));
        mode(&target, 0o755);
        // Written here rather than copied from the host: the only name is the
        // fake OTX's, and the only name server is one nobody answers for on
        // 127.0.0.1, so no lookup can leave the machine.
        let files = [
            ("hosts", format!("127.0.0.1 localhost {OTX_HOST}\n")),
            ("resolv.conf", "nameserver 127.0.0.1\n".to_owned()),
        ];
        for (name, text) in files {
            let path = etc.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
            mode(&path, 0o644);
        }
        root
    }

    /// `/otx-relay ARGS` in this root as uid/gid 65534 with no capability
    /// (and, as root, no supplementary group; see `Jail`), with only `env`
    /// (and a `PATH`, as Docker gives). The mount namespace that `--root`
    /// needs is made in the jail's user namespace.
    fn command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut command = self.jail.command();
        command
            .arg("--mount")
            .arg(format!("--root={}", self.dir.display()))
            .arg("/otx-relay")
            .args(args)
            .env_clear()
            .env("PATH", DOCKER_PATH)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        command
    }
}

impl Drop for EmptyRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The relay's ids as the host sees them (nobody's as root; this user's,
/// with its groups, otherwise), no capability at all, and, inside its user
/// namespace, uid and gid 65534, as under the image's `USER 65534:65534`.
fn assert_runs_as_nobody(pid: u32, jail: Jail) {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/{file}: {e}"))
    };
    let status = read("status");
    let field = |name: &str| status_field(&status, name);
    let (uid, gid, groups) = match jail {
        Jail::Root => (NOBODY.to_owned(), NOBODY.to_owned(), String::new()),
        Jail::User { uid, gid } => (
            uid.to_string(),
            gid.to_string(),
            status_field(&own_status(), "Groups:"),
        ),
    };
    assert_eq!(field("Name:"), "otx-relay", "{status}");
    assert_eq!(field("Uid:"), [uid.as_str(); 4].join(" "), "{status}");
    assert_eq!(field("Gid:"), [gid.as_str(); 4].join(" "), "{status}");
    assert_eq!(field("Groups:"), groups, "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapPrm:"), "0000000000000000", "{status}");
    // Read from the host's namespace: "<inside> <host> <count>".
    let map = |file: &str| read(file).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(map("uid_map"), format!("{NOBODY} {uid} 1"));
    assert_eq!(map("gid_map"), format!("{NOBODY} {gid} 1"));
}

/// One request; the status and the JSON answer (panics if it is not JSON).
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if !body.is_empty() || method == "POST" {
        request = request.header("Content-Type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.to_owned())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {url}: reading the answer: {e}"));
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url} answered {status}, not JSON ({e}): {text:?}"));
    (status, json)
}

/// A finished command's stdout and stderr, for a failure message.
fn outputs(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
