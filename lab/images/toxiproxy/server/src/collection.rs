//! The set of proxies by name, with Toxiproxy's create, populate, remove and reset semantics.

use crate::gojson;
use crate::metrics::Metrics;
use crate::model::ApiError;
use crate::net;
use crate::proxy::Proxy;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A proxy as given in a request body or the `-config` file; `None` for fields not given.
#[derive(Debug, Default, PartialEq)]
pub struct ProxyInput {
    pub name: Option<String>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
}

impl ProxyInput {
    pub fn parse(value: &Value) -> Result<Self, String> {
        let Some(map) = gojson::object(value, "toxiproxy.Proxy")? else { return Ok(Self::default()) };
        Ok(Self {
            name: gojson::string(map, "name", "Proxy.name")?,
            listen: gojson::string(map, "listen", "Proxy.listen")?,
            upstream: gojson::string(map, "upstream", "Proxy.upstream")?,
            enabled: gojson::boolean(map, "enabled", "Proxy.enabled")?,
        })
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn upstream(&self) -> &str {
        self.upstream.as_deref().unwrap_or_default()
    }

    fn check(&self, position: Option<usize>) -> Result<(), ApiError> {
        let at = position.map(|n| format!(" at proxy {n}")).unwrap_or_default();
        if self.name().is_empty() {
            return Err(ApiError::missing_field(&format!("name{at}")));
        }
        if self.upstream().is_empty() {
            return Err(ApiError::missing_field(&format!("upstream{at}")));
        }
        Ok(())
    }
}

pub struct Collection {
    proxies: BTreeMap<String, Arc<Proxy>>,
    metrics: Arc<Metrics>,
}

impl Collection {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { proxies: BTreeMap::new(), metrics }
    }

    pub fn get(&self, name: &str) -> Result<Arc<Proxy>, ApiError> {
        self.proxies.get(name).cloned().ok_or_else(ApiError::proxy_not_found)
    }

    /// All proxies, sorted by name (Go's JSON encoding of the map sorts its keys).
    pub fn all(&self) -> impl Iterator<Item = &Arc<Proxy>> {
        self.proxies.values()
    }

    fn new_proxy(&self, input: &ProxyInput) -> Arc<Proxy> {
        let listen = input.listen.clone().unwrap_or_default();
        Proxy::new(input.name().to_owned(), listen, input.upstream().to_owned(), self.metrics.clone())
    }

    /// POST /proxies: 409 if the name exists; a failed bind is a 500 and adds nothing.
    pub async fn create(&mut self, body: &Value) -> Result<Arc<Proxy>, ApiError> {
        let input = ProxyInput::parse(body).map_err(ApiError::bad_body)?;
        input.check(None)?;
        if self.proxies.contains_key(input.name()) {
            return Err(ApiError::proxy_exists());
        }
        let proxy = self.new_proxy(&input);
        if input.enabled.unwrap_or(true) {
            proxy.start().await?;
        }
        self.proxies.insert(proxy.name.clone(), proxy.clone());
        Ok(proxy)
    }

    /// POST or PATCH /proxies/{name}: fields not given keep their values (the name cannot change).
    pub async fn update(&self, name: &str, body: &Value) -> Result<Arc<Proxy>, ApiError> {
        let proxy = self.get(name)?;
        let input = ProxyInput::parse(body).map_err(ApiError::bad_body)?;
        let (listen, upstream, enabled) = proxy.listen_upstream_enabled();
        let listen = input.listen.unwrap_or(listen);
        let upstream = input.upstream.unwrap_or(upstream);
        proxy.update(listen, upstream, input.enabled.unwrap_or(enabled)).await?;
        Ok(proxy)
    }

    /// POST /populate: validates every item first, then creates or replaces them in order. A proxy
    /// with the same listen and upstream is kept as it is (toxics included). On a failure, the
    /// proxies done so far are returned with the error.
    pub async fn populate(&mut self, body: &Value) -> Result<Vec<Arc<Proxy>>, (ApiError, Vec<Arc<Proxy>>)> {
        let items: &[Value] = match body {
            Value::Null => &[],
            Value::Array(items) => items,
            other => {
                let found = if other.is_object() { "object" } else { "value" };
                let message =
                    format!("json: cannot unmarshal {found} into Go value of type []toxiproxy.Proxy");
                return Err((ApiError::bad_body(message), Vec::new()));
            }
        };
        let inputs = items
            .iter()
            .map(ProxyInput::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (ApiError::bad_body(e), Vec::new()))?;
        for (index, input) in inputs.iter().enumerate() {
            input.check(Some(index + 1)).map_err(|e| (e, Vec::new()))?;
        }
        let mut done = Vec::with_capacity(inputs.len());
        for input in inputs {
            match self.add_or_replace(input).await {
                Ok(proxy) => done.push(proxy),
                Err(err) => return Err((err, done)),
            }
        }
        Ok(done)
    }

    async fn add_or_replace(&mut self, input: ProxyInput) -> Result<Arc<Proxy>, ApiError> {
        if let Some(existing) = self.proxies.get(input.name()) {
            let (listen, upstream, _) = existing.listen_upstream_enabled();
            let requested = input.listen.as_deref().unwrap_or_default();
            if upstream == input.upstream() && net::same_listen(&listen, requested).await {
                return Ok(existing.clone());
            }
            existing.stop().await;
        }
        let proxy = self.new_proxy(&input);
        if input.enabled.unwrap_or(true) {
            // On failure the replaced proxy stays registered, stopped, as in Toxiproxy.
            proxy.start().await?;
        }
        self.proxies.insert(proxy.name.clone(), proxy.clone());
        Ok(proxy)
    }

    pub async fn remove(&mut self, name: &str) -> Result<(), ApiError> {
        let proxy = self.proxies.remove(name).ok_or_else(ApiError::proxy_not_found)?;
        proxy.stop().await;
        Ok(())
    }

    /// POST /reset: every proxy enabled again and its toxics removed.
    pub async fn reset(&mut self) -> Result<(), ApiError> {
        for proxy in self.proxies.values() {
            proxy.start().await?;
            proxy.remove_all_toxics().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_checks_like_toxiproxy() {
        let input = ProxyInput::parse(&json!({"name": "a", "upstream": "u:1", "enabled": false})).unwrap();
        assert!(input.check(None).is_ok());
        assert_eq!((input.enabled, input.listen), (Some(false), None));
        let missing = ProxyInput::parse(&json!({"upstream": "u:1"})).unwrap().check(Some(2)).unwrap_err();
        assert_eq!(missing.message, "missing required field: name at proxy 2");
        assert!(ProxyInput::parse(&json!({"name": 5})).is_err());
        assert_eq!(ProxyInput::parse(&json!(null)).unwrap(), ProxyInput::default());
    }
}
