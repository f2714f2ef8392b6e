//! Entry point for fuzzers (cargo-fuzz target in `fuzz/`, and the stable random-frame test):
//! scan arbitrary bytes as a pipeline and execute every complete request on a fresh server
//! state through the same request path a connection uses ([`crate::exec`]), minus the socket.

use bytes::{Buf, Bytes, BytesMut};

use crate::client::Client;
use crate::cmd::spec::Res;
use crate::exec;
use crate::frame::{self, ArgSpans, Out, Scan};
use crate::shared::Shared;
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
        // Nothing else will ever push: a command that would block is timed out at once, as a
        // connection's is at its deadline.
        let r = exec::run_to_end(&shared, &mut client, &mut out, &args);
        on_reply(args.first().map_or(&b""[..], |a| a.as_ref()), &out.buf);
        out.buf.clear();
        n += 1;
        if r == Res::Close {
            break;
        }
    }
    n
}
