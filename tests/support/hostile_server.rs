//! An in-process HTTP/1.1 server on 127.0.0.1 that responds like a registry, for faults and
//! hostile responses that a real registry never sends: wrong digests, endless bodies, oversized
//! headers, redirect loops, upload sessions on other hosts.
//!
//! Each test passes a handler that maps a request to a response. `BaseImage` serves the
//! synthetic base in `testdata/base`, so a handler can serve most requests with it and change
//! only the one response under test. The server closes every connection after one response, and
//! it records every request so that a test can check what the product requested.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Largest request head (request line and headers) the server reads.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Largest request body the server reads; larger bodies are read and dropped up to this size.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// How long a connection may wait for the client's next bytes.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections the server accepts before it stops, a bound on any retry loop.
const MAX_CONNECTIONS: usize = 2000;
/// How many bytes an endless body sends before it gives up on the client closing it.
const ENDLESS_BODY_CAP: u64 = 1024 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path with its query string, as sent.
    pub target: String,
    /// Header names in lowercase, values as sent.
    pub headers: Vec<(String, String)>,
    /// Bytes of body received.
    pub body_length: usize,
}

impl Request {
    /// Returns the path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Returns the first value of header NAME (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Reports whether this is METHOD on a path that ends with SUFFIX, such as
    /// `("GET", "/manifests/24")`.
    pub fn is(&self, method: &str, suffix: &str) -> bool {
        self.method == method && self.path().ends_with(suffix)
    }

    /// Reports whether the request is for a manifest (by tag or digest).
    pub fn is_manifest(&self) -> bool {
        self.path().contains("/manifests/")
    }

    /// Reports whether the request is for a blob download or check.
    pub fn is_blob(&self) -> bool {
        self.path().contains("/blobs/sha256:")
    }

    /// Reports whether the request writes to the registry: an upload or a manifest push.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// How a response body is sent.
#[derive(Debug, Clone)]
pub enum Body {
    /// The bytes, with a `Content-Length`.
    Fixed(Vec<u8>),
    /// The bytes with no `Content-Length`: the end of the body is the end of the connection.
    UntilClose(Vec<u8>),
    /// `Transfer-Encoding: chunked` chunks of BYTES repeated until the client closes the
    /// connection (or `ENDLESS_BODY_CAP` bytes have gone out).
    EndlessChunked(Vec<u8>),
    /// A `Content-Length` of CLAIMED, then only SENT before the connection closes.
    Truncated { claimed: usize, sent: Vec<u8> },
}

/// A response: status, headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    /// Creates a response with STATUS and an empty body.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Fixed(Vec::new()),
        }
    }

    /// Creates a 404 with a registry-style JSON error body.
    pub fn not_found() -> Response {
        Response::status(404)
            .header("Content-Type", "application/json")
            .body(br#"{"errors":[{"code":"NAME_UNKNOWN","message":"not found"}]}"#.to_vec())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a body sent with its `Content-Length`.
    pub fn body(mut self, bytes: Vec<u8>) -> Response {
        self.body = Body::Fixed(bytes);
        self
    }

    /// Sets how the body is sent.
    pub fn with_body(mut self, body: Body) -> Response {
        self.body = body;
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// The server. Dropping it stops the accept loop; connections still open end at their timeout.
pub struct HostileServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stopping: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl HostileServer {
    /// Starts a server on 127.0.0.1 at a free port that responds to each request with HANDLER's
    /// response.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> HostileServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind 127.0.0.1:0 for the fake registry");
        let port = listener
            .local_addr()
            .expect("bound listener has no address")
            .port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let requests = requests.clone();
            let stopping = stopping.clone();
            thread::spawn(move || accept_loop(listener, handler, requests, stopping))
        };
        HostileServer {
            port,
            requests,
            stopping,
            accept_thread: Some(accept_thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Returns every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.requests).clone()
    }

    /// Lists the requests received so far as `METHOD TARGET`, for failure messages.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|request| format!("{} {}", request.method, request.target))
            .collect()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // accept() blocks until a connection arrives, so one is made to wake it.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(
    listener: TcpListener,
    handler: Arc<Handler>,
    requests: Arc<Mutex<Vec<Request>>>,
    stopping: Arc<AtomicBool>,
) {
    for stream in listener.incoming().take(MAX_CONNECTIONS) {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let handler = handler.clone();
        let requests = requests.clone();
        thread::spawn(move || serve_connection(stream, &*handler, &requests));
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(CONNECTION_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CONNECTION_TIMEOUT));
    let Ok(reader_stream) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    lock(requests).push(request.clone());
    let response = handler(&request);
    let mut writer = stream;
    // A client that hangs up mid-body is what several cases expect, so write errors are normal.
    let _ = write_response(&mut writer, &request, &response);
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Both);
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let read = reader.read_until(b'\n', &mut head).ok()?;
        if read == 0 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut request = Request {
        method,
        target,
        headers,
        body_length: 0,
    };
    request.body_length = read_body(reader, &request);
    Some(request)
}

/// Reads and drops the request body, returning its length in bytes (up to MAX_REQUEST_BODY).
fn read_body(reader: &mut BufReader<TcpStream>, request: &Request) -> usize {
    if let Some(length) = request
        .header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
    {
        let mut limited = reader.take(length.min(MAX_REQUEST_BODY) as u64);
        return std::io::copy(&mut limited, &mut std::io::sink()).unwrap_or(0) as usize;
    }
    if request
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        return read_chunked_body(reader);
    }
    0
}

