//! Request-body decoding with the semantics of Go's encoding/json, which Toxiproxy's clients rely on:
//! only the first JSON value of a body is read, `null` leaves a field unchanged, unknown keys are
//! ignored, keys match field names case-insensitively, and a wrongly typed value is an error.

use serde_json::{Map, Value};

/// The first JSON value of a request body ("EOF" for an empty body, as Go reports it).
pub fn first_value(body: &[u8]) -> Result<Value, String> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        None => Err("EOF".to_owned()),
        Some(Err(err)) if err.is_eof() => Err("unexpected EOF".to_owned()),
        Some(Err(err)) => Err(err.to_string()),
        Some(Ok(value)) => Ok(value),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An object to decode into a Go struct: `Ok(None)` for `null` (nothing to decode).
pub fn object<'a>(value: &'a Value, go_type: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other => Err(format!("json: cannot unmarshal {} into Go value of type {go_type}", kind(other))),
    }
}

/// A struct field: the exact key if present, else a key equal to it ignoring ASCII case; `null` is absent.
pub fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let value = map
        .get(name)
        .or_else(|| map.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value))?;
    (!value.is_null()).then_some(value)
}

fn mismatch(value: &Value, field_path: &str, go_type: &str) -> String {
    let shown = match value {
        Value::Number(n) => format!("number {n}"),
        other => kind(other).to_owned(),
    };
    format!("json: cannot unmarshal {shown} into Go struct field {field_path} of type {go_type}")
}

pub fn string(map: &Map<String, Value>, name: &str, path: &str) -> Result<Option<String>, String> {
    match field(map, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(mismatch(other, path, "string")),
    }
}

pub fn boolean(map: &Map<String, Value>, name: &str, path: &str) -> Result<Option<bool>, String> {
    match field(map, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(mismatch(other, path, "bool")),
    }
}

/// An int64 field: integer literals only (Go rejects `1.5` and `1e3` for integer fields).
pub fn int64(map: &Map<String, Value>, name: &str, path: &str) -> Result<Option<i64>, String> {
    match field(map, name) {
        None => Ok(None),
        Some(value @ Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| mismatch(value, path, "int64")),
        Some(other) => Err(mismatch(other, path, "int64")),
    }
}

pub fn float32(map: &Map<String, Value>, name: &str, path: &str) -> Result<Option<f32>, String> {
    match field(map, name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|f| f as f32)),
        Some(other) => Err(mismatch(other, path, "float32")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_only_the_first_value() {
        assert_eq!(first_value(b" {\"a\":1} trailing").unwrap(), json!({"a": 1}));
        assert_eq!(first_value(b"  ").unwrap_err(), "EOF");
        assert!(first_value(b"{\"a\":").is_err());
    }

    #[test]
    fn fields_match_case_insensitively_and_null_is_absent() {
        let value = json!({"Name": "x", "upstream": null, "latency": 10, "bad": 1.5});
        let map = value.as_object().unwrap();
        assert_eq!(string(map, "name", "Proxy.name").unwrap(), Some("x".to_owned()));
        assert_eq!(string(map, "upstream", "Proxy.upstream").unwrap(), None);
        assert_eq!(int64(map, "latency", "T.latency").unwrap(), Some(10));
        assert!(int64(map, "bad", "T.bad").unwrap_err().contains("number 1.5"));
        assert!(boolean(map, "name", "Proxy.enabled").is_err());
    }

    #[test]
    fn non_objects_are_rejected_but_null_is_nothing() {
        assert!(object(&json!(null), "toxiproxy.Proxy").unwrap().is_none());
        assert!(object(&json!([1]), "toxiproxy.Proxy").unwrap_err().contains("array"));
    }
}
