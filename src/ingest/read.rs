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

/// One delivered item: its position, its bytes as delivered, and its fields or why not.
pub struct Item {
    pub line_no: u64,
    /// The item's bytes as delivered (see [`RawItem::raw`]).
    pub raw: Vec<u8>,
    pub parsed: Result<Map<String, Value>, String>,
    pub kind: ItemKind,
}

/// What a delivered item is, besides its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A record (accepted or rejected by its fields).
    Record,
    /// A blank or whitespace-only line: kept and counted, listed as skipped, not a failure.
    Blank,
    /// A CSV file's header line: kept in bronze (a replay gives the file back), not counted.
    Header,
}

/// How many bytes of an over-long or unreadable line are shown with its reject.
pub const KEEP: usize = 4096;

/// The reason a blank or whitespace-only line is listed with (skipped, not rejected).
pub const BLANK: &str = "blank line";

/// The UTF-8 byte-order mark some tools write at the start of a file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

fn open(path: &Path, gz: bool) -> std::io::Result<Box<dyn Read>> {
    let f = std::fs::File::open(path)?;
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// An item as read, before its JSON text is parsed: JSON lines are only split and size-checked
/// while reading (cheap and serial); their UTF-8 check and parse come later ([`json_line_text`],
/// [`parse_json_line`]), on several threads. Items of the other formats come already parsed.
pub struct RawItem {
    pub line_no: u64,
    /// The item's bytes exactly as delivered. JSON lines: the whole line with its line end (`\n`
    /// or `\r\n`; none on a last line without one), a leading byte-order mark and invalid UTF-8
    /// included, whatever its length: the items of a file back to back are the file. CSV: the
    /// bytes since the previous record (or the header) up to this record's end, its line end
    /// included. JSON arrays: the element re-serialised (compact JSON).
    pub raw: Vec<u8>,
    /// `None`: `raw` is a JSON line still to be parsed.
    pub parsed: Option<Result<Map<String, Value>, String>>,
    /// JSON lines are told blank when parsed: `Record` until then.
    pub kind: ItemKind,
}

impl RawItem {
    /// The item with its fields, parsing its JSON text if that was left for later.
    pub fn resolve(self, duplicates_allowed: bool) -> Item {
        let (parsed, kind) = match self.parsed {
            Some(p) => (p, self.kind),
            None => match json_line_text(&self.raw, self.line_no) {
                LineText::Json(t) => (parse_json_line(t, duplicates_allowed), ItemKind::Record),
                LineText::Blank => (Err(BLANK.to_string()), ItemKind::Blank),
                LineText::Invalid(reason) => (Err(reason), ItemKind::Record),
            },
        };
        Item {
            line_no: self.line_no,
            raw: self.raw,
            parsed,
            kind,
        }
    }
}

/// A JSON line's text to parse, once its line end (and, on line 1, a byte-order mark) is cut.
pub enum LineText<'a> {
    Json(&'a str),
    /// Nothing but JSON whitespace (space, tab, CR).
    Blank,
    /// Not UTF-8: the reason.
    Invalid(String),
}

/// The bytes of a line without its line end: `\n`, `\r\n`, or none.
pub fn without_line_end(raw: &[u8]) -> &[u8] {
    let b = raw.strip_suffix(b"\n").unwrap_or(raw);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// What a JSON line (as delivered, see [`RawItem::raw`]) holds to parse.
pub fn json_line_text(raw: &[u8], line_no: u64) -> LineText<'_> {
    let mut b = without_line_end(raw);
    if line_no == 1 {
        b = b.strip_prefix(BOM).unwrap_or(b);
    }
    if b.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r')) {
        return LineText::Blank;
    }
    match std::str::from_utf8(b) {
        Ok(t) => LineText::Json(t),
        Err(e) => LineText::Invalid(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
    }
}

/// A JSON value that names no key twice in any of its objects (serde_json's own keeps the last).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format!(
                    "{DUPLICATE} {}",
                    serde_json::to_string(&k).expect("strings serialise")
                )));
            }
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

/// How the reason of a repeated key begins.
const DUPLICATE: &str = "duplicate key";

/// A JSON text's value; with `duplicates_allowed` false a repeated key in any object is an error
/// (which key, where), else the last one wins.
pub fn parse_value(text: &str, duplicates_allowed: bool) -> Result<Value, serde_json::Error> {
    if duplicates_allowed {
        serde_json::from_str(text)
    } else {
        serde_json::from_str::<Strict>(text).map(|s| s.0)
    }
}