fn read_chunked_body(reader: &mut BufReader<TcpStream>) -> usize {
    let mut total = 0;
    while total <= MAX_REQUEST_BODY {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
            break;
        }
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        // The chunk and its CRLF; the last chunk (size 0) is followed by an empty line.
        let mut limited = reader.take(size as u64 + 2);
        total += std::io::copy(&mut limited, &mut std::io::sink()).unwrap_or(0) as usize;
        if size == 0 {
            break;
        }
    }
    total
}

fn write_response(
    writer: &mut TcpStream,
    request: &Request,
    response: &Response,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    match &response.body {
        Body::Fixed(bytes) => head.push_str(&format!("Content-Length: {}\r\n", bytes.len())),
        Body::UntilClose(_) => {}
        Body::EndlessChunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        Body::Truncated { claimed, .. } => head.push_str(&format!("Content-Length: {claimed}\r\n")),
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    // A HEAD response has headers only, whatever length they announce.
    if request.method == "HEAD" {
        return Ok(());
    }
    match &response.body {
        Body::Fixed(bytes) | Body::UntilClose(bytes) => writer.write_all(bytes),
        Body::Truncated { sent, .. } => writer.write_all(sent),
        Body::EndlessChunked(chunk) => write_endless_chunks(writer, chunk),
    }
}

fn write_endless_chunks(writer: &mut TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    assert!(!chunk.is_empty(), "an empty chunk would end the body");
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(chunk);
    framed.extend_from_slice(b"\r\n");
    let mut sent = 0u64;
    while sent < ENDLESS_BODY_CAP {
        writer.write_all(&framed)?;
        sent += chunk.len() as u64;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Status",
    }
}

// --- The synthetic base image ----------------------------------------------------------------

/// Returns `sha256:<hex>` of BYTES.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The synthetic base image of `testdata/base` as a registry serves it: its index under a tag,
/// and every manifest and blob under its digest.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The tag of the index, `24` as in the layout.
    pub tag: String,
    pub index: Vec<u8>,
    /// Manifests (the index's children) by digest.
    pub manifests: HashMap<String, Vec<u8>>,
    /// Configs and layers by digest.
    pub blobs: HashMap<String, Vec<u8>>,
}

