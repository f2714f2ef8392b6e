//! Per-message CPU cost of creating, encoding and decoding a chat message (what every send
//! and receive pays before any network I/O): `cargo run --release -p charla-core --example codec_cost`.
use charla_core::{Message, MAX_MESSAGE_BYTES};
use std::time::Instant;

fn main() {
    const N: u32 = 1_000_000;
    let text = "x".repeat(100);
    let t = Instant::now();
    let mut total = 0usize;
    for _ in 0..N {
        total += Message::new("bench", text.as_str(), "room").id.len();
    }
    let new_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    let m = Message::new("bench", text.as_str(), "room");
    let t = Instant::now();
    for _ in 0..N {
        total += m.encode().len();
    }
    let enc_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    let bytes = m.encode();
    let t = Instant::now();
    for _ in 0..N {
        total += Message::decode(&bytes, "room", MAX_MESSAGE_BYTES)
            .map(|m| m.mensaje.len())
            .unwrap_or(0);
    }
    let dec_ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    println!(
        "new {new_ns:.0} ns, encode {enc_ns:.0} ns, decode {dec_ns:.0} ns per message ({total})"
    );
}