/// One JSON line's fields, or why it cannot be used (a repeated key is rejected unless
/// `duplicates_allowed`).
pub fn parse_json_line(text: &str, duplicates_allowed: bool) -> Result<Map<String, Value>, String> {
    match parse_value(text, duplicates_allowed) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("not a JSON object but {}", kind(&other))),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(e.to_string()),
        Err(e) => Err(format!("malformed JSON: {e}")),
    }
}

/// Streams the items of a file to `each`; stops at the first error `each` returns.
pub fn read_items<E: From<std::io::Error>>(
    path: &Path,
    format: Format,
    gz: bool,
    max_line_bytes: usize,
    duplicates_allowed: bool,
    mut each: impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    read_raw_items(
        path,
        format,
        gz,
        max_line_bytes,
        duplicates_allowed,
        |raw| each(raw.resolve(duplicates_allowed)),
    )
}

/// Like [`read_items`], but JSON lines are handed over unparsed (see [`RawItem`]).
pub fn read_raw_items<E: From<std::io::Error>>(
    path: &Path,
    format: Format,
    gz: bool,
    max_line_bytes: usize,
    duplicates_allowed: bool,
    mut each: impl FnMut(RawItem) -> Result<(), E>,
) -> Result<(), E> {
    let reader = BufReader::with_capacity(1 << 16, open(path, gz)?);
    let mut parsed = |i: Item| {
        each(RawItem {
            line_no: i.line_no,
            raw: i.raw,
            parsed: Some(i.parsed),
            kind: i.kind,
        })
    };
    match format {
        Format::JsonLines => json_lines(reader, max_line_bytes, &mut each),
        Format::JsonArray => json_array(reader, max_line_bytes, duplicates_allowed, &mut parsed),
        Format::Csv => csv_records(reader, max_line_bytes, duplicates_allowed, &mut parsed),
    }
}

