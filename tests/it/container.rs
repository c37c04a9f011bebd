//! The Dockerfile stays in step with the manifest: its dependency layer
//! stubs every target Cargo.toml declares (or `docker build` fails with
//! "can't find … at …"), and its version label is the crate's.
//!
//! Beside it: [`empty_root`], the static binary alone in an empty root,
//! as the `FROM scratch` image runs it.

mod empty_root;

const DOCKERFILE: &str = include_str!("../../Dockerfile");
const MANIFEST: &str = include_str!("../../Cargo.toml");

#[test]
fn the_dependency_layer_stubs_every_declared_target() {
    let declared: Vec<&str> = MANIFEST
        .lines()
        .filter_map(|line| line.trim().strip_prefix("path = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|path| path.ends_with(".rs"))
        .collect();
    assert!(declared.contains(&"tests/it/main.rs"), "{declared:?}");
    let stub_line = DOCKERFILE
        .lines()
        .find(|line| line.contains("for stub in"))
        .expect("the Dockerfile's stub loop");
    for path in declared
        .iter()
        .copied()
        .chain(["src/main.rs", "src/lib.rs"])
    {
        assert!(
            stub_line.contains(path) || DOCKERFILE.contains(&format!("touch {path}")),
            "the Dockerfile does not stub {path}"
        );
    }
    // Every [[bench]] is declared by name, at benches/<name>.rs.
    let mut lines = MANIFEST.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "[[bench]]" {
            let name = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .expect("a bench name on the next line");
            let path = format!("benches/{name}.rs");
            assert!(
                stub_line.contains(&path),
                "the Dockerfile does not stub {path}"
            );
        }
    }
}

#[test]
fn the_image_version_label_is_the_crate_version() {
    let arg = format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"));
    assert!(
        DOCKERFILE.lines().any(|l| l.trim() == arg),
        "the Dockerfile must say {arg}"
    );
}

#[test]
fn the_runtime_image_is_empty_but_the_binary_and_runs_as_nobody() {
    let runtime = DOCKERFILE
        .split("FROM scratch")
        .nth(1)
        .expect("a FROM scratch stage");
    for line in [
        "USER 65534:65534",
        "EXPOSE 9090",
        "ENTRYPOINT [\"/otx-relay\"]",
        "COPY --from=build /otx-relay /otx-relay",
    ] {
        assert!(
            runtime.lines().any(|l| l.trim() == line),
            "runtime stage lacks {line}"
        );
    }
    assert!(runtime.contains("CMD [\"/otx-relay\", \"healthcheck\"]"));
    assert_eq!(
        runtime.matches("COPY").count(),
        1,
        "only the binary goes in"
    );
    assert!(!runtime.contains("RUN "), "nothing runs in an empty image");
}
