//! The request reader of the patched tiny_http (`wire::read_request`), the
//! code every client byte goes through first: any input must give a
//! request, a refusal or an I/O error, never a panic, and a request it
//! accepts must be framed one way only.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use tiny_http::wire::{read_request, Framing, Read1, MAX_HEAD_BYTES};

/// Small, so that bodies over it are reached too.
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // A small buffer, so that heads and chunks straddle reads.
    let mut reader = BufReader::with_capacity(7, data);
    // Pipelined requests: read until the input or the connection ends.
    for _ in 0..16 {
        match read_request(&mut reader, MAX_BODY, |_| Ok(())) {
            Ok(Read1::Request(head, body)) => {
                assert!(body.len() <= MAX_BODY);
                let lengths = head
                    .headers
                    .iter()
                    .filter(|h| h.field.equiv("Content-Length"))
                    .count();
                let codings = head
                    .headers
                    .iter()
                    .filter(|h| h.field.equiv("Transfer-Encoding"))
                    .count();
                assert!(lengths + codings <= 1, "framed two ways");
                if let Framing::Length(n) = head.framing {
                    assert_eq!(n as usize, body.len());
                }
                assert!(head.target.len() <= MAX_HEAD_BYTES);
                assert!(!head.target.bytes().any(|b| b.is_ascii_control() || b == b' '));
            }
            Ok(Read1::Idle) | Ok(Read1::Refused { .. }) | Err(_) => break,
        }
    }
});
