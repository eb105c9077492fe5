//! Toxics as Toxiproxy 2.12 describes them: types, attributes (all default to 0), JSON shapes.

use crate::gojson;
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::Value;

/// An error answered as `{"error": message, "status": status}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub message: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(message: impl Into<String>, status: u16) -> Self {
        Self { message: message.into(), status }
    }
    pub fn bad_body(detail: impl std::fmt::Display) -> Self {
        Self::new(format!("bad request body: {detail}"), 400)
    }
    pub fn missing_field(detail: &str) -> Self {
        Self::new(format!("missing required field: {detail}"), 400)
    }
    pub fn proxy_not_found() -> Self {
        Self::new("proxy not found", 404)
    }
    pub fn proxy_exists() -> Self {
        Self::new("proxy already exists", 409)
    }
    pub fn toxic_not_found() -> Self {
        Self::new("toxic not found", 404)
    }
    pub fn toxic_exists() -> Self {
        Self::new("toxic already exists", 409)
    }
    pub fn invalid_stream() -> Self {
        Self::new("stream was invalid, can be either upstream or downstream", 400)
    }
    pub fn invalid_toxic_type() -> Self {
        Self::new("invalid toxic type", 400)
    }
    /// Errors without a status of their own (bind failures) are 500s, as in Toxiproxy.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(message, 500)
    }
}

