//! The module-type document an operator posts to Cisco XDR to register the
//! relay (SPEC §10): `otx-relay module-type --url … [--jwks-host …]`.

use serde_json::{json, Value};

/// The JWKS host of XDR's North American region, the default.
pub const DEFAULT_JWKS_HOST: &str = "visibility.amp.cisco.com";

/// Every API the relay serves, as XDR names them (no leading `/`).
pub const SUPPORTED_APIS: [&str; 9] = [
    "health",
    "observe/observables",
    "deliberate/observables",
    "refer/observables",
    "respond/observables",
    "respond/trigger",
    "tiles",
    "tiles/tile",
    "tiles/tile-data",
];

/// `--url` as XDR needs it: `https://`, or `http://` for a relay on this
/// machine only (`localhost`, `127.0.0.1`); without a trailing `/`.
pub fn check_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        if !matches!(host, "localhost" | "127.0.0.1") {
            return Err(format!(
                "--url must be https:// (http:// only for localhost and 127.0.0.1), not '{url}'"
            ));
        }
        rest
    } else {
        return Err(format!("--url must start with https://, not '{url}'"));
    };
    let host = rest.split(['/', ':', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("--url must name the relay's host, not '{url}'"));
    }
    if rest.contains(['?', '#', '@']) {
        return Err("--url must be a plain base URL (no query, fragment or user)".to_owned());
    }
    Ok(url.to_owned())
}

/// The document, for the relay at `url` (already checked) whose tokens XDR
/// signs with the keys of `jwks_host`.
pub fn document(url: &str, jwks_host: &str) -> Value {
    json!({
        "title": "AlienVault OTX",
        "default_name": "AlienVault OTX",
        "short_description": "Threat intelligence from the AlienVault OTX community: pulses, verdicts, dashboard tiles and response actions.",
        "description": "Looks up IPs, domains, hostnames, URLs and file hashes in AlienVault Open Threat Exchange (OTX) and answers with the community pulses that contain them: sightings, indicators and relationships, and verdicts from OTX's pulse counts and validations, with links back to OTX; for IPs, domains and hostnames, also what OTX's passive DNS saw them resolve to (Resolved_To relations for the investigation graph). Dashboard tiles show what the tenant's OTX subscriptions brought in; response actions submit a URL to OTX for analysis or add an observable to the team's pulse. Served by otx-relay, one static binary.",
        "tips": "The OTX API key is on your OTX account's settings page (https://otx.alienvault.com/settings), under \"OTX Key\": paste it into OTX API Key. Entities Limit caps the sightings (and indicators) returned per observable: 100 by default, at most 1000; lower it if investigations feel slow. Pulse for respond actions is the 24-character id of a pulse you own (from its URL); leave it empty to offer no \"add to pulse\" action.",
        "external_references": [
            {"label": "Sign up for AlienVault OTX", "link": "https://otx.alienvault.com/accounts/signup"},
            {"label": "AlienVault OTX API documentation", "link": "https://otx.alienvault.com/api"}
        ],
        "configuration_spec": [
            {"key": "custom_key", "type": "api_key", "label": "OTX API Key", "required": true,
             "tooltip": "The API key of your AlienVault OTX account (Settings, OTX Key)."},
            {"key": "custom_CTR_ENTITIES_LIMIT", "type": "integer", "label": "Entities Limit", "required": false,
             "tooltip": "Most sightings returned per observable: 1 to 1000, 100 when empty."},
            {"key": "custom_respond_pulse_id", "type": "string", "label": "Pulse for respond actions", "required": false,
             "tooltip": "Id of an OTX pulse you own (24 hex digits): \"Add to AlienVault OTX pulse\" adds observables to it."}
        ],
        "capabilities": [
            {"id": "health", "description": "Check that the OTX API key works."},
            {"id": "observe", "description": "Query AlienVault OTX for the pulses that contain observables, and its passive DNS."},
            {"id": "deliberate", "description": "Verdicts from AlienVault OTX pulse counts and validations."},
            {"id": "refer", "description": "Links to the observables' pages on AlienVault OTX."},
            {"id": "respond", "description": "Submit URLs to AlienVault OTX; add observables to your pulse."},
            {"id": "tiles", "description": "Dashboard tiles from your AlienVault OTX subscriptions."}
        ],
        "properties": {
            "url": url,
            "supported-apis": SUPPORTED_APIS,
            "auth-type": "configuration-token",
            "configuration-token-alg": "RS256",
            "custom_jwks_host": jwks_host,
            "configuration-token-audience": url
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://relay.example/"),
            Ok("https://relay.example".to_owned())
        );
        assert_eq!(
            check_url("http://127.0.0.1:9090"),
            Ok("http://127.0.0.1:9090".to_owned())
        );
        assert!(check_url("http://localhost/otx").is_ok());
        for bad in [
            "http://relay.example",
            "ftp://relay.example",
            "relay.example",
            "https://",
            "https:///x",
            "https://u:p@relay.example",
            "https://relay.example?x=1",
            "http://localhost.evil.example",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
