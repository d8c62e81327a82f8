//! From a delivered object to a silver candidate: declared types checked (CSV text converted),
//! the key extracted as a JSON array of its parts (composite keys cannot collide), the version
//! read, and a canonical payload (sorted keys) hashed so an unchanged record writes nothing.

use crate::config::{Dataset, FieldType};
use serde_json::{Map, Value};

/// An accepted record, ready for staging.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub key: String,
    pub payload: String,
    pub row_hash: String,
    pub version_num: Option<f64>,
    pub version_text: Option<String>,
}

impl Candidate {
    /// The candidate of a record with key `parts` and canonical `payload`: the key as a JSON
    /// array of its parts, the row hash over the payload. Both parsing paths build it here, so
    /// the hash of stored versions has one definition.
    fn new(
        parts: &[String],
        payload: String,
        version_num: Option<f64>,
        version_text: Option<String>,
    ) -> Candidate {
        Candidate {
            key: serde_json::to_string(parts).expect("strings serialise"),
            row_hash: blake3::hash(payload.as_bytes()).to_hex()[..32].to_string(),
            payload,
            version_num,
            // A text column: no NUL on PostgreSQL, so none on either store (the payload keeps
            // the value, escaped as JSON writes it: `\u0000`).
            version_text: version_text.map(|t| match super::db::storable(&t) {
                std::borrow::Cow::Borrowed(_) => t,
                std::borrow::Cow::Owned(o) => o,
            }),
        }
    }
}

fn convert(field: &str, v: Value, t: FieldType, from_csv: bool) -> Result<Value, String> {
    if v.is_null() {
        return Ok(v);
    }
    let wrong = |v: &Value| {
        format!("field `{field}` should be {t:?} but is {v}")
            .to_lowercase()
            .replace("should be ", "should be a ")
    };
    if from_csv && let Value::String(s) = &v {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Value::Null);
        }
        return match t {
            FieldType::String | FieldType::Any => Ok(v),
            FieldType::Int => s.parse::<i64>().map(Value::from).map_err(|_| wrong(&v)),
            FieldType::Float => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| wrong(&v)),
            FieldType::Bool => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Value::Bool(true)),
                "false" | "0" | "no" => Ok(Value::Bool(false)),
                _ => Err(wrong(&v)),
            },
            FieldType::Array | FieldType::Object => match serde_json::from_str::<Value>(s) {
                Ok(x @ Value::Array(_)) if t == FieldType::Array => Ok(x),
                Ok(x @ Value::Object(_)) if t == FieldType::Object => Ok(x),
                _ => Err(wrong(&v)),
            },
        };
    }
    let ok = match t {
        FieldType::Any => true,
        FieldType::String => v.is_string(),
        FieldType::Int => v.is_i64() || v.is_u64(),
        FieldType::Float => v.is_number(),
        FieldType::Bool => v.is_boolean(),
        FieldType::Array => v.is_array(),
        FieldType::Object => v.is_object(),
    };
    if ok { Ok(v) } else { Err(wrong(&v)) }
}

/// Checks and normalises one object; `Err` is the reject reason.
pub fn candidate(
    ds: &Dataset,
    mut fields: Map<String, Value>,
    from_csv: bool,
) -> Result<Candidate, String> {
    // Types are converted in place and the keys sorted: the same canonical text as building a
    // sorted map, without moving every field (nested objects keep their order, as before).
    if !ds.types.is_empty() {
        for (k, v) in fields.iter_mut() {
            if let Some(t) = ds.types.get(k) {
                *v = convert(k, std::mem::take(v), *t, from_csv)?;
            }
        }
    }
    fields.sort_keys();
    let mut parts = Vec::with_capacity(ds.key.len());
    for k in &ds.key {
        match fields.get(k) {
            None | Some(Value::Null) => return Err(format!("missing key field `{k}`")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(format!("empty key field `{k}`"));
            }
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => parts.push(v.to_string()),
            Some(v) => {
                return Err(format!(
                    "key field `{k}` must be a string or number, not {v}"
                ));
            }
        }
    }
    shape(ds, |f| fields.get(f))?;
    let (version_num, version_text) = match ds.version.as_ref().and_then(|f| fields.get(f)) {
        Some(Value::Number(n)) => (n.as_f64(), None),
        Some(Value::String(s)) => (None, Some(s.clone())),
        _ => (None, None),
    };
    let payload = serde_json::to_string(&fields).expect("JSON values serialise");
    Ok(Candidate::new(&parts, payload, version_num, version_text))
}

