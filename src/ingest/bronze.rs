//! Bronze: every delivered item kept exactly as delivered, in compressed blocks.
//!
//! A block holds a run of consecutive items of one file: their line numbers and raw texts,
//! LZ4-compressed. One row per block (a few thousand lines) instead of one row per line: the
//! store writes ~4× fewer bytes and no per-line index entries, which was most of an ingest's
//! write cost on both backends. Rejected lines are also kept uncompressed with their reason in
//! `raw_rejects`, so listing them needs no decompression.
//!
//! Layout before compression (all integers LEB128 varints):
//! `count`, then per item `line_no - previous line_no` (the first relative to the block's
//! first line) and `byte length`, then the items' bytes back to back. Items may hold any byte,
//! newlines, NUL and invalid UTF-8 included (a CSV record or a pretty-printed JSON array element
//! spans lines).
//!
//! Two codecs, named with each block: [`CODEC`] (`lz4-exact`), written now, keeps each item's
//! bytes exactly as delivered, its line end included (`\r\n`, `\n`, or none on a last line
//! without one), a byte-order mark and an over-size line whole; [`LEGACY_CODEC`] (`lz4`), written
//! before, kept the text without its line end (CR dropped), over-size or invalid lines cut to
//! 4 KB with bad bytes replaced. Both are read; a legacy item is given back with a `\n`.

/// The codec name stored with each block written now.
pub const CODEC: &str = "lz4-exact";

/// The codec of blocks written before items kept their line end.
pub const LEGACY_CODEC: &str = "lz4";

/// One compressed block, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub first_line: i64,
    pub last_line: i64,
    pub lines: i64,
    /// Size of the raw texts before compression.
    pub raw_bytes: i64,
    pub data: Vec<u8>,
}

/// Why a stored block cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BronzeError {
    /// The block names a codec this version does not know.
    #[error("unknown bronze codec `{0}`")]
    UnknownCodec(String),
    /// The LZ4 data does not decompress.
    #[error("the block does not decompress")]
    Decompress(#[source] lz4_flex::block::DecompressError),
    /// The decompressed block does not hold what its header says.
    #[error("{0}")]
    Corrupt(&'static str),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, BronzeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(BronzeError::Corrupt("truncated block"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(BronzeError::Corrupt("bad varint in block"))
}

/// Encodes items given in increasing line order as one block. `items` must not be empty.
pub fn encode<'a>(items: impl ExactSizeIterator<Item = (i64, &'a [u8])> + Clone) -> Block {
    let count = items.len();
    let raw_bytes: usize = items.clone().map(|(_, t)| t.len()).sum();
    let mut plain = Vec::with_capacity(raw_bytes + 8 * count + 8);
    put_varint(&mut plain, count as u64);
    let mut first = None;
    let mut prev = 0;
    for (line, text) in items.clone() {
        let base = *first.get_or_insert(line);
        let delta = if line == base { 0 } else { line - prev };
        debug_assert!(delta >= 0, "lines in increasing order");
        put_varint(&mut plain, delta as u64);
        put_varint(&mut plain, text.len() as u64);
        prev = line;
    }
    for (_, text) in items {
        plain.extend_from_slice(text);
    }
    let first_line = first.unwrap_or(0);
    Block {
        first_line,
        last_line: prev.max(first_line),
        lines: count as i64,
        raw_bytes: raw_bytes as i64,
        data: lz4_flex::block::compress_prepend_size(&plain),
    }
}

/// A stored block, decompressed: its items are read from it without copying.
#[derive(Debug)]
pub struct Decoded {
    plain: Vec<u8>,
    /// Per item: line number, start and end in `plain`.
    heads: Vec<(i64, usize, usize)>,
    /// Items without their line end (the legacy codec).
    pub legacy: bool,
}

impl Decoded {
    /// The items: (line number, bytes as stored).
    pub fn items(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.heads
            .iter()
            .map(|&(line, a, b)| (line, &self.plain[a..b]))
    }
}

/// Decompresses a stored block.
pub fn decode(codec: &str, first_line: i64, data: &[u8]) -> Result<Decoded, BronzeError> {
    let legacy = match codec {
        CODEC => false,
        LEGACY_CODEC => true,
        _ => return Err(BronzeError::UnknownCodec(codec.to_string())),
    };
    let plain =
        lz4_flex::block::decompress_size_prepended(data).map_err(BronzeError::Decompress)?;
    let mut pos = 0;
    let count = get_varint(&plain, &mut pos)? as usize;
    let mut lens = Vec::with_capacity(count.min(plain.len()));
    let mut line = first_line;
    for _ in 0..count {
        line += get_varint(&plain, &mut pos)? as i64;
        lens.push((line, get_varint(&plain, &mut pos)? as usize));
    }
    let mut heads = Vec::with_capacity(lens.len());
    for (line, len) in lens {
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= plain.len())
            .ok_or(BronzeError::Corrupt("block shorter than its lengths"))?;
        heads.push((line, pos, end));
        pos = end;
    }
    Ok(Decoded {
        plain,
        heads,
        legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_any_bytes() {
        let items: Vec<(i64, Vec<u8>)> = vec![
            (3, b"\xEF\xBB\xBF{\"a\": 1}\r\n".to_vec()),
            (4, b"\n".to_vec()),
            (9, b"multi\nline,\"csv\"\r\nrecord".to_vec()),
            (10, "é — 漢字 \u{0}\t".into()),
            (11, b"bad \xff\xfe bytes".to_vec()),
            (300_000, "x".repeat(70_000).into_bytes()),
        ];
        let b = encode(items.iter().map(|(l, t)| (*l, t.as_slice())));
        assert_eq!((b.first_line, b.last_line, b.lines), (3, 300_000, 6));
        assert_eq!(
            b.raw_bytes as usize,
            items.iter().map(|i| i.1.len()).sum::<usize>()
        );
        assert!(
            b.data.len() < b.raw_bytes as usize / 10,
            "repetitive text compresses"
        );
        let d = decode(CODEC, b.first_line, &b.data).unwrap();
        assert!(!d.legacy);
        let back: Vec<(i64, Vec<u8>)> = d.items().map(|(l, t)| (l, t.to_vec())).collect();
        assert_eq!(back, items);
    }

    #[test]
    fn corrupt_or_unknown_blocks_are_errors_not_panics() {
        let b = encode([(1, &b"hello"[..]), (2, &b"world"[..])].into_iter());
        assert!(
            decode("zstd", 1, &b.data)
                .unwrap_err()
                .to_string()
                .contains("codec")
        );
        let mut bad = b.data.clone();
        bad.truncate(bad.len() - 3);
        assert!(decode(CODEC, 1, &bad).is_err());
        assert!(decode(CODEC, 1, &[]).is_err());
    }
}
