//! A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1 for the fault tests. It forwards each
//! request to one upstream registry and applies scripted faults to the requests that match a
//! rule (method, target pattern, first or every occurrence): an error status in place of the
//! registry's response, a connection closed part-way through a request or response body, a
//! stall, a response lost after the registry acted on the request, or a corrupted response byte.
//! It records every request with the status that reached the client, so tests can count them.
//!
//! Each client connection is served by its own thread, and each forwarded request opens a fresh
//! upstream connection with `Connection: close`, which keeps the upstream side simple while the
//! client keeps its connection alive as it would with a registry. `Expect: 100-continue` is not
//! handled, because the product does not send it.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest request or response head the proxy reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a connection may wait for the next bytes from the client or the registry. It bounds
/// every thread of the proxy.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Body bytes copied per read, and so the step at which bandwidth limits sleep.
const COPY_CHUNK: usize = 16 * 1024;

/// What the proxy does to a request that a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Responds with STATUS and a registry-style JSON error, and `Retry-After` in seconds when
    /// set, without forwarding the request.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Forwards the request head and the first AFTER_BYTES bytes of its body, then closes both
    /// connections. Because unread bytes remain, Linux resets the client's connection.
    CloseDuringRequestBody { after_bytes: u64 },
    /// Forwards the request, then the response head and the first AFTER_BYTES bytes of the
    /// response body, then closes both connections.
    CloseDuringResponseBody { after_bytes: u64 },
    /// Reads the whole request and sends nothing until the client closes the connection or
    /// DURATION passes, then closes it. The request never reaches the registry.
    Stall { duration: Duration },
    /// Forwards the request, reads the registry's whole response, then closes the client
    /// connection without sending any of it: the registry acted, but the client cannot know.
    LoseResponse,
    /// Forwards the request and the response, with the bits of the response body byte at OFFSET
    /// inverted.
    CorruptResponseBody { offset: u64 },
}

impl Fault {
    /// Returns a `Status` fault without `Retry-After`.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
        }
    }
}

/// Which of the requests that match a rule's method and pattern it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occurrences {
    First,
    Every,
}

/// A scripted fault: FAULT for requests whose method and target (path and query) match.
#[derive(Debug, Clone)]
pub struct Rule {
    method: String,
    pattern: String,
    occurrences: Occurrences,
    fault: Fault,
}

impl Rule {
    /// Creates a rule for the first request with METHOD (or `*` for any) whose target matches
    /// PATTERN, in which `*` matches any run of characters and everything else matches itself.
    pub fn new(method: &str, pattern: &str, fault: Fault) -> Rule {
        Rule {
            method: method.to_string(),
            pattern: pattern.to_string(),
            occurrences: Occurrences::First,
            fault,
        }
    }

    /// Applies the rule to every matching request.
    pub fn every_time(mut self) -> Rule {
        self.occurrences = Occurrences::Every;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        (self.method == "*" || self.method == method) && glob_matches(&self.pattern, target)
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target: the path and query.
    pub target: String,
    /// The status whose head reached the client, or `None` when none did.
    pub status: Option<u16>,
    /// The status the registry sent, or `None` when the request never reached it or it did
    /// not answer. It differs from `status` for a lost or injected response.
    pub upstream_status: Option<u16>,
    /// The fault applied to the request, if any.
    pub fault: Option<Fault>,
    /// Request body bytes read from the client.
    pub body_bytes: u64,
    /// When the proxy had read the request head.
    pub started: Instant,
    /// When the proxy had finished with the request, or `None` while it is in flight.
    pub finished: Option<Instant>,
    /// A number unique within the proxy, which finds the entry after `clear_requests`.
    id: u64,
}

impl RecordedRequest {
    /// Reports whether the request has METHOD (or `*`) and a target matching PATTERN.
    pub fn matches(&self, method: &str, pattern: &str) -> bool {
        (method == "*" || self.method == method) && glob_matches(pattern, &self.target)
    }