impl BaseImage {
    /// Reads the OCI image layout LAYOUT (`testdata/base`).
    pub fn load(layout: &Path) -> BaseImage {
        let read_json = |path: &Path| -> Value {
            let text = fs::read(path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            serde_json::from_slice(&text)
                .unwrap_or_else(|error| panic!("{}: invalid JSON: {error}", path.display()))
        };
        let blob_path = |digest: &str| {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let read_blob = |digest: &str| {
            let path = blob_path(digest);
            fs::read(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
        };

        let top = read_json(&layout.join("index.json"));
        let entry = &top["manifests"][0];
        let tag = entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("the layout's index.json names a tag")
            .to_string();
        let index_digest = entry["digest"]
            .as_str()
            .expect("the layout's entry has a digest");
        let index = read_blob(index_digest);

        let mut manifests = HashMap::new();
        let mut blobs = HashMap::new();
        let index_json: Value = serde_json::from_slice(&index).expect("the base index is JSON");
        for child in index_json["manifests"]
            .as_array()
            .expect("index lists manifests")
        {
            let digest = child["digest"].as_str().expect("child has a digest");
            let manifest = read_blob(digest);
            let manifest_json: Value =
                serde_json::from_slice(&manifest).expect("the base manifest is JSON");
            let config = manifest_json["config"]["digest"]
                .as_str()
                .expect("manifest names a config");
            blobs.insert(config.to_string(), read_blob(config));
            for layer in manifest_json["layers"]
                .as_array()
                .expect("manifest lists layers")
            {
                let layer = layer["digest"].as_str().expect("layer has a digest");
                blobs.insert(layer.to_string(), read_blob(layer));
            }
            manifests.insert(digest.to_string(), manifest);
        }
        BaseImage {
            tag,
            index,
            manifests,
            blobs,
        }
    }

    /// Returns the digest of the linux/amd64 manifest in the index.
    pub fn amd64_manifest_digest(&self) -> String {
        let index: Value = serde_json::from_slice(&self.index).expect("the base index is JSON");
        index["manifests"]
            .as_array()
            .expect("index lists manifests")
            .iter()
            .find(|entry| entry["platform"]["architecture"] == "amd64")
            .and_then(|entry| entry["digest"].as_str())
            .expect("the base index has a linux/amd64 manifest")
            .to_string()
    }

    /// Returns the linux/amd64 manifest as JSON.
    pub fn amd64_manifest(&self) -> Value {
        serde_json::from_slice(&self.manifests[&self.amd64_manifest_digest()])
            .expect("the base manifest is JSON")
    }

    /// Responds to REQUEST as a registry containing this image in every repository: `/v2/`, manifests
    /// by tag or digest, and blobs, with HEAD and GET. Anything else is 404.
    pub fn serve(&self, request: &Request) -> Response {
        if request.path() == "/v2/" {
            return Response::status(200);
        }
        if !matches!(request.method.as_str(), "GET" | "HEAD") {
            return Response::not_found();
        }
        let path = request.path();
        if let Some((_, reference)) = path.split_once("/manifests/") {
            return self.serve_manifest(reference);
        }
        if let Some((_, digest)) = path.split_once("/blobs/") {
            return match self.blobs.get(digest) {
                Some(bytes) => Response::status(200)
                    .header("Content-Type", "application/octet-stream")
                    .header("Docker-Content-Digest", digest)
                    .body(bytes.clone()),
                None => Response::not_found(),
            };
        }
        Response::not_found()
    }

    fn serve_manifest(&self, reference: &str) -> Response {
        let (bytes, media_type) =
            if reference == self.tag || reference == sha256_digest(&self.index) {
                (&self.index, OCI_INDEX)
            } else if let Some(bytes) = self.manifests.get(reference) {
                (bytes, OCI_MANIFEST)
            } else {
                return Response::not_found();
            };
        manifest_response(bytes, media_type)
    }
}

/// Creates a 200 response carrying a manifest or index with its digest header.
pub fn manifest_response(bytes: &[u8], media_type: &str) -> Response {
    Response::status(200)
        .header("Content-Type", media_type)
        .header("Docker-Content-Digest", &sha256_digest(bytes))
        .body(bytes.to_vec())
}
