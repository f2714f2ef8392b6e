//! Uploaded files on the gateway's disk (`--uploads DIR`): what a file may be, the names it
//! is kept under, and the uploads waiting for their worker's notice.
//!
//! A file is kept under a name the gateway makes up (`<ULID>.<ext>`, the extension from what
//! the bytes are, never from what the client says), so no client name reaches the file
//! system: `../../etc/passwd`, `foto.jpg.exe` or a name with a NUL are only ever shown, as
//! text. Only pictures are taken (JPEG, PNG, GIF, WebP, told by their first bytes): the
//! exercise makes thumbnails, and a picture served back to browsers is all the gateway ever
//! serves from that directory. A worker's thumbnail of `<ULID>.<ext>` is `<ULID>.thumb.<ext>`
//! beside it (`"${CHARLA_FILE%.*}.thumb.png"` in the README's command).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A picture kind the gateway takes: its extension and MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub ext: &'static str,
    pub mime: &'static str,
}

const KINDS: [(&[u8], Kind); 4] = [
    (
        b"\xFF\xD8\xFF",
        Kind {
            ext: "jpg",
            mime: "image/jpeg",
        },
    ),
    (
        b"\x89PNG\r\n\x1a\n",
        Kind {
            ext: "png",
            mime: "image/png",
        },
    ),
    (
        b"GIF8",
        Kind {
            ext: "gif",
            mime: "image/gif",
        },
    ),
    (
        b"RIFF",
        Kind {
            ext: "webp",
            mime: "image/webp",
        },
    ),
];

/// What the bytes are, if a picture the gateway takes.
pub fn kind_of(bytes: &[u8]) -> Option<Kind> {
    let (_, kind) = KINDS.iter().find(|(magic, _)| bytes.starts_with(magic))?;
    // RIFF is also WAV and AVI: WebP says so at offset 8.
    if kind.ext == "webp" && bytes.get(8..12) != Some(b"WEBP".as_slice()) {
        return None;
    }
    Some(*kind)
}

/// The kind a served name has (by its extension; names are the gateway's own).
pub fn kind_of_name(name: &str) -> Option<Kind> {
    let ext = name.rsplit('.').next()?;
    KINDS.iter().map(|(_, k)| *k).find(|k| k.ext == ext)
}

/// Whether `name` is one the gateway makes (`<ULID>.<ext>` or `<ULID>.thumb.<ext>`): the
/// only names it serves, so a request can never name another file.
pub fn is_served_name(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    let ext = ext.strip_prefix("thumb.").unwrap_or(ext);
    stem.len() == 26
        && stem.parse::<ulid::Ulid>().is_ok()
        && stem
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && KINDS.iter().any(|(_, k)| k.ext == ext)
}

/// A client's file name as shown to people: its last path part, control and invisible
/// characters out, at most 80 characters; `file` when nothing is left.
pub fn shown_name(client_name: &str) -> String {
    let last = client_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(client_name);
    let kept: String = last
        .chars()
        .filter(|c| !c.is_control() && !charla_chat::is_invisible(*c))
        .take(80)
        .collect();
    match kept.trim() {
        "" => "file".to_owned(),
        name => name.to_owned(),
    }
}

/// Writes `bytes` as a new file `<ULID>.<ext>` in `dir` (through a temporary name, so a
/// worker never sees half a file); returns the name.
pub async fn store(dir: &Path, bytes: &[u8], kind: Kind) -> std::io::Result<String> {
    let stem = ulid::Ulid::new().to_string();
    let name = format!("{stem}.{}", kind.ext);
    let partial = dir.join(format!(".{stem}.part"));
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, dir.join(&name)).await?;
    Ok(name)
}

/// The thumbnail a worker made of `name`, if any (`<ULID>.thumb.<ext>`, any picture kind).
pub fn thumbnail_of(dir: &Path, name: &str) -> Option<String> {
    let stem = name.split('.').next()?;
    KINDS
        .iter()
        .map(|(_, k)| format!("{stem}.thumb.{}", k.ext))
        .find(|thumb| dir.join(thumb).is_file())
}

/// An upload waiting for its worker's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The chat room it was uploaded in (where the notice is said).
    pub room: String,
    /// The name people see.
    pub shown: String,
    /// The name it is kept under in the uploads directory.
    pub stored: String,
}

/// The uploads of this gateway waiting for a notice, by task id: the oldest is forgotten past
/// [`MAX_WAITING`] (its notice, should it come, is then not said in the room).
#[derive(Default)]
pub struct WaitingUploads(Mutex<VecDeque<(String, Waiting)>>);

/// Uploads remembered while they wait for their notice.
pub const MAX_WAITING: usize = 10_000;

impl WaitingUploads {
    pub fn add(&self, task: String, upload: Waiting) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_WAITING {
            q.pop_front();
        }
        q.push_back((task, upload));
    }

    /// The upload of task `task`, forgotten here (a notice is said once).
    pub fn take(&self, task: &str) -> Option<Waiting> {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = q.iter().position(|(id, _)| id == task)?;
        q.remove(i).map(|(_, w)| w)
    }
}

/// The uploads directory made ready: created if missing, and absolute (a worker is told the
/// full path of each file).
pub fn prepare(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    dir.canonicalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_told_by_their_bytes() {
        assert_eq!(kind_of(b"\xFF\xD8\xFF\xE0rest").map(|k| k.ext), Some("jpg"));
        assert_eq!(
            kind_of(b"\x89PNG\r\n\x1a\nrest").map(|k| k.ext),
            Some("png")
        );
        assert_eq!(
            kind_of(b"RIFF\0\0\0\0WEBPVP8 ").map(|k| k.ext),
            Some("webp")
        );
        assert_eq!(kind_of(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(kind_of(b"#!/bin/sh\nrm -rf /"), None);
        assert_eq!(kind_of(b""), None);
    }

    #[test]
    fn only_the_gateways_own_names_are_served() {
        let id = ulid::Ulid::new().to_string();
        assert!(is_served_name(&format!("{id}.png")));
        assert!(is_served_name(&format!("{id}.thumb.png")));
        for bad in [
            "../etc/passwd".to_owned(),
            format!("{id}.png/../../x"),
            format!("{id}.exe"),
            format!("{}.png", id.to_lowercase()),
            format!(".{id}.part"),
            format!("{id}.thumb.thumb.png"),
            "x.png".to_owned(),
        ] {
            assert!(!is_served_name(&bad), "{bad}");
        }
    }

    #[test]
    fn client_names_are_only_shown() {
        assert_eq!(shown_name("../../etc/passwd"), "passwd");
        assert_eq!(shown_name("C:\\fotos\\gato.jpg"), "gato.jpg");
        assert_eq!(shown_name("a\u{202e}gnp.exe"), "agnp.exe");
        assert_eq!(shown_name("/"), "file");
        assert_eq!(shown_name(&"x".repeat(500)).chars().count(), 80);
    }

    #[test]
    fn waiting_uploads_are_bounded_and_taken_once() {
        let w = WaitingUploads::default();
        let up = Waiting {
            room: "r".into(),
            shown: "a.jpg".into(),
            stored: "X.jpg".into(),
        };
        for i in 0..MAX_WAITING + 5 {
            w.add(i.to_string(), up.clone());
        }
        assert_eq!(w.take("0"), None, "the oldest were forgotten");
        assert_eq!(w.take(&(MAX_WAITING + 4).to_string()), Some(up));
        assert_eq!(w.take(&(MAX_WAITING + 4).to_string()), None);
    }
}