    /// Reports whether the client received a 2xx status and no fault was applied.
    pub fn succeeded(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
            && self.fault.is_none()
    }
}

impl std::fmt::Display for RecordedRequest {
    /// Formats as `PUT /v2/app/manifests/latest -> 201`, with the fault when one was applied.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {} -> ", self.method, self.target)?;
        match self.status {
            Some(status) => write!(formatter, "{status}")?,
            None => write!(formatter, "no response")?,
        }
        if let Some(fault) = &self.fault {
            write!(formatter, " [{fault:?}]")?;
        }
        Ok(())
    }
}

struct RuleState {
    rule: Rule,
    matched: u32,
}

#[derive(Default)]
struct State {
    rules: Vec<RuleState>,
    requests: Vec<RecordedRequest>,
    next_request_id: u64,
    /// Clones of the open sockets by id, so that dropping the proxy can unblock its threads.
    sockets: HashMap<u64, TcpStream>,
    next_socket_id: u64,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    /// Bytes per second for each request and response body, per connection.
    bandwidth: Option<u64>,
    stopping: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread leaves the log and rules whole, so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An open socket's entry in `State::sockets`, removed when the connection ends so that the
/// proxy keeps no file descriptor of a closed connection.
struct SocketRegistration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> SocketRegistration<'a> {
    fn new(shared: &'a Shared, socket: &TcpStream) -> io::Result<SocketRegistration<'a>> {
        let clone = socket.try_clone()?;
        let mut state = shared.state();
        let id = state.next_socket_id;
        state.next_socket_id += 1;
        state.sockets.insert(id, clone);
        Ok(SocketRegistration { shared, id })
    }
}

impl Drop for SocketRegistration<'_> {
    fn drop(&mut self) {
        self.shared.state().sockets.remove(&self.id);
    }
}

