//! Toxiproxy's REST API over hyper: routes, status codes and bodies as the Go server answers them.

use crate::collection::Collection;
use crate::gojson;
use crate::metrics::Metrics;
use crate::model::{ApiError, Toxic};
use crate::proxy::ProxyView;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinSet;

/// The Toxiproxy version whose API this server implements (clients may parse it).
pub const TOXIPROXY_VERSION: &str = "2.12.0";
const MAX_BODY: usize = 16 * 1024 * 1024;

type Reply = Response<Full<Bytes>>;

pub struct App {
    collection: Mutex<Collection>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, PartialEq)]
enum Route {
    Reset,
    Proxies,
    Populate,
    Proxy(String),
    Toxics(String),
    Toxic(String, String),
    Version,
    Metrics,
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let path = percent_decode(path);
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match segments.as_slice() {
            ["reset"] => Self::Reset,
            ["proxies"] => Self::Proxies,
            ["populate"] => Self::Populate,
            ["version"] => Self::Version,
            ["metrics"] => Self::Metrics,
            ["proxies", proxy] => Self::Proxy((*proxy).to_owned()),
            ["proxies", proxy, "toxics"] => Self::Toxics((*proxy).to_owned()),
            ["proxies", proxy, "toxics", toxic] => Self::Toxic((*proxy).to_owned(), (*toxic).to_owned()),
            _ => return None,
        })
    }

    fn allows(&self, method: &Method) -> bool {
        let m = |allowed: &[Method]| allowed.contains(method);
        match self {
            Self::Reset | Self::Populate => m(&[Method::POST]),
            Self::Proxies | Self::Toxics(_) => m(&[Method::GET, Method::POST]),
            Self::Proxy(_) | Self::Toxic(..) => {
                m(&[Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            }
            Self::Version => m(&[Method::GET]),
            Self::Metrics => true,
        }
    }
}

/// Go's URL path unescaping: `%XX` decoded, anything malformed left as it is.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if !content_type.is_empty() {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

fn json(status: StatusCode, value: &impl Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(err) => error_reply(&ApiError::internal(err.to_string())),
    }
}

fn no_content() -> Reply {
    reply(StatusCode::NO_CONTENT, "", Bytes::new())
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    status: u16,
}

/// Toxiproxy writes its JSON error through Go's http.Error: text/plain, nosniff, trailing newline.
fn error_reply(err: &ApiError) -> Reply {
    let mut body =
        serde_json::to_vec(&ErrorBody { error: &err.message, status: err.status }).unwrap_or_default();
    body.push(b'\n');
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = reply(status, "text/plain; charset=utf-8", body);
    response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

#[derive(Serialize)]
struct PopulateBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// `null` when empty, as Go encodes a nil slice.
    proxies: Option<Vec<ProxyView>>,
}