/// The declared shape beyond types: required fields present and not null, arrays of their
/// declared length. `get` reads a field's (converted) value.
fn shape<'a>(ds: &Dataset, get: impl Fn(&str) -> Option<&'a Value>) -> Result<(), String> {
    for f in &ds.required {
        match get(f) {
            None => return Err(format!("missing required field `{f}`")),
            Some(Value::Null) => return Err(format!("required field `{f}` is null")),
            Some(_) => {}
        }
    }
    for (f, n) in &ds.array_lengths {
        match get(f) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.len() == *n => {}
            Some(Value::Array(a)) => {
                return Err(format!(
                    "field `{f}` should have {n} elements but has {}",
                    a.len()
                ));
            }
            Some(v) => return Err(format!("field `{f}` should be an array of {n} but is {v}")),
        }
    }
    Ok(())
}

/// One JSON line straight to a candidate, or the reason it is rejected.
///
/// Same result as [`super::read::parse_json_line`] followed by [`candidate`], but faster: the
/// line is parsed into its top-level fields with borrowed texts (no tree, no copies), and a
/// value whose delivered text is already canonical (a string without unusual escapes, an
/// integer, `true`, `false`, `null`) is copied as is. Only other values (floats, arrays,
/// objects) are parsed and re-serialised, one at a time. A line this path cannot take as a
/// whole (escaped or repeated field names, or malformed: the slow path words the error) goes
/// through the slow path, so both always agree; a test compares them.
pub fn candidate_from_json_line(ds: &Dataset, line: &str) -> Result<Candidate, String> {
    match fast_candidate(ds, line) {
        Some(c) => Ok(c),
        None => super::read::parse_json_line(line, ds.duplicate_keys_allowed)
            .and_then(|m| candidate(ds, m, false)),
    }
}

/// The top-level fields of a JSON object as delivered: names without escapes, value texts.
struct RawFields<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawFields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(16);
                // A name with escapes cannot be borrowed: an error here, the slow path then.
                while let Some(entry) =
                    map.next_entry::<&'de str, &'de serde_json::value::RawValue>()?
                {
                    fields.push(entry);
                }
                Ok(RawFields(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A field's value: its canonical text, and the parsed value when the text had to be rebuilt.
struct FieldValue<'a> {
    text: std::borrow::Cow<'a, str>,
    parsed: Option<Value>,
}

impl FieldValue<'_> {
    /// Canonical as delivered: serde_json writes a string's text back the same when its only
    /// escapes are the ones it writes itself (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t` and
    /// `\u00xx` for other control characters), and an integer in i64/u64 range the same except
    /// `-0`.
    fn of(raw: &str, duplicates_allowed: bool) -> Result<FieldValue<'_>, serde_json::Error> {
        let as_is = match raw.as_bytes().first() {
            Some(b'"') => string_is_canonical(raw),
            Some(b't' | b'f' | b'n') => true,
            Some(b'-' | b'0'..=b'9') => integer(raw).is_some(),
            _ => false,
        };
        if as_is {
            return Ok(FieldValue {
                text: raw.into(),
                parsed: None,
            });
        }
        // Parsed inside an array, so it counts one level of nesting as it does inside its line's
        // object: a value nested too deeply for the whole line is rejected here too.
        let v = match raw.as_bytes().first() {
            Some(b'[' | b'{') => {
                match super::read::parse_value(&format!("[{raw}]"), duplicates_allowed)? {
                    Value::Array(mut a) if a.len() == 1 => a.pop().expect("one element"),
                    _ => unreachable!("a single value in brackets is a one-element array"),
                }
            }
            _ => serde_json::from_str(raw)?,
        };
        Ok(FieldValue {
            text: serde_json::to_string(&v)?.into(),
            parsed: Some(v),
        })
    }

    fn is_null(&self) -> bool {
        self.parsed
            .as_ref()
            .map_or(&*self.text == "null", Value::is_null)
    }

    fn is_string(&self) -> bool {
        self.text.starts_with('"')
    }

    /// The string's value (unescaped), if it is one.
    fn string(&self) -> Option<String> {
        if !self.is_string() {
            return None;
        }
        match &self.parsed {
            Some(v) => v.as_str().map(str::to_string),
            None if !self.text.contains('\\') => {
                Some(self.text[1..self.text.len() - 1].to_string())
            }
            None => serde_json::from_str(&self.text).ok(),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self.text.as_bytes().first(), Some(b'-' | b'0'..=b'9'))
    }

    /// Integer in the sense of serde_json's `is_i64() || is_u64()`.
    fn is_integer(&self) -> bool {
        match &self.parsed {
            Some(v) => v.is_i64() || v.is_u64(),
            None => self.is_number(),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match &self.parsed {
            Some(v) => v.as_f64(),
            None => integer(&self.text).map(|(i, u)| i.map_or(u as f64, |i| i as f64)),
        }
    }

    fn is_bool(&self) -> bool {
        matches!(&*self.text, "true" | "false")
    }
}