/// A running proxy. Dropping it closes every connection and stops its threads.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of 127.0.0.1:UPSTREAM_PORT.
    pub fn start(upstream_port: u16) -> FaultProxy {
        FaultProxy::start_with_bandwidth(upstream_port, None)
    }

    /// Starts a proxy that also limits each request and response body to BYTES_PER_SECOND.
    pub fn start_throttled(upstream_port: u16, bytes_per_second: u64) -> FaultProxy {
        FaultProxy::start_with_bandwidth(upstream_port, Some(bytes_per_second))
    }

    fn start_with_bandwidth(upstream_port: u16, bandwidth: Option<u64>) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind the fault proxy to 127.0.0.1");
        let address = listener
            .local_addr()
            .expect("the bound proxy has no address");
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            bandwidth,
            stopping: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || accept_connections(listener, shared))
        };
        FaultProxy {
            address,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Returns `127.0.0.1:PORT`, the registry part of image references through the proxy.
    pub fn host(&self) -> String {
        self.address.to_string()
    }

    /// Adds RULE after the existing ones. The first rule that applies to a request wins, and
    /// every rule counts the requests it matches, whether it applies or not.
    pub fn add_rule(&self, rule: Rule) {
        self.shared
            .state()
            .rules
            .push(RuleState { rule, matched: 0 });
    }

    /// Returns every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// Forgets the recorded requests, so that a test can look at one run at a time.
    pub fn clear_requests(&self) {
        self.shared.state().requests.clear();
    }

    /// Returns the requests with METHOD (or `*`) whose target matches PATTERN, oldest first.
    pub fn requests_matching(&self, method: &str, pattern: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.matches(method, pattern))
            .collect()
    }

    /// Closes every open connection at once, to both the clients and the registry, and drops
    /// the bytes in flight. After a client is killed, this stands for the loss of its network
    /// as well: otherwise the kernel would still deliver what the client had queued, which can
    /// be megabytes on loopback.
    pub fn drop_connections(&self) {
        for socket in self.shared.state().sockets.values() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Formats the request log one request a line, for assertion messages.
    pub fn log(&self) -> String {
        self.requests()
            .iter()
            .map(|request| format!("  {request}\n"))
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // A connection wakes the acceptor, which then reads the flag.
        let _ = TcpStream::connect_timeout(&self.address, CONNECT_TIMEOUT);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.drop_connections();
        let workers = std::mem::take(&mut self.shared.state().workers);
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_connections(listener: TcpListener, shared: Arc<Shared>) {
    for connection in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = connection else { continue };
        let worker = {
            let shared = shared.clone();
            thread::spawn(move || {
                // A failed connection ends only itself, and its client gets a closed socket.
                let _ = serve_connection(client, &shared);
            })
        };
        shared.state().workers.push(worker);
    }
}

// --- Connections ---------------------------------------------------------------------------------

/// A parsed request or response head, with its raw lines.
struct Head {
    /// The request line or status line.
    start_line: String,
    /// Header names and values in the order received.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    }

    /// Returns the body framing that the headers declare, or `None` when they declare none.
    fn declared_framing(&self) -> io::Result<Option<Framing>> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Some(Framing::Chunked));
        }
        match self.header("content-length") {
            Some(value) => value
                .trim()
                .parse()
                .map(|length| Some(Framing::Length(length)))
                .map_err(|_| invalid_data(format!("invalid Content-Length {value:?}"))),
            None => Ok(None),
        }
    }

    /// Serializes the head with the hop-by-hop headers removed and EXTRA added.
    fn to_bytes(&self, extra: &[(&str, &str)]) -> Vec<u8> {
        const HOP_BY_HOP: [&str; 4] = ["connection", "keep-alive", "proxy-connection", "te"];
        let mut text = format!("{}\r\n", self.start_line);
        for (name, value) in &self.headers {
            if !HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop)) {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        for (name, value) in extra {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// The body runs until the sender closes the connection (responses only).
    UntilClose,
}

/// Whether a connection stays open for the client's next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

fn serve_connection(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let _registration = SocketRegistration::new(shared, &client)?;
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let next = serve_request(&head, &mut reader, &mut writer, shared)?;
        if next == Next::Close || shared.stopping.load(Ordering::SeqCst) {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Serves one request: records it, finds the fault that applies, and forwards it or responds.
fn serve_request(
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    shared: &Shared,
) -> io::Result<Next> {
    let mut parts = head.start_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let fault = select_fault(shared, &method, &target);
    let id = {
        let mut state = shared.state();
        let id = state.next_request_id;
        state.next_request_id += 1;
        state.requests.push(RecordedRequest {
            method: method.clone(),
            target,
            status: None,
            upstream_status: None,
            fault: fault.clone(),
            body_bytes: 0,
            started: Instant::now(),
            finished: None,
            id,
        });
        id
    };
    let exchange = Exchange {
        shared,
        id,
        request_framing: head.declared_framing()?.unwrap_or(Framing::Empty),
        client_closes: head.has_token("connection", "close"),
        is_head: method.eq_ignore_ascii_case("HEAD"),
    };
    let result = match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => exchange.answer_status(reader, writer, status, retry_after),
        Some(Fault::Stall { duration }) => exchange.stall(reader, duration),
        fault => exchange.forward(head, reader, writer, fault.as_ref()),
    };
    exchange.finish();
    result
}

/// Finds the first rule that applies to the request, after counting it in every matching rule.
fn select_fault(shared: &Shared, method: &str, target: &str) -> Option<Fault> {
    let mut state = shared.state();
    let mut selected = None;
    for rule_state in &mut state.rules {
        if !rule_state.rule.matches(method, target) {
            continue;
        }
        rule_state.matched += 1;
        let applies = match rule_state.rule.occurrences {
            Occurrences::First => rule_state.matched == 1,
            Occurrences::Every => true,
        };
        if applies && selected.is_none() {
            selected = Some(rule_state.rule.fault.clone());
        }
    }
    selected
}

/// One request on its way through the proxy, with its entry in the log.
struct Exchange<'a> {
    shared: &'a Shared,
    /// The `RecordedRequest::id` of the request.
    id: u64,
    request_framing: Framing,
    client_closes: bool,
    is_head: bool,
}

impl Exchange<'_> {
    fn record(&self, update: impl FnOnce(&mut RecordedRequest)) {
        let mut state = self.shared.state();
        // `clear_requests` may have removed the entry while the request was in flight.
        let entry = state
            .requests
            .iter_mut()
            .rev()
            .find(|request| request.id == self.id);
        if let Some(request) = entry {
            update(request);
        }
    }

    fn finish(&self) {
        self.record(|request| request.finished = Some(Instant::now()));
    }

    fn next_after_response(&self) -> Next {
        if self.client_closes {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Reads and discards the request body, so the connection can carry the next request.
    fn drain_request_body(&self, reader: &mut BufReader<TcpStream>) -> io::Result<()> {
        let mut relay = BodyRelay::discard();
        let outcome = relay_body(reader, self.request_framing, &mut relay);
        self.record(|request| request.body_bytes = relay.payload_bytes);
        outcome.map(|_| ())
    }

    fn answer_status(
        &self,
        reader: &mut BufReader<TcpStream>,
        writer: &mut TcpStream,
        status: u16,
        retry_after: Option<u32>,
    ) -> io::Result<Next> {
        self.drain_request_body(reader)?;
        let code = if status == 429 {
            "TOOMANYREQUESTS"
        } else {
            "UNAVAILABLE"
        };
        let body = format!(
            r#"{{"errors":[{{"code":"{code}","message":"HTTP {status} from the fault proxy"}}]}}"#
        );
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reason_phrase(status),
            body.len()
        );
        if let Some(seconds) = retry_after {
            head.push_str(&format!("Retry-After: {seconds}\r\n"));
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        if !self.is_head {
            writer.write_all(body.as_bytes())?;
        }
        writer.flush()?;
        self.record(|request| request.status = Some(status));
        Ok(self.next_after_response())
    }

    fn stall(&self, reader: &mut BufReader<TcpStream>, duration: Duration) -> io::Result<Next> {
        self.drain_request_body(reader)?;
        let deadline = Instant::now() + duration;
        let mut discard = [0u8; 1024];
        // Whatever the client sends meanwhile is ignored. A read of 0 bytes means it gave up.
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            reader.get_ref().set_read_timeout(Some(left))?;
            match reader.read(&mut discard) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) if is_timeout(&error) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(Next::Close)
    }

    fn forward(
        &self,
        head: &Head,
        reader: &mut BufReader<TcpStream>,
        writer: &mut TcpStream,
        fault: Option<&Fault>,
    ) -> io::Result<Next> {
        let upstream = TcpStream::connect_timeout(&self.shared.upstream, CONNECT_TIMEOUT)?;
        upstream.set_read_timeout(Some(IO_TIMEOUT))?;
        upstream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _registration = SocketRegistration::new(self.shared, &upstream)?;
        let mut upstream_writer = upstream.try_clone()?;
        let mut upstream_reader = BufReader::new(upstream);

        upstream_writer.write_all(&head.to_bytes(&[("Connection", "close")]))?;
        let cut_request = match fault {
            Some(Fault::CloseDuringRequestBody { after_bytes }) => Some(*after_bytes),
            _ => None,
        };
        let mut relay = BodyRelay::to(&mut upstream_writer, self.shared.bandwidth, cut_request);
        let sent = relay_body(reader, self.request_framing, &mut relay);
        let body_bytes = relay.payload_bytes;
        self.record(|request| request.body_bytes = body_bytes);
        if sent? == Flow::Cut {
            let _ = upstream_writer.shutdown(Shutdown::Both);
            return Ok(Next::Close);
        }

        let response = read_head(&mut upstream_reader)?
            .ok_or_else(|| invalid_data("the registry closed the connection without a response"))?;
        let status: u16 = response
            .start_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                invalid_data(format!("invalid status line {:?}", response.start_line))
            })?;
        let framing = self.response_framing(&response, status)?;
        self.record(|request| request.upstream_status = Some(status));

        if fault == Some(&Fault::LoseResponse) {
            relay_body(&mut upstream_reader, framing, &mut BodyRelay::discard())?;
            return Ok(Next::Close);
        }
        let closes = framing == Framing::UntilClose;
        let extra: &[(&str, &str)] = if closes {
            &[("Connection", "close")]
        } else {
            &[]
        };
        writer.write_all(&response.to_bytes(extra))?;
        self.record(|request| request.status = Some(status));

        let mut relay = BodyRelay::to(writer, self.shared.bandwidth, None);
        match fault {
            Some(Fault::CloseDuringResponseBody { after_bytes }) => {
                relay.cut_after = Some(*after_bytes)
            }
            Some(Fault::CorruptResponseBody { offset }) => relay.corrupt_at = Some(*offset),
            _ => {}
        }
        let flow = relay_body(&mut upstream_reader, framing, &mut relay)?;
        writer.flush()?;
        if flow == Flow::Cut || closes {
            return Ok(Next::Close);
        }
        Ok(self.next_after_response())
    }

    fn response_framing(&self, response: &Head, status: u16) -> io::Result<Framing> {
        if self.is_head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(Framing::Empty);
        }
        Ok(response.declared_framing()?.unwrap_or(Framing::UntilClose))
    }
}

