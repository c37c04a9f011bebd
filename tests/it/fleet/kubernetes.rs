//! The Kubernetes manifests of `deploy/kubernetes/` (SPEC §14), rendered
//! offline with `kubectl kustomize` and read back: the restricted pod
//! security profile, probes on `/watchdog` with their header, ports, the
//! image, `ndots`, the fleet objects, and the Redis overlay's wiring.

use std::process::Command;

use crate::support::tool;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// The rendered YAML of `dir`, split into its documents.
fn render(dir: &str) -> Option<Vec<String>> {
    let kubectl = tool("kubectl")?;
    let out = Command::new(kubectl)
        .args(["kustomize", &format!("{DEPLOY}/{dir}")])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("UTF-8");
    Some(
        yaml.split("\n---\n")
            .map(|d| format!("{}\n", d.trim_end()))
            .collect(),
    )
}

/// The one document of `kind` named `name`.
#[track_caller]
fn doc<'a>(docs: &'a [String], kind: &str, name: &str) -> &'a str {
    let found: Vec<&String> = docs
        .iter()
        .filter(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .filter(|d| d.contains(&format!("\n  name: {name}\n")))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name} in {docs:#?}");
    found[0]
}

#[track_caller]
fn has(doc: &str, text: &str) {
    assert!(doc.contains(text), "{text:?} not in:\n{doc}");
}

#[test]
fn the_base_runs_a_restricted_fleet() {
    let Some(docs) = render("base") else {
        return;
    };
    let kinds: Vec<&str> = docs
        .iter()
        .filter_map(|d| d.lines().find_map(|l| l.strip_prefix("kind: ")))
        .collect();
    for kind in [
        "Secret",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let deployment = doc(&docs, "Deployment", "otx-relay");
    for text in [
        "  replicas: 3\n",
        "image: otx-relay:0.1.0\n",
        // The restricted pod security profile.
        "runAsNonRoot: true\n",
        "runAsUser: 65534\n",
        "runAsGroup: 65534\n",
        "seccompProfile:\n          type: RuntimeDefault\n",
        "allowPrivilegeEscalation: false\n",
        "readOnlyRootFilesystem: true\n",
        "capabilities:\n            drop:\n            - ALL\n",
        // Probes on /watchdog, which answers only with its header.
        "livenessProbe:\n          failureThreshold: 3\n          httpGet:\n            httpHeaders:\n            - name: Health-Check\n              value: kubernetes\n            path: /watchdog\n            port: http\n",
        "readinessProbe:\n          failureThreshold: 2\n          httpGet:\n            httpHeaders:\n            - name: Health-Check\n              value: kubernetes\n            path: /watchdog\n            port: http\n",
        "- containerPort: 9090\n          name: http\n",
        // Above the relay's 10 s drain.
        "terminationGracePeriodSeconds: 20\n",
        "prometheus.io/scrape: \"true\"\n",
        "prometheus.io/port: \"9090\"\n",
        "prometheus.io/path: /metrics\n",
        "secretKeyRef:\n              key: SECRET_KEY\n              name: otx-relay\n",
        "requests:\n            cpu: 100m\n            memory: 64Mi\n",
        // OTX's name asked as it is, not first under every search domain.
        "dnsConfig:\n        options:\n        - name: ndots\n          value: \"2\"\n",
    ] {
        has(deployment, text);
    }
    assert!(!deployment.contains("REDIS_URL"), "no Redis in the base");
    let hpa = doc(&docs, "HorizontalPodAutoscaler", "otx-relay");
    has(hpa, "apiVersion: autoscaling/v2\n");
    has(hpa, "name: cpu\n");
    has(hpa, "minReplicas: 3\n");
    has(
        doc(&docs, "PodDisruptionBudget", "otx-relay"),
        "maxUnavailable: 1\n",
    );
    has(doc(&docs, "Service", "otx-relay"), "port: 9090\n");
    let policy = doc(&docs, "NetworkPolicy", "otx-relay");
    for text in [
        "port: 9090\n",
        "port: 53\n      protocol: UDP\n",
        "port: 443\n",
    ] {
        has(policy, text);
    }
    assert!(!policy.contains("6379"));
    // The secret ships empty: the relay refuses HS256 calls until it is set.
    has(doc(&docs, "Secret", "otx-relay"), "SECRET_KEY: \"\"\n");
}

#[test]
fn the_redis_overlay_wires_the_shared_cache() {
    let Some(docs) = render("overlays/fleet-with-redis") else {
        return;
    };
    let deployment = doc(&docs, "Deployment", "otx-relay");
    has(
        deployment,
        "- name: REDIS_URL\n          value: redis://otx-relay-redis:6379\n",
    );
    let redis = doc(&docs, "Deployment", "otx-relay-redis");
    for text in [
        "runAsNonRoot: true\n",
        "readOnlyRootFilesystem: true\n",
        "allowPrivilegeEscalation: false\n",
        "type: RuntimeDefault\n",
    ] {
        has(redis, text);
    }
    has(doc(&docs, "Service", "otx-relay-redis"), "port: 6379\n");
    let policy = doc(&docs, "NetworkPolicy", "otx-relay");
    has(policy, "port: 6379\n");
    has(policy, "app.kubernetes.io/name: otx-relay-redis\n");
}