/// An integer literal's value as serde_json reads it without turning it into a float: (i64 when
/// negative, u64). `None` for anything else, and for `-0` (written back as `0`).
fn integer(raw: &str) -> Option<(Option<i64>, u64)> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if raw.starts_with('-') {
        let i: i64 = raw.parse().ok()?;
        (i != 0).then_some((Some(i), 0))
    } else {
        raw.parse().ok().map(|u| (None, u))
    }
}

/// Whether serde_json would write this (valid) JSON string back byte for byte.
fn string_is_canonical(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut i = 1;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            match b[i + 1] {
                b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    // \u00xx, lowercase hex, for a control character without a short form.
                    let hex = &b[i + 2..(i + 6).min(b.len())];
                    let lower = |c: &u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
                    if hex.len() < 4 || &hex[..2] != b"00" || !hex.iter().all(lower) {
                        return false;
                    }
                    let c = u8::from_str_radix(std::str::from_utf8(&hex[2..]).unwrap_or("ff"), 16);
                    if !matches!(c, Ok(c) if c < 0x20 && !matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d))
                    {
                        return false;
                    }
                    i += 6;
                }
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// The fast path of [`candidate_from_json_line`] for lines it accepts; `None` hands the line to
/// the slow path, which accepts it the same way or words why it is rejected.
fn fast_candidate(ds: &Dataset, line: &str) -> Option<Candidate> {
    let RawFields(raw) = serde_json::from_str::<RawFields>(line).ok()?;
    let mut fields: Vec<(&str, FieldValue)> = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        fields.push((
            name,
            FieldValue::of(value.get(), ds.duplicate_keys_allowed).ok()?,
        ));
    }
    fields.sort_by(|a, b| a.0.cmp(b.0));
    if fields.windows(2).any(|w| w[0].0 == w[1].0) {
        return None; // a repeated name: the last one wins in the slow path's map
    }
    // A wrong type rejects the line; the slow path words the reason (the first wrong field in
    // delivered order), so both paths report the same one.
    for (name, v) in &fields {
        if let Some(t) = ds.types.get(*name)
            && !v.is_null()
        {
            let ok = match t {
                FieldType::Any => true,
                FieldType::String => v.is_string(),
                FieldType::Int => v.is_integer(),
                FieldType::Float => v.is_number(),
                FieldType::Bool => v.is_bool(),
                FieldType::Array => v.text.starts_with('['),
                FieldType::Object => v.text.starts_with('{'),
            };
            if !ok {
                return None;
            }
        }
    }
    let get = |name: &str| {
        fields
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| &fields[i].1)
    };
    // A missing or null required field, an array of another length: the slow path words why.
    for f in &ds.required {
        if get(f).is_none_or(FieldValue::is_null) {
            return None;
        }
    }
    for (f, n) in &ds.array_lengths {
        if let Some(v) = get(f)
            && !v.is_null()
            && v.parsed.as_ref().and_then(Value::as_array).map(Vec::len) != Some(*n)
        {
            return None;
        }
    }
    // A missing, empty or non-scalar key field rejects the line: the slow path words why.
    let mut parts = Vec::with_capacity(ds.key.len());
    for k in &ds.key {
        let v = get(k)?;
        if v.is_string() {
            parts.push(v.string().filter(|s| !s.trim().is_empty())?);
        } else if v.is_number() || v.is_bool() {
            parts.push(v.text.to_string());
        } else {
            return None;
        }
    }
    let (version_num, version_text) = match ds.version.as_ref().and_then(|f| get(f)) {
        Some(v) if v.is_number() => (v.as_f64(), None),
        Some(v) if v.is_string() => (None, Some(v.string()?)),
        _ => (None, None),
    };
    let mut payload = String::with_capacity(
        2 + fields
            .iter()
            .map(|(n, v)| n.len() + v.text.len() + 4)
            .sum::<usize>(),
    );
    payload.push('{');
    for (i, (name, v)) in fields.iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        // A borrowed name has no escapes, and a JSON name cannot hold a raw control character.
        payload.push('"');
        payload.push_str(name);
        payload.push_str("\":");
        payload.push_str(&v.text);
    }
    payload.push('}');
    Some(Candidate::new(&parts, payload, version_num, version_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(types: &[(&str, FieldType)]) -> Dataset {
        Dataset {
            name: "d".into(),
            from: "file:///x".into(),
            key: vec!["a".into(), "b".into()],
            version: Some("v".into()),
            snapshot: false,
            types: types.iter().map(|(k, t)| (k.to_string(), *t)).collect(),
            max_line_bytes: 1000,
            max_reject_share: 0.1,
            gold: None,
            required: Vec::new(),
            array_lengths: Default::default(),
            duplicate_keys_allowed: false,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn composite_keys_cannot_collide() {
        let d = ds(&[]);
        let x = candidate(&d, obj(json!({"a": "ab", "b": "c"})), false).unwrap();
        let y = candidate(&d, obj(json!({"a": "a", "b": "bc"})), false).unwrap();
        assert_ne!(x.key, y.key, "dlt #4244: 'ab'+'c' vs 'a'+'bc'");
        assert_eq!(x.key, r#"["ab","c"]"#);
    }

    #[test]
    fn payload_is_canonical_and_hashed() {
        let d = ds(&[]);
        let x = candidate(&d, obj(json!({"b": "1", "a": "2", "z": [1, 2]})), false).unwrap();
        let y = candidate(&d, obj(json!({"z": [1, 2], "a": "2", "b": "1"})), false).unwrap();
        assert_eq!(x.row_hash, y.row_hash, "field order does not matter");
        assert_eq!(x.payload, r#"{"a":"2","b":"1","z":[1,2]}"#);
    }

    #[test]
    fn canonical_text_is_the_sorted_map_text() {
        // Row hashes of stored versions must not change: the payload is the text of a sorted
        // map of the top-level fields, nested objects as delivered.
        let d = ds(&[]);
        let o = obj(
            json!({"z": {"y": 1, "b": [2, {"q": 1, "a": 2}]}, "b": "x", "a": "é\"", "m": null}),
        );
        let reference: std::collections::BTreeMap<String, Value> = o.clone().into_iter().collect();
        let c = candidate(&d, o, false).unwrap();
        assert_eq!(c.payload, serde_json::to_string(&reference).unwrap());
        assert_eq!(
            c.payload,
            r#"{"a":"é\"","b":"x","m":null,"z":{"y":1,"b":[2,{"q":1,"a":2}]}}"#
        );
    }

    fn slow(d: &Dataset, line: &str) -> Result<Candidate, String> {
        crate::ingest::read::parse_json_line(line, d.duplicate_keys_allowed)
            .and_then(|m| candidate(d, m, false))
    }

    #[test]
    fn the_fast_path_takes_ordinary_lines_and_agrees_with_the_slow_one() {
        let d = ds(&[("n", FieldType::Int), ("f", FieldType::Float)]);
        let line =
            r#"{"b": 2, "a": "x \"q\" \\ \n\u001f é", "n": -7, "f": 4.50, "z": [1, 2], "v": 17}"#;
        let c = fast_candidate(&d, line).expect("an ordinary line takes the fast path");
        assert_eq!(Ok(c.clone()), slow(&d, line));
        assert_eq!(
            c.payload,
            r#"{"a":"x \"q\" \\ \n\u001f é","b":2,"f":4.5,"n":-7,"v":17,"z":[1,2]}"#
        );
        assert_eq!(c.version_num, Some(17.0));
    }

    #[test]
    fn nesting_too_deep_for_the_line_is_rejected_by_both_paths() {
        let d = ds(&[]);
        for depth in [120, 126, 127, 128, 200] {
            let line = format!(
                r#"{{"a":"1","b":2,"n":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let fast = candidate_from_json_line(&d, &line);
            assert_eq!(fast, slow(&d, &line), "depth {depth}");
            assert_eq!(fast.is_ok(), depth < 127, "depth {depth}: {fast:?}");
        }
    }

    #[test]
    fn fast_and_slow_paths_agree_on_tricky_lines() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        // Value texts serde_json writes back differently, or that are edge cases of the fast
        // path's checks (escapes, -0, integers beyond u64, floats, nested whitespace).
        const VALUES: &[&str] = &[
            r#""plain""#,
            r#""q\"uote\\""#,
            r#""\u00e9""#,
            r#""\/""#,
            r#""\u001f""#,
            r#""\u001F""#,
            r#""\u000a""#,
            r#""\n\t\r\b\f""#,
            r#""\ud83d\ude00""#,
            r#""""#,
            r#""  ""#,
            r#""é ☃""#,
            "-0",
            "0",
            "12",
            "-12",
            "1.50",
            "1e5",
            "-0.0",
            "5.0",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "-9223372036854775808",
            "-9223372036854775809",
            "true",
            "false",
            "null",
            "[1, 2]",
            "[ ]",
            "{}",
            r#"{"y": 1, "b": [2, {"q": 1}]}"#,
            r#"{"d":1,"d":2}"#,
            r#"[" a ", 1.0]"#,
        ];
        const NAMES: &[&str] = &["a", "b", "v", "n", "f", "h", "o", "z", r"k\u0041", "é", ""];
        let d = ds(&[
            ("n", FieldType::Int),
            ("f", FieldType::Float),
            ("h", FieldType::Array),
            ("o", FieldType::Object),
            ("z", FieldType::String),
        ]);
        let mut rng = StdRng::seed_from_u64(7);
        let ws = |rng: &mut StdRng| ["", " ", "  ", "\t"][rng.random_range(0..4)];
        let mut fast_taken = 0;
        for i in 0..30_000 {
            let mut line = format!("{}{{", ws(&mut rng));
            // Every other line starts with both key fields, so many lines are accepted (the
            // others are mostly rejects for a missing key).
            let with_key = i % 2 == 1;
            for f in 0..rng.random_range(0..7) + if with_key { 2 } else { 0 } {
                if f > 0 {
                    line.push(',');
                }
                let name = match f {
                    0 if with_key => "a",
                    1 if with_key => "b",
                    _ => NAMES[rng.random_range(0..NAMES.len())],
                };
                let value = VALUES[rng.random_range(0..VALUES.len())];
                line += &format!(
                    "{}\"{name}\"{}:{}{value}{}",
                    ws(&mut rng),
                    ws(&mut rng),
                    ws(&mut rng),
                    ws(&mut rng)
                );
            }
            line.push('}');
            if i % 50 == 0 {
                let mut cut = rng.random_range(0..line.len());
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            } else if i % 53 == 0 {
                line = line.replace('{', "[");
            }
            if fast_candidate(&d, &line).is_some() {
                fast_taken += 1;
            }
            assert_eq!(
                candidate_from_json_line(&d, &line),
                slow(&d, &line),
                "{line}"
            );
        }
        assert!(
            fast_taken > 1000,
            "only {fast_taken} lines took the fast path"
        );
    }

    #[test]
    fn types_are_checked_and_csv_text_converted() {
        let d = ds(&[
            ("n", FieldType::Int),
            ("f", FieldType::Float),
            ("h", FieldType::Array),
        ]);
        let ok = candidate(
            &d,
            obj(json!({"a": "1", "b": 2, "n": "42", "f": "1.5", "h": "[1, 3]", "v": "7"})),
            true,
        )
        .unwrap();
        assert!(
            ok.payload.contains(r#""n":42"#) && ok.payload.contains(r#""h":[1,3]"#),
            "{}",
            ok.payload
        );
        let e = candidate(&d, obj(json!({"a": "1", "b": 2, "n": 4.5})), false).unwrap_err();
        assert!(e.contains("field `n` should be a int"), "{e}");
        let e = candidate(&d, obj(json!({"a": "1", "n": 4})), false).unwrap_err();
        assert_eq!(e, "missing key field `b`");
        let v = candidate(&d, obj(json!({"a": "1", "b": 2, "v": 1700000000})), false).unwrap();
        assert_eq!(v.version_num, Some(1.7e9));
        assert_eq!(v.key, r#"["1","2"]"#);
    }

    #[test]
    fn required_fields_array_lengths_and_repeated_keys_agree_on_both_paths() {
        let mut d = ds(&[("a", FieldType::String)]);
        d.required = vec!["r".into()];
        d.array_lengths = [("h".to_string(), 2)].into_iter().collect();
        let cases = [
            (r#"{"a": "1", "b": 2, "r": 1, "h": [1, 2]}"#, None),
            (
                r#"{"a": "1", "b": 2, "h": [1, 2]}"#,
                Some("missing required field `r`"),
            ),
            (
                r#"{"a": "1", "b": 2, "r": null}"#,
                Some("required field `r` is null"),
            ),
            (
                r#"{"a": "1", "b": 2, "r": 1, "h": [1]}"#,
                Some("field `h` should have 2 elements but has 1"),
            ),
            (
                r#"{"a": "1", "b": 2, "r": 1, "h": 5}"#,
                Some("field `h` should be an array of 2 but is 5"),
            ),
            (
                r#"{"a": 1, "b": 2, "r": 1}"#,
                Some("field `a` should be a string but is 1"),
            ),
            (
                r#"{"a": "1", "b": 2, "r": 1, "r": 2}"#,
                Some(r#"duplicate key "r""#),
            ),
            (
                r#"{"a": "1", "b": 2, "r": {"x": 1, "x": 2}}"#,
                Some(r#"duplicate key "x""#),
            ),
        ];
        for (line, want) in cases {
            let got = candidate_from_json_line(&d, line);
            assert_eq!(got, slow(&d, line), "{line}");
            match want {
                None => assert!(got.is_ok(), "{line}: {got:?}"),
                Some(w) => assert!(got.as_ref().unwrap_err().starts_with(w), "{line}: {got:?}"),
            }
        }
        d.duplicate_keys_allowed = true;
        let c = candidate_from_json_line(&d, r#"{"a": "1", "b": 2, "r": 1, "r": 2}"#).unwrap();
        assert!(
            c.payload.contains(r#""r":2"#),
            "the last one wins: {}",
            c.payload
        );
    }
}