// --- Bodies ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Complete,
    /// The relay stopped at its cut-off point, as a fault asked.
    Cut,
}

/// Where body bytes go, and what happens to them on the way: a cut-off after some payload
/// bytes, one corrupted byte, and a bandwidth limit.
struct BodyRelay<'a> {
    sink: Option<&'a mut TcpStream>,
    cut_after: Option<u64>,
    corrupt_at: Option<u64>,
    bandwidth: Option<u64>,
    started: Instant,
    payload_bytes: u64,
}

impl<'a> BodyRelay<'a> {
    fn discard() -> BodyRelay<'a> {
        BodyRelay {
            sink: None,
            cut_after: None,
            corrupt_at: None,
            bandwidth: None,
            started: Instant::now(),
            payload_bytes: 0,
        }
    }

    fn to(sink: &'a mut TcpStream, bandwidth: Option<u64>, cut_after: Option<u64>) -> Self {
        BodyRelay {
            sink: Some(sink),
            cut_after,
            bandwidth,
            ..BodyRelay::discard()
        }
    }

    /// Sends chunk-size lines and other framing bytes unchanged.
    fn framing(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Some(sink) => sink.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Sends payload bytes, applying the cut-off, the corruption and the bandwidth limit.
    fn payload(&mut self, data: &mut [u8]) -> io::Result<Flow> {
        let start = self.payload_bytes;
        let mut length = data.len();
        let mut flow = Flow::Complete;
        if let Some(cut) = self.cut_after {
            if start + length as u64 >= cut {
                length = cut.saturating_sub(start) as usize;
                flow = Flow::Cut;
            }
        }
        if let Some(offset) = self.corrupt_at {
            if (start..start + length as u64).contains(&offset) {
                data[(offset - start) as usize] ^= 0xff;
            }
        }
        if let Some(sink) = &mut self.sink {
            sink.write_all(&data[..length])?;
        }
        self.payload_bytes += length as u64;
        self.pace();
        Ok(flow)
    }

    /// Sleeps until the bytes sent so far fit the bandwidth limit.
    fn pace(&self) {
        let Some(bytes_per_second) = self.bandwidth else {
            return;
        };
        let due = Duration::from_secs_f64(self.payload_bytes as f64 / bytes_per_second as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            thread::sleep(wait);
        }
    }
}

