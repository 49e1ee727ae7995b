//! Running one invocation in a `node` process with the runner script.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;
use tracing::{debug, info};

use super::InvokeError;
use crate::error::Error;

/// The runner script, which loads and calls the handler as the Lambda Node.js runtime does.
const RUNNER: &str = include_str!("runner.cjs");

/// The function timeout when none is given. Lambda's own default is 3 seconds; a local run also
/// loads the modules within this limit, so it gets more.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Memory size reported in the context, Lambda's default.
const DEFAULT_MEMORY_SIZE_MB: u32 = 128;
const DEFAULT_FUNCTION_NAME: &str = "lambda-image-invoke";
/// The account and region in the context's function ARN, which no AWS call uses.
const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";
const LOG_STREAM_NAME: &str = "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef";
/// The task root's path in the image, which handlers may use as a prefix.
const IMAGE_TASK_ROOT: &str = "/var/task/";

/// Destination of the handler's stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerOutput {
    /// Both go to this process's stderr, so that its stdout can carry only the result.
    Stderr,
    /// Both are captured, in the order written, into [`InvokeOutcome::handler_output`].
    Capture,
}

/// One invocation of a handler in an unpacked task root.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The folder that plays `/var/task`, such as one from [`super::unpack_task_root`].
    pub task_root: PathBuf,
    /// The handler as `MODULE.FUNCTION`, as in the image's `Cmd`.
    pub handler: String,
    pub event: Value,
    /// How long the node process may run, module loading included, before it is killed.
    pub function_timeout: Duration,
    /// The node binary: a path, or a name looked up in `PATH`.
    pub node: PathBuf,
    pub function_name: String,
    pub memory_size_mb: u32,
    /// The context's `awsRequestId`.
    pub request_id: String,
    pub handler_output: HandlerOutput,
}

impl InvokeRequest {
    /// Creates a request with the default event, a 30-second timeout, `node` from `PATH`, a
    /// random request ID and the handler's output sent to stderr.
    pub fn new(task_root: impl Into<PathBuf>, handler: impl Into<String>) -> InvokeRequest {
        InvokeRequest {
            task_root: task_root.into(),
            handler: handler.into(),
            event: super::default_event(),
            function_timeout: DEFAULT_FUNCTION_TIMEOUT,
            node: PathBuf::from("node"),
            function_name: DEFAULT_FUNCTION_NAME.to_string(),
            memory_size_mb: DEFAULT_MEMORY_SIZE_MB,
            request_id: random_request_id(),
            handler_output: HandlerOutput::Stderr,
        }
    }
}

/// Result of an invocation, failed ones included.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeOutcome {
    /// False when the handler failed, timed out or ended the process.
    pub success: bool,
    /// The handler's result, or the error object Lambda returns, such as
    /// `{"errorType": "Runtime.HandlerNotFound", "errorMessage": "...", "trace": [...]}`.
    pub output: Value,
    /// The handler's stdout and stderr with [`HandlerOutput::Capture`]; otherwise empty.
    pub handler_output: Vec<u8>,
    /// Time from starting node to its end, module loading included.
    pub duration: Duration,
}

/// Runs the handler once in a new `node` process and returns its result or error.
///
/// The process runs in the task root with the variables Lambda sets for a function
/// (`LAMBDA_TASK_ROOT`, `_HANDLER`, `AWS_LAMBDA_FUNCTION_NAME`, ..., `NODE_PATH` and `TZ`) added
/// to this process's environment.
///
/// # Errors
///
/// [`InvokeError::NodeNotFound`] when `node` cannot be found, and errors for a missing task
/// root, a handler outside `/var/task`, or a handler the runner cannot run (response streaming).
pub async fn invoke(request: &InvokeRequest) -> Result<InvokeOutcome, InvokeError> {
    let handler = task_relative_handler(&request.handler)?;
    let task_root = absolute(&request.task_root)?;
    if !task_root.is_dir() {
        return Err(Error::io(
            "find the task root",
            &task_root,
            std::io::ErrorKind::NotFound.into(),
        )
        .into());
    }
    let work_dir = tempfile::Builder::new()
        .prefix("lambda-image-invoke-")
        .tempdir()
        .map_err(|e| Error::io("create a temporary folder in", std::env::temp_dir(), e))?;
    let files = RunnerFiles::write(work_dir.path(), request, &task_root, &handler)?;

    let mut command = node_command(request, &task_root, &handler, &files)?;
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            InvokeError::NodeNotFound {
                node: request.node.clone(),
            }
        } else {
            InvokeError::NodeStart {
                node: request.node.clone(),
                source,
            }
        }
    })?;
    info!(handler = %handler, request_id = %request.request_id, "invoking");
    let wait_error = |source| InvokeError::NodeStart {
        node: request.node.clone(),
        source,
    };
    let status = match tokio::time::timeout(request.function_timeout, child.wait()).await {
        Ok(status) => Some(status.map_err(wait_error)?),
        Err(_) => {
            // start_kill fails when the process has already exited, and then the wait returns
            // at once.
            let _ = child.start_kill();
            child.wait().await.map_err(wait_error)?;
            None
        }
    };
    let duration = started.elapsed();
    debug!(?status, ?duration, "node exited");

    let handler_output = match &files.output {
        Some(path) => fs::read(path).map_err(|e| Error::io("read", path, e))?,
        None => Vec::new(),
    };
    let (success, output) = match status {
        None => (false, timeout_error(request)),
        Some(status) => read_result(&files.result, status, request)?,
    };
    Ok(InvokeOutcome {
        success,
        output,
        handler_output,
        duration,
    })
}

