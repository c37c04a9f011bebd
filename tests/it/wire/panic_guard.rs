//! A panicking handler answers a JSON 500 for its request only: the worker
//! survives and the relay keeps serving. This one test runs the server in
//! process, with a handler that panics on `/panic`, since no real endpoint
//! can be made to panic from outside.

use std::collections::HashMap;
use std::sync::Arc;

use otx_relay::app::App;
use otx_relay::config::Config;
use otx_relay::http::{Reply, Request};
use otx_relay::routes::route;
use otx_relay::server::Relay;
use serde_json::json;

use crate::support::{check_json, free_port, http_agent};

fn panicking(app: &Arc<App>, request: &Request) -> Reply {
    if request.path == "/panic" {
        panic!("a handler bug");
    }
    route(app, request)
}

#[test]
fn a_handler_panic_is_a_json_500_and_the_worker_survives() {
    // Another port if the free one was taken meanwhile (the harness's start does alike).
    let start = || {
        let vars: HashMap<&str, String> = HashMap::from([
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", free_port().to_string()),
            // One worker: if the panic killed it, nothing would answer after.
            ("RELAY_THREADS", "1".to_owned()),
        ]);
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("valid config");
        let app = App::new(config).expect("app");
        Relay::start_with(app, panicking, Arc::new(|_| {})).ok()
    };
    let relay = (0..5).find_map(|_| start()).expect("relay starts");
    let url = format!("http://{}", relay.addr());
    let agent = http_agent();

    for _ in 0..3 {
        let mut response = agent
            .post(&format!("{url}/panic"))
            .send("[]")
            .expect("an answer");
        assert_eq!(response.status().as_u16(), 500);
        let body: serde_json::Value = response.body_mut().read_json().expect("a JSON body");
        check_json(
            &body,
            &json!({"errors": [{"code": "internal error", "message": "Internal error.", "type": "fatal"}]}),
        );
        let mut version = agent
            .post(&format!("{url}/version"))
            .send("")
            .expect("an answer");
        assert_eq!(version.status().as_u16(), 200);
        let body: serde_json::Value = version.body_mut().read_json().expect("a JSON body");
        check_json(&body, &json!({"version": env!("CARGO_PKG_VERSION")}));
    }
    assert!(relay.shutdown(), "the worker drains and stops");
}
