//! Fuzz the request parser and every command behind it: arbitrary bytes are scanned as a
//! pipeline of RESP requests and each complete request is executed against a fresh keyspace.
//! Any panic, hang or unbounded allocation is a bug (the server must answer garbage with an
//! error reply, never crash).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    charla_server::fuzzing::run_bytes(data);
});