/// Returns the handler relative to the task root, turning `/var/task/src/app.handler` into
/// `src/app.handler`.
fn task_relative_handler(handler: &str) -> Result<String, InvokeError> {
    if let Some(relative) = handler.strip_prefix(IMAGE_TASK_ROOT) {
        return Ok(relative.to_string());
    }
    if handler.starts_with('/') {
        return Err(InvokeError::HandlerOutsideTaskRoot {
            handler: handler.to_string(),
        });
    }
    Ok(handler.to_string())
}

fn absolute(path: &Path) -> Result<PathBuf, InvokeError> {
    std::path::absolute(path).map_err(|e| Error::io("resolve", path, e).into())
}

/// The files the runner reads and writes, in the work folder.
struct RunnerFiles {
    script: PathBuf,
    request: PathBuf,
    result: PathBuf,
    /// The captured handler output, with [`HandlerOutput::Capture`].
    output: Option<PathBuf>,
}

impl RunnerFiles {
    fn write(
        work_dir: &Path,
        request: &InvokeRequest,
        task_root: &Path,
        handler: &str,
    ) -> Result<RunnerFiles, InvokeError> {
        // `.cjs`, so that node reads it as CommonJS whatever package.json is above it.
        let files = RunnerFiles {
            script: work_dir.join("runner.cjs"),
            request: work_dir.join("request.json"),
            result: work_dir.join("result.json"),
            output: (request.handler_output == HandlerOutput::Capture)
                .then(|| work_dir.join("handler-output.log")),
        };
        let runner_request = json!({
            "taskRoot": task_root,
            "handler": handler,
            "event": request.event,
            "resultFile": files.result,
            "context": {
                "functionName": request.function_name,
                "functionVersion": "$LATEST",
                "invokedFunctionArn": format!("{ARN_PREFIX}{}", request.function_name),
                "memoryLimitInMB": request.memory_size_mb.to_string(),
                "awsRequestId": request.request_id,
                "logGroupName": log_group_name(request),
                "logStreamName": LOG_STREAM_NAME,
                "functionTimeoutMs": request.function_timeout.as_millis() as u64,
            },
        });
        write_file(&files.script, RUNNER.as_bytes())?;
        write_file(&files.request, runner_request.to_string().as_bytes())?;
        Ok(files)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), InvokeError> {
    fs::write(path, bytes).map_err(|e| Error::io("write", path, e).into())
}

fn log_group_name(request: &InvokeRequest) -> String {
    format!("/aws/lambda/{}", request.function_name)
}

fn node_command(
    request: &InvokeRequest,
    task_root: &Path,
    handler: &str,
    files: &RunnerFiles,
) -> Result<Command, InvokeError> {
    // A relative path such as `./bin/node` would otherwise be looked up from the task root.
    let node = if request.node.components().count() > 1 {
        absolute(&request.node)?
    } else {
        request.node.clone()
    };
    let mut command = Command::new(node);
    command
        .arg(&files.script)
        .arg(&files.request)
        .current_dir(task_root)
        .env("LAMBDA_TASK_ROOT", task_root)
        .env("_HANDLER", handler)
        .env("AWS_LAMBDA_FUNCTION_NAME", &request.function_name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            request.memory_size_mb.to_string(),
        )
        .env("AWS_LAMBDA_LOG_GROUP_NAME", log_group_name(request))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", LOG_STREAM_NAME)
        // Lambda's NODE_PATH ends with /var/task, so bare requires fall back to the task root.
        .env("NODE_PATH", task_root)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .kill_on_drop(true);

    match &files.output {
        Some(path) => {
            let file = fs::File::create(path).map_err(|e| Error::io("create", path, e))?;
            let copy = file.try_clone().map_err(|e| Error::io("open", path, e))?;
            command.stdout(copy).stderr(file);
        }
        None => {
            command.stdout(stderr_stdio()?).stderr(Stdio::inherit());
        }
    }
    Ok(command)
}

/// Duplicates this process's stderr handle, for the child's stdout.
fn stderr_stdio() -> Result<Stdio, InvokeError> {
    #[cfg(unix)]
    let handle = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned();
    #[cfg(windows)]
    let handle = std::os::windows::io::AsHandle::as_handle(&std::io::stderr()).try_clone_to_owned();
    let handle = handle.map_err(|e| Error::io("duplicate", "stderr", e))?;
    Ok(Stdio::from(handle))
}

/// Reads the runner's result file, or reports the process's exit as Lambda does when there is
/// none.
fn read_result(
    path: &Path,
    status: ExitStatus,
    request: &InvokeRequest,
) -> Result<(bool, Value), InvokeError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((false, exit_error(request, status)));
        }
        Err(error) => return Err(Error::io("read", path, error).into()),
    };
    let invalid = |reason: String| InvokeError::RunnerResult {
        path: path.to_path_buf(),
        reason,
    };
    let result: Value =
        serde_json::from_slice(&bytes).map_err(|error| invalid(error.to_string()))?;
    if let Some(reason) = result.get("unsupported").and_then(Value::as_str) {
        return Err(InvokeError::Unsupported {
            handler: request.handler.clone(),
            reason: reason.to_string(),
        });
    }
    let success = result
        .get("success")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid("no boolean `success`".to_string()))?;
    let output = result
        .get("output")
        .cloned()
        .ok_or_else(|| invalid("no `output`".to_string()))?;
    Ok((success, output))
}

