//! Reading deliveries: JSON lines, one JSON array, or CSV, each optionally gzip-compressed,
//! streamed item by item so memory does not grow with file size. Every item comes with its line
//! (or element) number and its raw text, parsed or with the reason it cannot be.

use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    JsonArray,
    Csv,
}

/// The format and compression of a file, from its name; `None` for files that are not data.
pub fn format_of(name: &str) -> Option<(Format, bool)> {
    let lower = name.to_ascii_lowercase();
    let (base, gz) = match lower.strip_suffix(".gz") {
        Some(b) => (b.to_string(), true),
        None => (lower, false),
    };
    let f = if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        Format::JsonLines
    } else if base.ends_with(".json") {
        Format::JsonArray
    } else if base.ends_with(".csv") {
        Format::Csv
    } else {
        return None;
    };
    Some((f, gz))
}

/// One delivered item: its position, its text as delivered, and its fields or why not.
pub struct Item {
    pub line_no: u64,
    pub raw: String,
    pub parsed: Result<Map<String, Value>, String>,
}

/// How many bytes of an over-long or unreadable line are kept in bronze.
const KEEP: usize = 4096;

fn open(path: &Path, gz: bool) -> std::io::Result<Box<dyn Read>> {
    let f = std::fs::File::open(path)?;
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// An item as read, before its JSON text is parsed: JSON lines are only split, size-checked and
/// UTF-8-checked while reading (cheap and serial) and parsed later with [`parse_json_line`],
/// which can run on several threads. Items of the other formats come already parsed.
pub struct RawItem {
    pub line_no: u64,
    pub raw: String,
    /// `None`: `raw` is a JSON line still to be parsed.
    pub parsed: Option<Result<Map<String, Value>, String>>,
}

impl RawItem {
    /// The item with its fields, parsing its JSON text if that was left for later.
    pub fn resolve(self) -> Item {
        let parsed = match self.parsed {
            Some(p) => p,
            None => parse_json_line(&self.raw),
        };
        Item {
            line_no: self.line_no,
            raw: self.raw,
            parsed,
        }
    }
}

/// One JSON line's fields, or why it cannot be used.
pub fn parse_json_line(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("not a JSON object but {}", kind(&other))),
        Err(e) => Err(format!("malformed JSON: {e}")),
    }
}

/// Streams the items of a file to `each`; stops at the first error `each` returns.
pub fn read_items<E: From<std::io::Error>>(
    path: &Path,
    format: Format,
    gz: bool,
    max_line_bytes: usize,
    mut each: impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    read_raw_items(path, format, gz, max_line_bytes, |raw| each(raw.resolve()))
}

/// Like [`read_items`], but JSON lines are handed over unparsed (see [`RawItem`]).
pub fn read_raw_items<E: From<std::io::Error>>(
    path: &Path,
    format: Format,
    gz: bool,
    max_line_bytes: usize,
    mut each: impl FnMut(RawItem) -> Result<(), E>,
) -> Result<(), E> {
    let reader = BufReader::with_capacity(1 << 16, open(path, gz)?);
    let mut parsed = |i: Item| {
        each(RawItem {
            line_no: i.line_no,
            raw: i.raw,
            parsed: Some(i.parsed),
        })
    };
    match format {
        Format::JsonLines => json_lines(reader, max_line_bytes, &mut each),
        Format::JsonArray => json_array(reader, max_line_bytes, &mut parsed),
        Format::Csv => csv_records(reader, max_line_bytes, &mut parsed),
    }
}