impl App {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { collection: Mutex::new(Collection::new(metrics.clone())), metrics }
    }

    /// The `-config` file: a JSON array of proxies, created as POST /populate would. Problems are
    /// logged, not fatal, as in Toxiproxy.
    pub async fn populate_from_file(&self, path: &str) {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(err) => return crate::error!("config={path}: error reading config file: {err}"),
        };
        let value = match gojson::first_value(&text) {
            Ok(value) => value,
            Err(err) => return crate::error!("config={path}: failed to populate proxies from file: {err}"),
        };
        match self.collection.lock().await.populate(&value).await {
            Ok(proxies) => crate::info!("config={path}: populated {} proxies from file", proxies.len()),
            Err((err, done)) => crate::error!(
                "config={path}: failed to populate proxies from file after {} proxies: {}",
                done.len(),
                err.message
            ),
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Reply {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut response = self.dispatch(request).await;
        response.headers_mut().insert("x-toxiproxy-request-id", request_id());
        crate::debug!("{method} {path} -> {}", response.status().as_u16());
        response
    }

    async fn dispatch(&self, request: Request<Incoming>) -> Reply {
        let route = match Route::parse(request.uri().path()) {
            Some(Route::Metrics) if !self.metrics.route_enabled() => None,
            route => route,
        };
        let Some(route) = route else {
            return reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n");
        };
        if !route.allows(request.method()) {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "", Bytes::new());
        }
        let user_agent = request.headers().get(USER_AGENT).map(HeaderValue::as_bytes).unwrap_or_default();
        if user_agent.starts_with(b"Mozilla/") {
            // Browsers are refused so that a web page cannot drive the API (Toxiproxy's CSRF guard).
            return reply(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", "User agent not allowed\n");
        }
        let method = request.method().clone();
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => return error_reply(&ApiError::bad_body(err)),
        };
        self.respond(route, method, &body).await.unwrap_or_else(|err| error_reply(&err))
    }

    async fn respond(&self, route: Route, method: Method, body: &[u8]) -> Result<Reply, ApiError> {
        let parse = || gojson::first_value(body).map_err(ApiError::bad_body);
        match (route, method) {
            (Route::Version, _) => Ok(reply(
                StatusCode::OK,
                "application/json;charset=utf-8",
                format!("{{\"version\": \"{TOXIPROXY_VERSION}\"}}\n"),
            )),
            (Route::Metrics, _) => {
                Ok(reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()))
            }
            (Route::Reset, _) => {
                self.collection.lock().await.reset().await?;
                Ok(no_content())
            }
            (Route::Proxies, Method::GET) => {
                let collection = self.collection.lock().await;
                let views: BTreeMap<String, ProxyView> =
                    collection.all().map(|proxy| (proxy.name.clone(), proxy.view())).collect();
                Ok(json(StatusCode::OK, &views))
            }
            (Route::Proxies, _) => {
                let value = parse()?;
                let proxy = self.collection.lock().await.create(&value).await?;
                Ok(json(StatusCode::CREATED, &proxy.view()))
            }
            (Route::Populate, _) => {
                let value = parse()?;
                let (error, proxies) = match self.collection.lock().await.populate(&value).await {
                    Ok(proxies) => (None, proxies),
                    Err((error, proxies)) => (Some(error), proxies),
                };
                let views: Vec<ProxyView> = proxies.iter().map(|proxy| proxy.view()).collect();
                let status = error.as_ref().map_or(StatusCode::CREATED, |e| {
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                });
                let body = PopulateBody {
                    status: error.as_ref().map(|e| e.status),
                    error: error.map(|e| e.message),
                    proxies: (!views.is_empty()).then_some(views),
                };
                Ok(json(status, &body))
            }
            (Route::Proxy(name), Method::GET) => {
                Ok(json(StatusCode::OK, &self.collection.lock().await.get(&name)?.view()))
            }
            (Route::Proxy(name), Method::DELETE) => {
                self.collection.lock().await.remove(&name).await?;
                Ok(no_content())
            }
            (Route::Proxy(name), _) => {
                let collection = self.collection.lock().await;
                collection.get(&name)?; // 404 before looking at the body, as Toxiproxy does
                Ok(json(StatusCode::OK, &collection.update(&name, &parse()?).await?.view()))
            }
            (Route::Toxics(name), Method::GET) => {
                Ok(json(StatusCode::OK, &self.collection.lock().await.get(&name)?.toxics()))
            }
            (Route::Toxics(name), _) => {
                let collection = self.collection.lock().await;
                let proxy = collection.get(&name)?;
                let value = parse()?;
                let (toxic, attributes) = Toxic::from_create_body(&value)?;
                let toxic = proxy.add_toxic(toxic, attributes.as_ref()).await?;
                Ok(json(StatusCode::OK, &toxic))
            }
            (Route::Toxic(name, toxic), Method::GET) => {
                let proxy = self.collection.lock().await.get(&name)?;
                Ok(json(StatusCode::OK, &proxy.toxic(&toxic).ok_or_else(ApiError::toxic_not_found)?))
            }
            (Route::Toxic(name, toxic), Method::DELETE) => {
                let collection = self.collection.lock().await;
                collection.get(&name)?.remove_toxic(&toxic).await?;
                Ok(no_content())
            }
            (Route::Toxic(name, toxic), _) => {
                let collection = self.collection.lock().await;
                let proxy = collection.get(&name)?;
                if proxy.toxic(&toxic).is_none() {
                    return Err(ApiError::toxic_not_found());
                }
                let updated = proxy.update_toxic(&toxic, &parse()?).await?;
                Ok(json(StatusCode::OK, &updated))
            }
        }
    }
}

/// A 20-character request id in the format of the xid ids Toxiproxy's zerolog hlog middleware sets.
fn request_id() -> HeaderValue {
    static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
    static MACHINE: OnceLock<[u8; 3]> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| AtomicU32::new(fastrand::u32(..))).fetch_add(1, Ordering::Relaxed);
    let machine = MACHINE.get_or_init(|| [fastrand::u8(..), fastrand::u8(..), fastrand::u8(..)]);
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as u32;
    let pid = std::process::id() as u16;
    let mut raw = [0u8; 12];
    raw[..4].copy_from_slice(&seconds.to_be_bytes());
    raw[4..7].copy_from_slice(machine);
    raw[7..9].copy_from_slice(&pid.to_be_bytes());
    raw[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let bits = raw.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b)) << 4;
    let id: Vec<u8> = (0..20).rev().map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize]).collect();
    HeaderValue::from_bytes(&id).expect("ascii")
}

async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn serve_connection(stream: tokio::net::TcpStream, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop_requested(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Serves the API until `shutdown` turns true, then lets requests in flight finish (bounded).
pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop_requested(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, app.clone(), shutdown.clone()));
                }
                Err(err) => {
                    crate::warn!("API: error while accepting: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drained).await.is_err() {
        crate::warn!("API: requests still running after 5s, shutting down anyway");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/proxies"), Some(Route::Proxies));
        assert_eq!(Route::parse("/proxies/a%20b/toxics/t"), Some(Route::Toxic("a b".into(), "t".into())));
        assert_eq!(Route::parse("/proxies/"), None);
        assert_eq!(Route::parse("/proxies/a/b"), None);
        assert_eq!(Route::parse("/nothing"), None);
        assert!(Route::Proxy("a".into()).allows(&Method::PATCH));
        assert!(!Route::Toxics("a".into()).allows(&Method::DELETE));
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn request_ids_look_like_xids() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'v').contains(&c)));
    }
}
