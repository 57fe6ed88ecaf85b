//! The state file's format: JSON Lines, each line one serde type in a fixed
//! order, so that every byte is read by `serde_json` and nothing is parsed
//! by hand. JSON because an operator can read it with `jq` when a restart
//! did something unexpected; lines because a save writes one target at a
//! time without building the whole file in memory.
//!
//! ```text
//! {"format":"msfb_seat_exporter state","version":1,…}  header
//! {"product_id":"…","sku_id":"…","discovery":false,"targets":2}
//! ["alice@contoso.com",1,1764860000.123,1764000000,0,1,null]
//! ["bob@contoso.com",0,1764860000.456,null,1,1,null]
//! {"end":2,"crc32":123456789}                          trailer
//! ```
//!
//! The header's `format` and `version` are read first and alone, so a file
//! from a newer exporter is refused before anything else in it is
//! interpreted. The trailer counts the targets and carries a CRC-32 of every
//! byte before it: a truncated file (even one cut at a line end) or a
//! damaged one never loads as a smaller or different state.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// The header's `format`: what this file is.
pub(super) const FORMAT: &str = "msfb_seat_exporter state";
/// The format version this build writes and reads. Raise it whenever a line
/// changes shape; older files are then refused as corrupt (moved aside), and
/// a newer exporter's files as from the future.
pub(super) const VERSION: u32 = 1;

/// Why a file does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// It does not end with a complete trailer line.
    #[error("the file is truncated ({0})")]
    Truncated(&'static str),
    /// Written by a newer exporter.
    #[error("format version {found} is newer than this exporter reads ({supported})")]
    FutureVersion {
        /// The file's version.
        found: u32,
        /// [`VERSION`].
        supported: u32,
    },
    /// The checksum does not match.
    #[error("the checksum does not match (the file was damaged)")]
    Checksum,
    /// A line that is not what its place calls for.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

/// The first fields of the header, read alone first.
#[derive(Deserialize)]
struct Preamble {
    format: String,
    version: u32,
}

/// Line 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Unix seconds of the save.
    pub saved_at: f64,
    /// Written at shutdown, after the last check: nothing newer was ever
    /// shown. A save at the end of a cycle is not clean: a crash after it
    /// loses what later checks found (see `table::apply`).
    pub clean: bool,
    /// What target ids are: `"upn"`, or `"hash:"` and a fingerprint of the
    /// hash key, so ids made with another key are never matched.
    pub users: String,
    /// `[shard_index, shard_count]` at the save.
    pub shard: [u32; 2],
    /// Product lines that follow.
    pub products: usize,
}

/// Opens a product's block of target lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ProductLine {
    /// Store product id.
    pub product_id: String,
    /// Store SKU id.
    pub sku_id: String,
    /// Whether its targets were discovered (`users = "all"`) and it had
    /// been listed.
    pub discovery: bool,
    /// Target lines that follow.
    pub targets: usize,
}

/// One target, as a JSON array to keep the file small (about 60 bytes a
/// target): the id (UPN, or the hashed label with `user_label = "hash"`);
/// the last conclusive `msfb_seat_active` (0/1); its Unix time;
/// `dateAssigned` (Unix seconds) when known; `msfb_seat_lost_total`; whether
/// the latest check was conclusive (0/1); for a discovered seat that is
/// gone, the Unix time it was first seen gone (its `forget_after` clock).
/// A save borrows the id from its target; a load owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record<'a>(
    pub Cow<'a, str>,
    pub u8,
    pub f64,
    pub Option<f64>,
    pub u64,
    pub u8,
    pub Option<f64>,
);

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    /// Target lines in the file.
    end: usize,
    /// CRC-32 (IEEE) of every byte before this line.
    crc32: u32,
}

/// A decoded file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decoded {
    pub header: Header,
    pub products: Vec<(ProductLine, Vec<Record<'static>>)>,
}

/// Writes a file line by line into `w`, counting targets and summing the
/// checksum as it goes.
pub(super) struct Encoder<W: Write> {
    w: W,
    crc: crc32fast::Hasher,
    targets: usize,
}

impl<W: Write> Encoder<W> {
    /// Starts a file with its header.
    ///
    /// # Errors
    /// Those of `w`.
    pub fn new(w: W, header: &Header) -> io::Result<Encoder<W>> {
        let mut e = Encoder {
            w,
            crc: crc32fast::Hasher::new(),
            targets: 0,
        };
        e.line(header)?;
        Ok(e)
    }

    fn line(&mut self, value: &impl Serialize) -> io::Result<()> {
        let mut text = serde_json::to_vec(value).map_err(io::Error::other)?;
        text.push(b'\n');
        self.crc.update(&text);
        self.w.write_all(&text)
    }

    /// Opens a product block of `line.targets` records.
    ///
    /// # Errors
    /// Those of `w`.
    pub fn product(&mut self, line: &ProductLine) -> io::Result<()> {
        self.line(line)
    }

    /// Writes one target.
    ///
    /// # Errors
    /// Those of `w`.
    pub fn record(&mut self, record: &Record<'_>) -> io::Result<()> {
        self.targets += 1;
        self.line(record)
    }

