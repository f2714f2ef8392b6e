//! Entry point for fuzzers (cargo-fuzz target in `fuzz/`, and the stable random-frame test):
//! scan arbitrary bytes as a pipeline and execute every complete request on a fresh server
//! state, exactly as a connection would, minus the socket.

use bytes::{Buf, Bytes, BytesMut};

use crate::cmd::{self, Ctx, Res};
use crate::connection::Client;
use crate::frame::{self, ArgSpans, Out, Scan};
use crate::server::Shared;
use crate::ServerConfig;

/// Parse and run everything in `data`. Returns how many commands ran. Must never panic.
pub fn run_bytes(data: &[u8]) -> usize {
    run_bytes_with(data, |_, _| {})
}

/// [`run_bytes`], handing each command's name and the complete reply bytes it produced to
/// `on_reply`, so a caller can check that every reply is well-formed RESP.
pub fn run_bytes_with(data: &[u8], mut on_reply: impl FnMut(&[u8], &[u8])) -> usize {
    let shared = Shared::new(ServerConfig {
        max_bulk_len: 1 << 16,
        ..ServerConfig::default()
    });
    let (mut client, _rx) = Client::new(1, None, true);
    let mut out = Out::new();
    let mut spans = ArgSpans::default();
    let mut buf = BytesMut::from(data);
    let mut n = 0;
    loop {
        let args: Vec<Bytes> = match frame::scan(&buf, &shared.limits(), &mut spans) {
            Ok(Scan::Incomplete) | Err(_) => break,
            Ok(Scan::Empty { consumed }) => {
                buf.advance(consumed);
                continue;
            }
            Ok(Scan::Multibulk { consumed }) => {
                let chunk = buf.split_to(consumed).freeze();
                spans
                    .spans
                    .iter()
                    .map(|&(s, e)| chunk.slice(s..e))
                    .collect()
            }
            Ok(Scan::Inline { consumed }) => {
                buf.advance(consumed);
                spans.owned.drain(..).map(Bytes::from).collect()
            }
        };
        let mut ctx = Ctx {
            args: &args,
            out: &mut out,
            client: &mut client,
            shared: &shared,
            dirty: false,
            propagated: false,
        };
        let r = cmd::dispatch(&mut ctx);
        if r == Res::Block {
            // No other client will ever push: run it again as timed out, as the connection
            // does at the deadline.
            {
                let mut db = shared.lock_db();
                crate::blocking::unregister(&mut client, &mut db);
            }
            client.block_timed_out = true;
            if let Some(spec) = cmd::lookup(&args[0]) {
                let mut ctx = Ctx {
                    args: &args,
                    out: &mut out,
                    client: &mut client,
                    shared: &shared,
                    dirty: false,
                    propagated: false,
                };
                let r2 = cmd::run(&mut ctx, spec);
                assert!(r2 != Res::Block, "a timed-out command blocked again");
            }
            client.clear_block();
        }
        on_reply(args.first().map_or(&b""[..], |a| a.as_ref()), &out.buf);
        out.buf.clear();
        n += 1;
        if r == Res::Close {
            break;
        }
    }
    n
}
