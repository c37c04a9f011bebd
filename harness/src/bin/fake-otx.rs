//! `fake-otx [--key KEY] [--port PORT] [--demo]`: the harness's synthetic
//! OTX on 127.0.0.1, for `.ci/docker-smoke`: `/user/me`, and every
//! observable in one pulse whose page lists it. With `--demo` (`make
//! demo`), `Synth::demo`: three pulses an observable, naming malware and
//! techniques, and subscribed pulses of the last day for the tiles. With
//! `--key`, a request whose `X-OTX-API-KEY` differs gets 403. Prints the
//! port it listens on, then serves until killed. `fake-otx --free-port`
//! prints a port free on 127.0.0.1 and exits.

use otx_relay_harness::{free_port, FakeOtx, Reply, Synth};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| Some(args.get(args.iter().position(|a| a == name)? + 1)?.clone());
    if args.iter().any(|a| a == "--free-port") {
        println!("{}", free_port());
        return Ok(());
    }
    let (key, port) = (option("--key"), option("--port").unwrap_or("0".into()));
    let otx = FakeOtx::start_on(&format!("127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let synth = match args.iter().any(|a| a == "--demo") {
        true => Synth::demo(),
        false => Synth::new(1),
    };
    otx.fallback(move |request| match &key {
        Some(key) if request.header("X-OTX-API-KEY") != Some(key) => Reply::status(403),
        _ => synth.answer(request),
    });
    println!("{}", otx.addr().port());
    loop {
        std::thread::park();
    }
}