    /// Writes the trailer and hands `w` back.
    ///
    /// # Errors
    /// Those of `w`.
    pub fn finish(mut self) -> io::Result<W> {
        let trailer = Trailer {
            end: self.targets,
            crc32: self.crc.clone().finalize(),
        };
        let mut text = serde_json::to_vec(&trailer).map_err(io::Error::other)?;
        text.push(b'\n');
        self.w.write_all(&text)?;
        Ok(self.w)
    }
}

/// Reads a whole file (see the module header for what is checked).
///
/// # Errors
/// [`DecodeError`] for anything but a complete file of [`VERSION`].
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let preamble: Preamble = parse(first, 1)?;
    if preamble.format != FORMAT {
        return Err(bad(
            1,
            format!("not a state file (format {:?})", preamble.format),
        ));
    }
    if preamble.version > VERSION {
        return Err(DecodeError::FutureVersion {
            found: preamble.version,
            supported: VERSION,
        });
    }
    if preamble.version != VERSION {
        return Err(bad(
            1,
            format!("unknown format version {}", preamble.version),
        ));
    }
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return Err(DecodeError::Truncated("no line end at the end"));
    };
    let (content, last) = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => body.split_at(i + 1),
        None => return Err(DecodeError::Truncated("no trailer")),
    };
    let trailer: Trailer = serde_json::from_slice(last)
        .map_err(|_| DecodeError::Truncated("the last line is not the trailer"))?;
    if crc32fast::hash(content) != trailer.crc32 {
        return Err(DecodeError::Checksum);
    }
    let decoded = lines(content)?;
    let targets: usize = decoded.products.iter().map(|(_, r)| r.len()).sum();
    if targets != trailer.end {
        return Err(bad(
            0,
            format!("{targets} targets, the trailer says {}", trailer.end),
        ));
    }
    Ok(decoded)
}

/// The header and product blocks of a checksummed file body.
fn lines(content: &[u8]) -> Result<Decoded, DecodeError> {
    let mut lines = content
        .strip_suffix(b"\n")
        .unwrap_or(content)
        .split(|b| *b == b'\n')
        .zip(1..);
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| bad(0, format!("the file ends where {what} was due")))
    };
    let (text, n) = next("the header")?;
    let header: Header = parse(text, n)?;
    let mut products = Vec::with_capacity(header.products.min(1 << 16));
    for _ in 0..header.products {
        let (text, n) = next("a product")?;
        let product: ProductLine = parse(text, n)?;
        let mut records = Vec::with_capacity(product.targets.min(1 << 20));
        for _ in 0..product.targets {
            let (text, n) = next("a target")?;
            let record: Record<'static> = parse(text, n)?;
            if record.1 > 1 || record.5 > 1 {
                return Err(bad(n, "a flag that is neither 0 nor 1".into()));
            }
            records.push(record);
        }
        products.push((product, records));
    }
    if let Some((_, n)) = lines.next() {
        return Err(bad(n, "a line after the last product".into()));
    }
    Ok(Decoded { header, products })
}

fn parse<'a, T: Deserialize<'a>>(text: &'a [u8], line: usize) -> Result<T, DecodeError> {
    serde_json::from_slice(text).map_err(|e| bad(line, e.to_string()))
}

fn bad(line: usize, message: String) -> DecodeError {
    DecodeError::Line { line, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(products: usize) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            saved_at: 1.5,
            clean: true,
            users: "upn".into(),
            shard: [0, 1],
            products,
        }
    }

    fn sample() -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), &header(1)).unwrap();
        e.product(&ProductLine {
            product_id: "P".into(),
            sku_id: "S".into(),
            discovery: false,
            targets: 2,
        })
        .unwrap();
        e.record(&Record("a@x.y".into(), 1, 10.25, Some(5.0), 2, 1, None))
            .unwrap();
        e.record(&Record("b@x.y".into(), 0, 11.0, None, 0, 0, Some(9.0)))
            .unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let d = decode(&sample()).unwrap();
        assert_eq!(d.header, header(1));
        assert_eq!(d.products.len(), 1);
        assert_eq!(d.products[0].0.product_id, "P");
        assert_eq!(
            d.products[0].1,
            [
                Record("a@x.y".into(), 1, 10.25, Some(5.0), 2, 1, None),
                Record("b@x.y".into(), 0, 11.0, None, 0, 0, Some(9.0)),
            ]
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let file = sample();
        for len in 0..file.len() {
            assert!(decode(&file[..len]).is_err(), "cut at {len} decoded");
        }
        for i in 0..file.len() {
            for bit in [0x01u8, 0x04, 0x10] {
                let mut bad = file.clone();
                bad[i] ^= bit;
                assert!(decode(&bad).is_err(), "byte {i} ^ {bit:#x} decoded");
            }
        }
    }

    #[test]
    fn a_newer_version_is_named_as_such() {
        let text = format!("{{\"format\":\"{FORMAT}\",\"version\":2,\"new\":[1]}}\nwhatever\n");
        assert!(matches!(
            decode(text.as_bytes()),
            Err(DecodeError::FutureVersion { found: 2, .. })
        ));
        assert!(matches!(
            decode(b"{\"format\":\"something else\",\"version\":1}\n"),
            Err(DecodeError::Line { line: 1, .. })
        ));
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(decode(b"\x00\xff garbage").is_err());
    }
}