/// Copies one body from READER through RELAY according to FRAMING.
fn relay_body(
    reader: &mut BufReader<TcpStream>,
    framing: Framing,
    relay: &mut BodyRelay,
) -> io::Result<Flow> {
    match framing {
        Framing::Empty => Ok(Flow::Complete),
        Framing::Length(length) => relay_exact(reader, length, relay),
        Framing::UntilClose => relay_until_close(reader, relay),
        Framing::Chunked => relay_chunked(reader, relay),
    }
}

fn relay_exact(
    reader: &mut BufReader<TcpStream>,
    length: u64,
    relay: &mut BodyRelay,
) -> io::Result<Flow> {
    // A cut at 0 bytes still happens before the body, however long the body is.
    if relay.cut_after == Some(relay.payload_bytes) {
        return Ok(Flow::Cut);
    }
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut left = length;
    while left > 0 {
        let wanted = left.min(COPY_CHUNK as u64) as usize;
        let read = reader.read(&mut buffer[..wanted])?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= read as u64;
        if relay.payload(&mut buffer[..read])? == Flow::Cut {
            return Ok(Flow::Cut);
        }
    }
    Ok(Flow::Complete)
}

fn relay_until_close(reader: &mut BufReader<TcpStream>, relay: &mut BodyRelay) -> io::Result<Flow> {
    let mut buffer = vec![0u8; COPY_CHUNK];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(Flow::Complete);
        }
        if relay.payload(&mut buffer[..read])? == Flow::Cut {
            return Ok(Flow::Cut);
        }
    }
}

