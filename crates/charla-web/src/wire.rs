//! WebSocket text frames as bytes on the wire, encoded once.
//!
//! A server's frames are never masked (RFC 6455 §5.1), so the bytes of a frame are the same for
//! every page: a room's message is framed once and the same buffer is written to each of its
//! pages' sockets, instead of each page's WebSocket layer copying and framing it again.

use bytes::Bytes;

/// `payload` as one final, unmasked text frame (FIN + opcode 1, then its length in the
/// shortest of the three encodings the RFC allows, then the payload).
pub fn text_frame(payload: &str) -> Bytes {
    let payload = payload.as_bytes();
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    use super::text_frame;

    /// Each length encoding, read back by tungstenite's own frame parser.
    #[test]
    fn tungstenite_reads_what_is_written() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            let payload = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let wire = text_frame(&payload);
            let mut cursor = Cursor::new(&wire[..]);
            let (header, length) = FrameHeader::parse(&mut cursor)
                .expect("a valid header")
                .expect("a whole header");
            assert!(header.is_final);
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(header.mask, None);
            assert_eq!(length, payload.len() as u64, "length {len}");
            let start = cursor.position() as usize;
            assert_eq!(&wire[start..], payload.as_bytes(), "payload {len}");
        }
    }
}
