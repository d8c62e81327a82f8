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
    let (version_num, version_text) = match ds.version.as_ref().and_then(|f| fields.get(f)) {
        Some(Value::Number(n)) => (n.as_f64(), None),
        Some(Value::String(s)) => (None, Some(s.clone())),
        _ => (None, None),
    };
    let payload = serde_json::to_string(&fields).expect("JSON values serialise");
    Ok(Candidate {
        key: serde_json::to_string(&parts).expect("strings serialise"),
        row_hash: blake3::hash(payload.as_bytes()).to_hex()[..32].to_string(),
        payload,
        version_num,
        version_text,
    })
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
            product_summary: false,
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
}