/// Splits JSON lines, each kept whole with its line end; a line over `max` bytes (its line end
/// not counted) is rejected here, the rest parsed later.
fn json_lines<E: From<std::io::Error>>(
    mut r: impl BufRead,
    max: usize,
    each: &mut impl FnMut(RawItem) -> Result<(), E>,
) -> Result<(), E> {
    let mut line_no = 0u64;
    loop {
        // Sized for an ordinary line; `read_until` grows it for a longer one.
        let mut buf = Vec::with_capacity(1024);
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        line_no += 1;
        let len = without_line_end(&buf).len();
        let parsed =
            (len > max).then(|| Err(format!("line of {len} bytes is over the {max}-byte limit")));
        each(RawItem {
            line_no,
            raw: buf,
            parsed,
            kind: ItemKind::Record,
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
    mut r: impl BufRead,
    max: usize,
    duplicates_allowed: bool,
    each: &mut impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct Each<'a, F> {
        each: &'a mut F,
        max: usize,
        duplicates_allowed: bool,
        n: u64,
        failed: Option<String>,
    }
    impl<'de, F: FnMut(Item) -> Result<(), String>> Visitor<'de> for &mut Each<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            // Each element's text as delivered, then parsed on its own: a repeated key
            // rejects that element only.
            while let Some(text) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
                self.n += 1;
                let text = text.get();
                let parsed = if text.len() > self.max {
                    Err(format!(
                        "element of {} bytes is over the {}-byte limit",
                        text.len(),
                        self.max
                    ))
                } else {
                    match parse_value(text, self.duplicates_allowed) {
                        Ok(Value::Object(m)) => Ok(m),
                        Ok(other) => Err(format!("not a JSON object but {}", kind(&other))),
                        Err(e) => Err(e.to_string()),
                    }
                };
                if let Err(e) = (self.each)(Item {
                    line_no: self.n,
                    raw: text.as_bytes().to_vec(),
                    parsed,
                    kind: ItemKind::Record,
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
        duplicates_allowed,
        n: 0,
        failed: None,
    };
    // A byte-order mark before the array is not JSON: skipped.
    if r.fill_buf()?.starts_with(BOM) {
        r.consume(BOM.len());
    }
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
            raw: Vec::new(),
            kind: ItemKind::Record,
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
    /// The bytes from the end of the previous item up to `end` (a stream offset), exactly as
    /// delivered: line ends and blank lines before the record included; forgets them.
    fn take(&mut self, end: u64) -> Vec<u8> {
        let to = (end.saturating_sub(self.base) as usize).min(self.bytes.len());
        let raw = self.bytes[..to].to_vec();
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

/// The line ends (`\n`) in `b`.
fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|c| **c == b'\n').count() as u64
}

/// The CSV header of `rdr`: the column names, the problem that rejects every record (a name
/// declared twice, unless `duplicates_allowed`), and the header's item. An unreadable header
/// is the file's one item (`Err`).
fn csv_header<R: Read>(
    rdr: &mut csv::Reader<Tee<R>>,
    seen: &std::cell::RefCell<Seen>,
    duplicates_allowed: bool,
) -> Result<(Vec<String>, Option<String>, Item), Item> {
    let mut headers: Vec<String> = Vec::new();
    let mut header_problem = None;
    match rdr.byte_headers() {
        Ok(h) => {
            for (i, x) in h.iter().enumerate() {
                // A byte-order mark before the first column's name is not part of it.
                let x = if i == 0 {
                    x.strip_prefix(BOM).unwrap_or(x)
                } else {
                    x
                };
                let name = String::from_utf8_lossy(x).trim().to_string();
                if !duplicates_allowed && headers.contains(&name) && header_problem.is_none() {
                    header_problem = Some(format!(
                        "{DUPLICATE} {} in the CSV header",
                        serde_json::to_string(&name).expect("strings serialise")
                    ));
                }
                headers.push(name);
            }
            let item = Item {
                line_no: 1,
                raw: seen.borrow_mut().take(rdr.position().byte()),
                parsed: header_problem.clone().map_or(Ok(Map::new()), Err),
                kind: if header_problem.is_some() {
                    ItemKind::Record
                } else {
                    ItemKind::Header
                },
            };
            Ok((headers, header_problem, item))
        }
        Err(e) => {
            let raw = seen.borrow_mut().take(rdr.position().byte());
            Err(Item {
                line_no: 1,
                raw,
                parsed: Err(format!("unreadable CSV header: {e}")),
                kind: ItemKind::Record,
            })
        }
    }
}

/// A CSV record's fields by column name, all text; an error for a record over `max` bytes or
/// with a field that is not UTF-8.
#[inline]
fn csv_fields(
    headers: &[String],
    rec: &csv::ByteRecord,
    max: usize,
) -> Result<Map<String, Value>, String> {
    let size: usize = rec.iter().map(<[u8]>::len).sum();
    if size > max {
        return Err(format!(
            "record of {size} bytes is over the {max}-byte limit"
        ));
    }
    let mut m = Map::new();
    for (h, v) in headers.iter().zip(rec.iter()) {
        match std::str::from_utf8(v) {
            Ok(s) => {
                m.insert(h.clone(), Value::String(s.to_string()));
            }
            Err(e) => {
                return Err(format!(
                    "invalid UTF-8 in field `{h}` at byte {}",
                    e.valid_up_to()
                ));
            }
        }
    }
    Ok(m)
}

fn csv_records<E: From<std::io::Error>>(
    r: impl Read,
    max: usize,
    duplicates_allowed: bool,
    each: &mut impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Seen::default()));
    let tee = Tee {
        inner: r,
        seen: seen.clone(),
    };
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(tee);
    // Each item is handed over when the next one is read, so the bytes after the last record
    // (its line end, trailing blank lines) join it: the items back to back are the file.
    let (headers, header_problem, header) = match csv_header(&mut rdr, &seen, duplicates_allowed) {
        Ok(h) => h,
        Err(unreadable) => return each(unreadable),
    };
    let mut pending = Some(header);
    // Line numbers counted from the bytes: the reader's own stop between the CR and LF of a
    // CRLF, and count blank lines it skips, one line short.
    let mut newlines = pending.as_ref().map_or(0, |h| bytecount(&h.raw));
    let mut number = |raw: &[u8]| {
        let lead = raw.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
        let line_no = 1 + newlines + lead.filter(|b| **b == b'\n').count() as u64;
        newlines += bytecount(raw);
        line_no
    };
    let mut rec = csv::ByteRecord::new();
    loop {
        let item = match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let raw = seen.borrow_mut().take(rdr.position().byte());
                let line_no = number(&raw);
                let blank = rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace));
                let parsed = if blank {
                    Err(BLANK.to_string())
                } else if let Some(p) = &header_problem {
                    Err(p.clone())
                } else {
                    csv_fields(&headers, &rec, max)
                };
                Item {
                    line_no,
                    raw,
                    parsed,
                    kind: if blank {
                        ItemKind::Blank
                    } else {
                        ItemKind::Record
                    },
                }
            }
            Err(e) => {
                let raw = seen.borrow_mut().take(rdr.position().byte());
                let line_no = number(&raw);
                let io = matches!(e.kind(), csv::ErrorKind::Io(_));
                // A whitespace-only line has too few fields: blank, not malformed.
                let blank = !io && raw.iter().all(u8::is_ascii_whitespace);
                let item = Item {
                    line_no,
                    raw,
                    parsed: Err(if blank {
                        BLANK.to_string()
                    } else {
                        format!("malformed CSV: {e}")
                    }),
                    kind: if blank {
                        ItemKind::Blank
                    } else {
                        ItemKind::Record
                    },
                };
                if io {
                    pending.take().map_or(Ok(()), &mut *each)?;
                    return each(item);
                }
                item
            }
        };
        if let Some(p) = pending.replace(item) {
            each(p)?;
        }
    }
    let tail = seen.borrow_mut().take(u64::MAX);
    if let Some(mut p) = pending {
        p.raw.extend_from_slice(&tail);
        each(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Collected = Vec<(u64, Vec<u8>, Result<Map<String, Value>, String>, ItemKind)>;

    fn collect(name: &str, bytes: &[u8], max: usize) -> Collected {
        collect_with(name, bytes, max, false)
    }

    fn collect_with(name: &str, bytes: &[u8], max: usize, duplicates_allowed: bool) -> Collected {
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
        read_items::<std::io::Error>(&p, f, gz, max, duplicates_allowed, |i| {
            out.push((i.line_no, i.raw, i.parsed, i.kind));
            Ok(())
        })
        .unwrap();
        out
    }

    fn concat(items: &Collected) -> Vec<u8> {
        items.iter().flat_map(|i| i.1.clone()).collect()
    }

    #[test]
    fn json_lines_with_every_kind_of_bad_line() {
        let mut data = b"{\"a\": 1}\n{\"a\": \n\n[1, 2]\n".to_vec();
        data.extend_from_slice(b"{\"a\": \"\xff\xfe\"}\n");
        data.extend_from_slice(format!("{{\"a\": \"{}\"}}\r\n", "x".repeat(100)).as_bytes());
        data.extend_from_slice(b" \t \r\n{\"b\": 2}");
        let items = collect("d.jsonl.gz", &data, 64);
        let reasons: Vec<String> = items
            .iter()
            .map(|i| i.2.as_ref().err().cloned().unwrap_or_default())
            .collect();
        assert_eq!(items.len(), 8, "{reasons:?}");
        assert_eq!(items[0].0, 1);
        assert!(reasons[0].is_empty());
        assert!(reasons[1].starts_with("malformed JSON"), "{reasons:?}");
        assert_eq!((items[2].0, items[2].3), (3, ItemKind::Blank));
        assert_eq!(
            reasons[2], BLANK,
            "a blank line is an item, listed as blank"
        );
        assert_eq!(reasons[3], "not a JSON object but an array");
        assert!(
            reasons[4].starts_with("invalid UTF-8 at byte 7"),
            "{reasons:?}"
        );
        assert!(reasons[5].contains("over the 64-byte limit"), "{reasons:?}");
        assert_eq!(
            items[5].1.len(),
            111,
            "an over-size line is kept whole, CRLF included"
        );
        assert_eq!(items[6].3, ItemKind::Blank, "whitespace only: blank");
        assert!(reasons[7].is_empty(), "a last line without newline is read");
        assert_eq!(concat(&items), data, "the items back to back are the file");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_record() {
        let items = collect("d.jsonl", b"\xEF\xBB\xBF{\"a\": 1}\r\n{\"a\": 2}\n", 100);
        assert!(items.iter().all(|i| i.2.is_ok()), "{:?}", items[0].2);
        assert!(items[0].1.starts_with(BOM), "kept in the item's bytes");
        let items = collect("d.json", b"\xEF\xBB\xBF[{\"a\": 1}]", 100);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].2.as_ref().unwrap()["a"], 1);
        let data = b"\xEF\xBB\xBFid,text\n1,x\n";
        let items = collect("d.csv", data, 100);
        assert_eq!(items[0].3, ItemKind::Header);
        assert_eq!(items[1].2.as_ref().unwrap()["id"], "1", "{:?}", items[1].2);
        assert_eq!(concat(&items), data);
    }

    #[test]
    fn a_key_named_twice_is_rejected_unless_allowed() {
        let e = parse_json_line(r#"{"a": 1, "b": 2, "a": 3}"#, false).unwrap_err();
        assert!(e.starts_with(r#"duplicate key "a""#), "{e}");
        let e = parse_json_line(r#"{"a": {"x": 1, "x": 2}}"#, false).unwrap_err();
        assert!(e.starts_with(r#"duplicate key "x""#), "nested: {e}");
        let e = parse_json_line(r#"{"a\u0000": 1, "a\u0000": 2}"#, false).unwrap_err();
        assert!(e.starts_with(r#"duplicate key "a\u0000""#), "escaped: {e}");
        assert_eq!(
            parse_json_line(r#"{"a": 1, "a": 3}"#, true).unwrap()["a"],
            3,
            "allowed: the last one wins"
        );
        let items = collect("d.json", br#"[{"a": 1, "a": 2}, {"a": 3}]"#, 100);
        assert!(
            items[0]
                .2
                .as_ref()
                .unwrap_err()
                .starts_with("duplicate key")
        );
        assert_eq!(items[1].2.as_ref().unwrap()["a"], 3, "only that element");
        let items = collect("d.csv", b"id,x,x\n1,2,3\n", 100);
        assert!(items[0].2.as_ref().unwrap_err().contains("CSV header"));
        assert!(
            items[1]
                .2
                .as_ref()
                .unwrap_err()
                .contains(r#"duplicate key "x""#)
        );
        let items = collect_with("d.csv", b"id,x,x\n1,2,3\n", 100, true);
        assert_eq!(items[1].2.as_ref().unwrap()["x"], "3");
    }

    #[test]
    fn json_arrays_stream_elements() {
        let items = collect("d.json", br#"[{"a": 1}, 5, {"b": "x"}]"#, 1000);
        assert_eq!(items.len(), 3);
        assert!(items[1].2.is_err());
        assert_eq!(items[2].2.as_ref().unwrap()["b"], "x");
        assert_eq!(items[0].1, br#"{"a": 1}"#, "an element's text as delivered");
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
        let data = b"id,text\n1,\"hello, world\"\n2,a,extra\n  \n\n3,\"multi\nline\"\n\n";
        let items = collect("d.csv", data, 1000);
        let kinds: Vec<ItemKind> = items.iter().map(|i| i.3).collect();
        use ItemKind::*;
        assert_eq!(
            kinds,
            [Header, Record, Record, Blank, Record],
            "{:?}",
            items.iter().map(|i| &i.2).collect::<Vec<_>>()
        );
        assert_eq!(items[1].2.as_ref().unwrap()["text"], "hello, world");
        assert!(items[2].2.as_ref().unwrap_err().contains("malformed CSV"));
        assert_eq!(items[3].2.as_ref().unwrap_err(), BLANK);
        assert_eq!(items[4].2.as_ref().unwrap()["text"], "multi\nline");
        // Each record's bytes as delivered: quotes, the bad row, the embedded newline; the
        // empty line before record 3 and after it join the record.
        assert_eq!(concat(&items), data);
        assert_eq!(items[4].1, b"\n3,\"multi\nline\"\n\n");
        let lines: Vec<u64> = items.iter().map(|i| i.0).collect();
        assert_eq!(lines, [1, 2, 3, 4, 6], "the line each record starts on");
        let crlf = b"id,text\r\n1,x\r\n2,\"y\r\nz\"\r\n";
        let items = collect("d.csv", crlf, 1000);
        assert_eq!(concat(&items), crlf);
        assert_eq!(items[2].2.as_ref().unwrap()["text"], "y\r\nz");
        assert_eq!(
            (items[1].0, items[2].0),
            (2, 3),
            "CRLF lines are numbered right"
        );
        assert_eq!(format_of("x.CSV.GZ"), Some((Format::Csv, true)));
        assert_eq!(format_of("readme.txt"), None);
    }
}