fn json_lines<E: From<std::io::Error>>(
    mut r: impl BufRead,
    max: usize,
    each: &mut impl FnMut(RawItem) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        // A bounded read: at most `max + 1` bytes of a line are kept, the rest only counted.
        buf.clear();
        let mut total = 0usize;
        let mut eof = true;
        loop {
            let chunk = r.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            eof = false;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => (p, true),
                None => (chunk.len(), false),
            };
            let room = (max + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            total += take;
            r.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        if eof && buf.is_empty() && total == 0 {
            return Ok(());
        }
        line_no += 1;
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if total > max {
            let raw = String::from_utf8_lossy(&buf[..buf.len().min(KEEP)]).into_owned();
            each(RawItem {
                line_no,
                raw,
                parsed: Some(Err(format!(
                    "line of {total} bytes is over the {max}-byte limit"
                ))),
            })?;
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t,
            Err(e) => {
                let raw = String::from_utf8_lossy(&buf[..buf.len().min(KEEP)]).into_owned();
                each(RawItem {
                    line_no,
                    raw,
                    parsed: Some(Err(format!("invalid UTF-8 at byte {}", e.valid_up_to()))),
                })?;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        each(RawItem {
            line_no,
            raw: text.to_string(),
            parsed: None,
        })?;
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_array<E: From<std::io::Error>>(
    r: impl Read,
    max: usize,
    each: &mut impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct Each<'a, F> {
        each: &'a mut F,
        max: usize,
        n: u64,
        failed: Option<String>,
    }
    impl<'de, F: FnMut(Item) -> Result<(), String>> Visitor<'de> for &mut Each<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element::<Value>()? {
                self.n += 1;
                let raw = v.to_string();
                let parsed = if raw.len() > self.max {
                    Err(format!(
                        "element of {} bytes is over the {}-byte limit",
                        raw.len(),
                        self.max
                    ))
                } else {
                    match v {
                        Value::Object(m) => Ok(m),
                        other => Err(format!("not a JSON object but {}", kind(&other))),
                    }
                };
                let raw = if raw.len() > KEEP {
                    raw.chars().take(KEEP).collect()
                } else {
                    raw
                };
                if let Err(e) = (self.each)(Item {
                    line_no: self.n,
                    raw,
                    parsed,
                }) {
                    self.failed = Some(e);
                    return Ok(());
                }
            }
            Ok(())
        }
    }
    // The visitor reports callback errors as strings; they are turned back into `E` below.
    let mut err: Option<E> = None;
    let mut cb = |item: Item| -> Result<(), String> {
        each(item).map_err(|e| {
            err = Some(e);
            String::new()
        })
    };
    let mut v = Each {
        each: &mut cb,
        max,
        n: 0,
        failed: None,
    };
    let mut de = serde_json::Deserializer::from_reader(r);
    let result = (&mut de).deserialize_seq(&mut v);
    let n = v.n;
    let failed = v.failed.is_some();
    drop(v);
    if failed {
        return Err(err.expect("set with failed"));
    }
    if let Err(e) = result {
        // The rest of an array cannot be resynchronised after a syntax error: one reject says so.
        each(Item {
            line_no: n + 1,
            raw: String::new(),
            parsed: Err(format!(
                "malformed JSON array after element {n}: {e}; the rest of the file is unreadable"
            )),
        })?;
    }
    Ok(())
}

/// Keeps what the CSV reader reads, so each record's text can be cut out exactly as delivered
/// (quotes, separators and embedded newlines included): the bytes from `base` on.
struct Tee<R> {
    inner: R,
    seen: std::rc::Rc<std::cell::RefCell<Seen>>,
}

#[derive(Default)]
struct Seen {
    /// Stream offset of `bytes[0]`.
    base: u64,
    bytes: Vec<u8>,
}

impl Seen {
    /// The text of `start..end` (stream offsets) without its line terminator, at most `KEEP`
    /// bytes; forgets everything before `end`.
    fn take(&mut self, start: u64, end: u64) -> String {
        let at = |o: u64| (o.saturating_sub(self.base) as usize).min(self.bytes.len());
        let (from, to) = (at(start), at(end));
        let mut text = &self.bytes[from..to.max(from)];
        // Terminators around the record: a CRLF ends where the reader stopped between its two
        // bytes. A record cannot begin with one (blank lines are not records).
        while let Some((b'\n' | b'\r', rest)) = text.split_last() {
            text = rest;
        }
        while let Some((b'\n' | b'\r', rest)) = text.split_first() {
            text = rest;
        }
        let raw = String::from_utf8_lossy(&text[..text.len().min(KEEP)]).into_owned();
        self.bytes.drain(..to);
        self.base += to as u64;
        raw
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.seen.borrow_mut().bytes.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

fn csv_records<E: From<std::io::Error>>(
    r: impl Read,
    max: usize,
    each: &mut impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Seen::default()));
    let tee = Tee {
        inner: r,
        seen: seen.clone(),
    };
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(tee);
    let headers: Vec<String> = match rdr.byte_headers() {
        Ok(h) => h
            .iter()
            .map(|x| String::from_utf8_lossy(x).trim().to_string())
            .collect(),
        Err(e) => {
            let raw = seen.borrow_mut().take(0, rdr.position().byte());
            return each(Item {
                line_no: 1,
                raw,
                parsed: Err(format!("unreadable CSV header: {e}")),
            });
        }
    };
    let header_end = rdr.position().byte();
    seen.borrow_mut().take(0, header_end);
    let mut rec = csv::ByteRecord::new();
    loop {
        let line_no;
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let start = rec.position().map_or(0, |p| p.byte());
                line_no = rec.position().map_or(0, |p| p.line());
                let raw = seen.borrow_mut().take(start, rdr.position().byte());
                let size: usize = rec.iter().map(<[u8]>::len).sum();
                let parsed = if size > max {
                    Err(format!(
                        "record of {size} bytes is over the {max}-byte limit"
                    ))
                } else {
                    let mut m = Map::new();
                    let mut bad = None;
                    for (h, v) in headers.iter().zip(rec.iter()) {
                        match std::str::from_utf8(v) {
                            Ok(s) => {
                                m.insert(h.clone(), Value::String(s.to_string()));
                            }
                            Err(e) => {
                                bad = Some(format!(
                                    "invalid UTF-8 in field `{h}` at byte {}",
                                    e.valid_up_to()
                                ));
                                break;
                            }
                        }
                    }
                    bad.map_or(Ok(m), Err)
                };
                each(Item {
                    line_no,
                    raw,
                    parsed,
                })?;
            }
            Err(e) => {
                line_no = e.position().map_or(0, |p| p.line());
                let start = e.position().map_or(0, |p| p.byte());
                let raw = seen.borrow_mut().take(start, rdr.position().byte());
                each(Item {
                    line_no,
                    raw,
                    parsed: Err(format!("malformed CSV: {e}")),
                })?;
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Collected = Vec<(u64, String, Result<Map<String, Value>, String>)>;

    fn collect(name: &str, bytes: &[u8], max: usize) -> Collected {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        if name.ends_with(".gz") {
            let mut e = flate2::write::GzEncoder::new(
                std::fs::File::create(&p).unwrap(),
                flate2::Compression::fast(),
            );
            e.write_all(bytes).unwrap();
            e.finish().unwrap();
        } else {
            std::fs::write(&p, bytes).unwrap();
        }
        let (f, gz) = format_of(name).unwrap();
        let mut out = Vec::new();
        read_items::<std::io::Error>(&p, f, gz, max, |i| {
            out.push((i.line_no, i.raw, i.parsed));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn json_lines_with_every_kind_of_bad_line() {
        let mut data = b"{\"a\": 1}\n{\"a\": \n\n[1, 2]\n".to_vec();
        data.extend_from_slice(b"{\"a\": \"\xff\xfe\"}\n");
        data.extend_from_slice(format!("{{\"a\": \"{}\"}}\r\n", "x".repeat(100)).as_bytes());
        data.extend_from_slice(b"{\"b\": 2}");
        let items = collect("d.jsonl.gz", &data, 64);
        let reasons: Vec<String> = items
            .iter()
            .map(|i| i.2.as_ref().err().cloned().unwrap_or_default())
            .collect();
        assert_eq!(items.len(), 6, "{reasons:?}");
        assert_eq!(items[0].0, 1);
        assert!(reasons[0].is_empty());
        assert!(reasons[1].starts_with("malformed JSON"), "{reasons:?}");
        assert_eq!(items[2].0, 4, "blank lines are skipped but counted");
        assert_eq!(reasons[2], "not a JSON object but an array");
        assert!(
            reasons[3].starts_with("invalid UTF-8 at byte 7"),
            "{reasons:?}"
        );
        assert!(reasons[4].contains("over the 64-byte limit"), "{reasons:?}");
        assert!(reasons[5].is_empty(), "a last line without newline is read");
    }

    #[test]
    fn json_arrays_stream_elements() {
        let items = collect("d.json", br#"[{"a": 1}, 5, {"b": "x"}]"#, 1000);
        assert_eq!(items.len(), 3);
        assert!(items[1].2.is_err());
        assert_eq!(items[2].2.as_ref().unwrap()["b"], "x");
        let items = collect("d.json", br#"[{"a": 1}, {"b": "#, 1000);
        assert_eq!(items.len(), 2);
        assert!(
            items[1]
                .2
                .as_ref()
                .unwrap_err()
                .contains("rest of the file is unreadable")
        );
    }

    #[test]
    fn csv_records_with_quotes_and_bad_rows() {
        let items = collect(
            "d.csv",
            b"id,text\n1,\"hello, world\"\n2,a,extra\n3,\"multi\nline\"\n",
            1000,
        );
        assert_eq!(
            items.len(),
            3,
            "{:?}",
            items.iter().map(|i| &i.2).collect::<Vec<_>>()
        );
        assert_eq!(items[0].2.as_ref().unwrap()["text"], "hello, world");
        assert!(items[1].2.as_ref().unwrap_err().contains("malformed CSV"));
        assert_eq!(items[2].2.as_ref().unwrap()["text"], "multi\nline");
        // Each record's text as delivered: quotes, the bad row, the embedded newline.
        let raws: Vec<&str> = items.iter().map(|i| i.1.as_str()).collect();
        assert_eq!(
            raws,
            ["1,\"hello, world\"", "2,a,extra", "3,\"multi\nline\""]
        );
        let crlf = collect("d.csv", b"id,text\r\n1,x\r\n2,\"y\r\nz\"\r\n", 1000);
        let raws: Vec<&str> = crlf.iter().map(|i| i.1.as_str()).collect();
        assert_eq!(raws, ["1,x", "2,\"y\r\nz\""]);
        assert_eq!(format_of("x.CSV.GZ"), Some((Format::Csv, true)));
        assert_eq!(format_of("readme.txt"), None);
    }
}
