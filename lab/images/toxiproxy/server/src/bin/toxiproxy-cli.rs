//! `toxiproxy-cli`: the one command of Shopify's client that the lab's images use, `list`, as the
//! container's healthcheck (`/toxiproxy-cli --host http://127.0.0.1:8474 list`). The official image
//! ships Shopify's client at the same path, so one healthcheck serves both images. Exits 0 when the
//! API answers 200 to GET /proxies (printing one proxy a line), 1 when it does not, 2 on bad usage.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: toxiproxy-cli [--host http://HOST:PORT] list  (the lab's client: `list` only)";
const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let mut host = "http://localhost:8474".to_owned();
    let mut command = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" | "-h" => match args.next() {
                Some(value) => host = value,
                None => return usage(),
            },
            _ if arg.starts_with("--host=") => host = arg["--host=".len()..].to_owned(),
            "list" | "l" | "li" | "ls" if command.is_none() => command = Some(arg),
            _ => return usage(),
        }
    }
    if command.is_none() {
        return usage();
    }
    match list(&host) {
        Ok(names) => {
            for name in names {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("Failed to retrieve proxies: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// The proxy names from GET {host}/proxies, sorted.
fn list(host: &str) -> Result<Vec<String>, String> {
    let authority = host.strip_prefix("http://").unwrap_or(host).trim_end_matches('/');
    let address = authority
        .to_socket_addrs()
        .map_err(|err| format!("{authority}: {err}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, TIMEOUT).map_err(|err| format!("{address}: {err}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|err| err.to_string())?;
    let request = format!(
        "GET /proxies HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: toxiproxy-cli\r\nAccept: application/json\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|err| err.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("a response without a body")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET /proxies: {status}"));
    }
    let proxies: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(body).map_err(|err| format!("GET /proxies: {err}"))?;
    let mut names: Vec<String> = proxies.keys().cloned().collect();
    names.sort();
    Ok(names)
}