/// `upstream` carries client → server bytes, `downstream` server → client bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Upstream = 0,
    Downstream = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Upstream, Direction::Downstream];

    pub fn parse(stream: &str) -> Option<Self> {
        match stream.to_ascii_lowercase().as_str() {
            "upstream" => Some(Self::Upstream),
            "downstream" => Some(Self::Downstream),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ToxicKind {
    Noop,
    Latency { latency: i64, jitter: i64 },
    Bandwidth { rate: i64 },
    SlowClose { delay: i64 },
    Timeout { timeout: i64 },
    ResetPeer { timeout: i64 },
    Slicer { average_size: i64, size_variation: i64, delay: i64 },
    LimitData { bytes: i64 },
}

impl ToxicKind {
    /// A toxic of a registered type with every attribute at 0.
    pub fn new(type_name: &str) -> Option<Self> {
        Some(match type_name {
            "noop" => Self::Noop,
            "latency" => Self::Latency { latency: 0, jitter: 0 },
            "bandwidth" => Self::Bandwidth { rate: 0 },
            "slow_close" => Self::SlowClose { delay: 0 },
            "timeout" => Self::Timeout { timeout: 0 },
            "reset_peer" => Self::ResetPeer { timeout: 0 },
            "slicer" => Self::Slicer { average_size: 0, size_variation: 0, delay: 0 },
            "limit_data" => Self::LimitData { bytes: 0 },
            _ => return None,
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Latency { .. } => "latency",
            Self::Bandwidth { .. } => "bandwidth",
            Self::SlowClose { .. } => "slow_close",
            Self::Timeout { .. } => "timeout",
            Self::ResetPeer { .. } => "reset_peer",
            Self::Slicer { .. } => "slicer",
            Self::LimitData { .. } => "limit_data",
        }
    }

    /// Go struct name, for error messages that match Toxiproxy's.
    fn go_struct(&self) -> &'static str {
        match self {
            Self::Noop => "NoopToxic",
            Self::Latency { .. } => "LatencyToxic",
            Self::Bandwidth { .. } => "BandwidthToxic",
            Self::SlowClose { .. } => "SlowCloseToxic",
            Self::Timeout { .. } => "TimeoutToxic",
            Self::ResetPeer { .. } => "ResetToxic",
            Self::Slicer { .. } => "SlicerToxic",
            Self::LimitData { .. } => "LimitDataToxic",
        }
    }

    /// Attributes in Toxiproxy's field order.
    fn attributes_mut(&mut self) -> Vec<(&'static str, &mut i64)> {
        match self {
            Self::Noop => vec![],
            Self::Latency { latency, jitter } => vec![("latency", latency), ("jitter", jitter)],
            Self::Bandwidth { rate } => vec![("rate", rate)],
            Self::SlowClose { delay } => vec![("delay", delay)],
            Self::Timeout { timeout } | Self::ResetPeer { timeout } => vec![("timeout", timeout)],
            Self::Slicer { average_size, size_variation, delay } => {
                vec![("average_size", average_size), ("size_variation", size_variation), ("delay", delay)]
            }
            Self::LimitData { bytes } => vec![("bytes", bytes)],
        }
    }

    fn attributes(&self) -> Vec<(&'static str, i64)> {
        self.clone().attributes_mut().into_iter().map(|(name, value)| (name, *value)).collect()
    }

    /// Decodes `attributes` into this toxic: given keys overwrite, missing keys keep their values.
    pub fn merge_attributes(&mut self, attributes: Option<&Value>) -> Result<(), String> {
        let Some(value) = attributes else { return Ok(()) };
        let go_struct = self.go_struct();
        let Some(map) = gojson::object(value, &format!("toxics.{go_struct}"))? else {
            return Ok(());
        };
        for (name, slot) in self.attributes_mut() {
            if let Some(decoded) = gojson::int64(map, name, &format!("{go_struct}.{name}"))? {
                *slot = decoded;
            }
        }
        Ok(())
    }

    /// Toxiproxy's channel buffer in front of the toxic (only latency queues chunks).
    pub fn buffer_size(&self) -> usize {
        match self {
            Self::Latency { .. } => 1024,
            _ => 0,
        }
    }

    /// Removing a timeout toxic closes the connections it was applied to (Toxiproxy's Cleanup).
    pub fn closes_on_removal(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

struct Attributes<'a>(&'a ToxicKind);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let attributes = self.0.attributes();
        let mut map = serializer.serialize_map(Some(attributes.len()))?;
        for (name, value) in attributes {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

/// A float32 as Go prints it: whole numbers without a fraction (`1`, not `1.0`).
struct GoFloat32(f32);

impl Serialize for GoFloat32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            serializer.serialize_i64(value as i64)
        } else {
            serializer.serialize_f32(value)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    pub name: String,
    pub kind: ToxicKind,
    /// The stream as the client spelled it (Toxiproxy keeps it verbatim, e.g. in the default name).
    pub stream: String,
    pub direction: Direction,
    pub toxicity: f32,
}

impl Serialize for Toxic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Toxic", 5)?;
        s.serialize_field("attributes", &Attributes(&self.kind))?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("type", self.kind.type_name())?;
        s.serialize_field("stream", &self.stream)?;
        s.serialize_field("toxicity", &GoFloat32(self.toxicity))?;
        s.end()
    }
}

impl Toxic {
    /// Parses a toxic-creation body, checking in Toxiproxy's order: body, stream, type, then (after the
    /// caller's name-conflict check, see `attributes_from`) attributes.
    pub fn from_create_body(body: &Value) -> Result<(Self, Option<Value>), ApiError> {
        let map = gojson::object(body, "toxics.ToxicWrapper").map_err(ApiError::bad_body)?;
        let mut type_name = String::new();
        let mut name = String::new();
        let mut stream = "downstream".to_owned();
        let mut toxicity = 1.0_f32;
        let mut attributes = None;
        if let Some(map) = map {
            let read = || -> Result<_, String> {
                Ok((
                    gojson::string(map, "type", "ToxicWrapper.type")?,
                    gojson::string(map, "name", "ToxicWrapper.name")?,
                    gojson::string(map, "stream", "ToxicWrapper.stream")?,
                    gojson::float32(map, "toxicity", "ToxicWrapper.toxicity")?,
                ))
            };
            let (t, n, s, x) = read().map_err(ApiError::bad_body)?;
            type_name = t.unwrap_or(type_name);
            name = n.unwrap_or(name);
            stream = s.unwrap_or(stream);
            toxicity = x.unwrap_or(toxicity);
            attributes = gojson::field(map, "attributes").cloned();
            // Go decodes the attributes into an empty struct first: anything but an object is an error.
            if let Some(value) = &attributes {
                gojson::object(value, "toxics.NoopToxic").map_err(ApiError::bad_body)?;
            }
        }
        let direction = Direction::parse(&stream).ok_or_else(ApiError::invalid_stream)?;
        if name.is_empty() {
            name = format!("{type_name}_{stream}");
        }
        let kind = ToxicKind::new(&type_name).ok_or_else(ApiError::invalid_toxic_type)?;
        Ok((Self { name, kind, stream, direction, toxicity }, attributes))
    }

    /// Applies the attributes of a creation body (defaults 0 for the ones not given).
    pub fn with_attributes(mut self, attributes: Option<&Value>) -> Result<Self, ApiError> {
        self.kind.merge_attributes(attributes).map_err(ApiError::bad_body)?;
        Ok(self)
    }

    /// An update: `attributes` merged into the current ones, `toxicity` replaced if given.
    pub fn updated(&self, body: &Value) -> Result<Self, ApiError> {
        let mut toxic = self.clone();
        let Some(map) = gojson::object(body, "struct").map_err(ApiError::bad_body)? else {
            return Ok(toxic);
        };
        if let Some(toxicity) = gojson::float32(map, "toxicity", ".toxicity").map_err(ApiError::bad_body)? {
            toxic.toxicity = toxicity;
        }
        toxic.kind.merge_attributes(gojson::field(map, "attributes")).map_err(ApiError::bad_body)?;
        Ok(toxic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> Result<Toxic, ApiError> {
        let (toxic, attributes) = Toxic::from_create_body(&body)?;
        toxic.with_attributes(attributes.as_ref())
    }

    #[test]
    fn defaults_follow_toxiproxy() {
        let toxic = create(json!({"type": "latency"})).unwrap();
        assert_eq!(toxic.name, "latency_downstream");
        assert_eq!(toxic.direction, Direction::Downstream);
        assert_eq!(toxic.toxicity, 1.0);
        assert_eq!(toxic.kind, ToxicKind::Latency { latency: 0, jitter: 0 });
        let json = serde_json::to_string(&toxic).unwrap();
        assert_eq!(
            json,
            r#"{"attributes":{"latency":0,"jitter":0},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1}"#
        );
    }

    #[test]
    fn validation_order_and_messages() {
        let err = create(json!({"type": "nope", "stream": "sideways"})).unwrap_err();
        assert_eq!(err, ApiError::invalid_stream());
        assert_eq!(create(json!({"type": "nope"})).unwrap_err(), ApiError::invalid_toxic_type());
        let err = create(json!({"type": "latency", "attributes": {"latency": "slow"}})).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.starts_with("bad request body: "), "{}", err.message);
        assert_eq!(create(json!([])).unwrap_err().status, 400);
        let upper = create(json!({"type": "slicer", "stream": "UPSTREAM"})).unwrap();
        assert_eq!((upper.name.as_str(), upper.direction), ("slicer_UPSTREAM", Direction::Upstream));
    }

    #[test]
    fn update_merges_attributes_and_keeps_toxicity_unless_given() {
        let toxic =
            create(json!({"type": "latency", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 7}}))
                .unwrap();
        let updated = toxic.updated(&json!({"attributes": {"latency": 200}})).unwrap();
        assert_eq!(updated.kind, ToxicKind::Latency { latency: 200, jitter: 7 });
        assert_eq!(updated.toxicity, 0.5);
        let updated = toxic.updated(&json!({"toxicity": 0.25, "name": "ignored"})).unwrap();
        assert_eq!((updated.toxicity, updated.name.as_str()), (0.25, "latency_downstream"));
        assert!(serde_json::to_string(&updated).unwrap().contains("\"toxicity\":0.25"));
    }
}