/// The error Lambda returns when the function runs past its timeout.
///
/// NOTE: Lambda has returned this in two forms: `{"errorMessage": "<time> <request ID> Task
/// timed out after 3.00 seconds"}` in older reports and the `Sandbox.Timedout` form below in
/// recent ones. Lambda reports the measured duration; this reports the configured limit.
fn timeout_error(request: &InvokeRequest) -> Value {
    json!({
        "errorType": "Sandbox.Timedout",
        "errorMessage": format!(
            "RequestId: {} Error: Task timed out after {:.2} seconds",
            request.request_id,
            request.function_timeout.as_secs_f64()
        ),
    })
}

/// The error Lambda returns when the runtime process ends without a result, for example after
/// `process.exit()` in the handler.
fn exit_error(request: &InvokeRequest, status: ExitStatus) -> Value {
    let exit_description = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => signal_description(status),
    };
    json!({
        "errorType": "Runtime.ExitError",
        "errorMessage": format!(
            "RequestId: {} Error: Runtime exited with error: {exit_description}",
            request.request_id
        ),
    })
}

#[cfg(unix)]
fn signal_description(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("signal {signal}"),
        None => status.to_string(),
    }
}

#[cfg(not(unix))]
fn signal_description(status: ExitStatus) -> String {
    status.to_string()
}

/// Returns a version 4 UUID from the standard library's randomly keyed hasher. The IDs only
/// need to differ between invocations; they are not secrets.
fn random_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut bytes = [0u8; 16];
    for (index, half) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(now);
        hasher.write_usize(index);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let first = random_request_id();
        let second = random_request_id();
        assert_ne!(first, second);
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "4");
        assert!("89ab".contains(&first[19..20]), "{first}");
    }

    #[test]
    fn handlers_under_var_task_become_relative() {
        assert_eq!(
            task_relative_handler("/var/task/src/app.handler").unwrap(),
            "src/app.handler"
        );
        assert_eq!(
            task_relative_handler("index.handler").unwrap(),
            "index.handler"
        );
        assert!(matches!(
            task_relative_handler("/opt/layer.handler"),
            Err(InvokeError::HandlerOutsideTaskRoot { .. })
        ));
    }

    #[test]
    fn timeout_error_names_limit_in_seconds() {
        let mut request = InvokeRequest::new("/tmp", "index.handler");
        request.function_timeout = Duration::from_millis(1500);
        request.request_id = "id".to_string();
        assert_eq!(
            timeout_error(&request)["errorMessage"],
            "RequestId: id Error: Task timed out after 1.50 seconds"
        );
    }
}