fn relay_chunked(reader: &mut BufReader<TcpStream>, relay: &mut BodyRelay) -> io::Result<Flow> {
    loop {
        let size_line = read_line(reader)?;
        let size_text = size_line.trim_end().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size_text.trim(), 16)
            .map_err(|_| invalid_data(format!("invalid chunk size line {size_line:?}")))?;
        relay.framing(size_line.as_bytes())?;
        if size == 0 {
            // Trailer fields, if any, then the empty line that ends the body.
            loop {
                let line = read_line(reader)?;
                relay.framing(line.as_bytes())?;
                if line == "\r\n" || line == "\n" {
                    return Ok(Flow::Complete);
                }
            }
        }
        if relay_exact(reader, size, relay)? == Flow::Cut {
            return Ok(Flow::Cut);
        }
        let end = read_line(reader)?;
        relay.framing(end.as_bytes())?;
    }
}

// --- Parsing -----------------------------------------------------------------------------------

/// Reads a request or response head, or returns `None` when the peer closed the connection
/// before sending one.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let read = match reader.read_line(&mut line) {
            Ok(read) => read,
            // An idle keep-alive connection that the client drops ends like a closed one.
            Err(error) if lines.is_empty() && is_disconnect(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        if read == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        total += read;
        if total > MAX_HEAD_BYTES {
            return Err(invalid_data("the head is larger than 64 KiB"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                // Stray empty lines before a request line are allowed by RFC 9112.
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let start_line = lines.remove(0);
    let headers = lines
        .into_iter()
        .map(|line| match line.split_once(':') {
            Some((name, value)) => Ok((name.trim().to_string(), value.trim().to_string())),
            None => Err(invalid_data(format!("invalid header line {line:?}"))),
        })
        .collect::<io::Result<_>>()?;
    Ok(Some(Head {
        start_line,
        headers,
    }))
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_disconnect(error: &io::Error) -> bool {
    is_timeout(error)
        || matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
        )
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected Fault",
    }
}

/// Matches TEXT against PATTERN, in which `*` matches any run of characters (including none)
/// and every other character matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    // The position after the last `*` seen, and the text position it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p + 1, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((after_star, tried)) = backtrack {
            p = after_star;
            t = tried + 1;
            backtrack = Some((after_star, tried + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}
