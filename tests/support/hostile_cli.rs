//! Runs the `lambda-image` binary as a user would, in a private sandbox (cache, Docker config,
//! HOME and TMPDIR in a temporary folder), with a time limit, and measures its peak memory with
//! GNU time when `/usr/bin/time` exists. Also checks the shape of a failure: the exit status,
//! one `error:` line, no panic.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// GNU time, which reports the peak resident set size of the command it runs.
const GNU_TIME: &str = "/usr/bin/time";

/// How often a running command is polled for its exit.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A private environment for the product: its cache, Docker config, HOME and TMPDIR live in one
/// temporary folder, deleted on drop.
pub struct Sandbox {
    dir: TempDir,
    cache: PathBuf,
}

impl Sandbox {
    /// Creates a sandbox with its own, empty cache.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("lambda-image-sandbox-")
            .tempdir()
            .expect("cannot create a temporary folder for the sandbox");
        let cache = dir.path().join("cache");
        for folder in ["cache", "docker", "home", "tmp"] {
            fs::create_dir(dir.path().join(folder))
                .unwrap_or_else(|error| panic!("cannot create {folder} in the sandbox: {error}"));
        }
        Sandbox { dir, cache }
    }

    /// Creates a sandbox whose XDG_CACHE_HOME is CACHE, so that several product runs share one
    /// cache.
    pub fn with_cache(cache: &Path) -> Sandbox {
        let mut sandbox = Sandbox::new();
        sandbox.cache = cache.to_path_buf();
        sandbox
    }

    /// Returns the sandbox folder, where a test may put apps and outputs.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the folder the product uses as XDG_CACHE_HOME.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// Returns the folder the product uses as TMPDIR, where it keeps its work files.
    pub fn temp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// Returns a command that runs the product with ARGS in this sandbox: no proxy, no AWS
    /// settings of the machine, no instance metadata service, no SOURCE_DATE_EPOCH.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lambda-image"));
        command.args(args);
        self.set_environment(&mut command);
        command
    }

    /// Returns a command that runs WRAPPER (a program and its arguments, such as `setpriv …
    /// --`) with the product and ARGS after it, in this sandbox.
    pub fn wrapped_command<S: AsRef<std::ffi::OsStr>>(
        &self,
        wrapper: &[&str],
        args: &[S],
    ) -> Command {
        let (program, wrapper_args) = wrapper.split_first().expect("the wrapper names a program");
        let mut command = Command::new(program);
        command
            .args(wrapper_args)
            .arg(env!("CARGO_BIN_EXE_lambda-image"))
            .args(args);
        self.set_environment(&mut command);
        command
    }

    fn set_environment(&self, command: &mut Command) {
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy().to_ascii_lowercase();
            if text.starts_with("aws_") || text.ends_with("_proxy") || text == "source_date_epoch" {
                command.env_remove(&name);
            }
        }
        command
            .env("XDG_CACHE_HOME", &self.cache)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.temp())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
    }

    /// Runs the product with ARGS, killing it after LIMIT.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], limit: Duration) -> Run {
        run_bounded(self.command(args), limit)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// How a product run ended.
#[derive(Debug)]
pub struct Run {
    /// The exit status, `None` when the run was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The peak resident set size in KiB, when GNU time measured it.
    pub max_rss_kib: Option<u64>,
    /// The command line, for failure messages.
    pub description: String,
}

impl Run {
    /// Returns the exit code, `None` if the run was killed or died from a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|status| status.code())
    }

    /// Returns the stderr lines that start with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect()
    }

    /// Lists what is wrong with this run as a failure with exit status CODE whose one `error:`
    /// line contains each of NEEDLES; empty when nothing is.
    pub fn failure_problems(&self, code: i32, needles: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        match self.status {
            None => problems.push(format!(
                "still running after {:.1} s, killed",
                self.elapsed.as_secs_f64()
            )),
            Some(status) if status.code() != Some(code) => {
                problems.push(format!("exit status {status}, expected code {code}"))
            }
            Some(_) => {}
        }
        if self.stderr.contains("panicked") {
            problems.push("stderr reports a panic".to_string());
        }
        let lines = self.error_lines();
        if lines.len() != 1 {
            problems.push(format!(
                "{} stderr lines start with `error:`, expected 1",
                lines.len()
            ));
        }
        for needle in needles {
            if !lines.iter().any(|line| line.contains(needle)) {
                problems.push(format!("no `error:` line contains {needle:?}"));
            }
        }
        if let Some(repeated) = lines.iter().find_map(|line| repeated_cause(line)) {
            problems.push(format!("the error line repeats the cause {repeated:?}"));
        }
        problems
    }

    /// Panics unless this run failed with exit status CODE and one `error:` line containing each
    /// of NEEDLES. Returns that line.
    pub fn assert_failure(&self, code: i32, needles: &[&str]) -> String {
        let problems = self.failure_problems(code, needles);
        assert!(
            problems.is_empty(),
            "{}:\n- {}\n{self}",
            self.description,
            problems.join("\n- ")
        );
        self.error_lines()[0].to_string()
    }

    /// Panics unless this run succeeded. Returns its stdout.
    pub fn assert_success(&self) -> &str {
        assert!(
            self.status.is_some_and(|status| status.success()),
            "{} failed:\n{self}",
            self.description
        );
        &self.stdout
    }

    /// Panics unless the run ended within LIMIT and its peak memory, if measured, stayed under
    /// MAX_RSS_MIB.
    pub fn assert_bounded(&self, limit: Duration, max_rss_mib: u64) {
        assert!(
            self.elapsed < limit,
            "{} took {:.1} s, more than {} s:\n{self}",
            self.description,
            self.elapsed.as_secs_f64(),
            limit.as_secs()
        );
        if let Some(kib) = self.max_rss_kib {
            assert!(
                kib < max_rss_mib * 1024,
                "{} peaked at {} MiB of memory, more than {max_rss_mib} MiB:\n{self}",
                self.description,
                kib / 1024
            );
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "killed at its time limit".to_string(),
        };
        write!(
            formatter,
            "status: {status}, {:.2} s, peak memory {}\nstdout:\n{}\nstderr:\n{}",
            self.elapsed.as_secs_f64(),
            self.max_rss_kib
                .map_or("not measured".to_string(), |kib| format!("{kib} KiB")),
            self.stdout,
            self.stderr
        )
    }
}

/// Returns a cause that an error line states twice in a row, as in
/// `cannot read x: Permission denied (os error 13): Permission denied (os error 13)`.
fn repeated_cause(line: &str) -> Option<String> {
    let segments: Vec<&str> = line.split(": ").map(str::trim).collect();
    segments
        .windows(2)
        .find(|pair| pair[0] == pair[1] && !pair[0].is_empty())
        .map(|pair| pair[0].to_string())
}

/// Runs COMMAND under GNU time (when installed) in its own process group, killing the group
/// after LIMIT. Stdout and stderr are read on threads so a full pipe cannot stall the run.
pub fn run_bounded(command: Command, limit: Duration) -> Run {
    let description = describe(&command);
    let rss_file = tempfile::NamedTempFile::new().expect("cannot create a file for GNU time");
    let mut command = wrap_in_gnu_time(command, rss_file.path());
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);

    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {description}: {error}"));
    let stdout = read_on_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_on_thread(child.stderr.take().expect("stderr is piped"));
    let status = wait_with_limit(&mut child, limit);
    let elapsed = started.elapsed();

    let max_rss_kib = fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|text| text.lines().last()?.trim().parse().ok());
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
        max_rss_kib,
        description,
    }
}

fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    format!("{program} {}", args.join(" "))
}

/// Returns a command that runs COMMAND under GNU time, writing the peak RSS in KiB to
/// RSS_FILE, or COMMAND itself when GNU time is not installed.
fn wrap_in_gnu_time(command: Command, rss_file: &Path) -> Command {
    if !Path::new(GNU_TIME).is_file() {
        return command;
    }
    let mut wrapped = Command::new(GNU_TIME);
    wrapped
        .args(["--format", "%M", "--output"])
        .arg(rss_file)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.stdin(Stdio::null());
    wrapped
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for CHILD until LIMIT, then kills its process group (GNU time and the product) and
/// returns `None`.
fn wait_with_limit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => thread::sleep(POLL_INTERVAL),
            Err(error) => panic!("cannot wait for lambda-image: {error}"),
        }
    }
    kill_process_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn kill_process_group(leader: u32) {
    // The group id is the leader's pid (process_group(0)); `kill -- -PGID` signals the group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{leader}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Writes a minimal Node.js app into DIR: package.json, and `index.js` whose handler returns
/// MESSAGE.
pub fn write_small_app(dir: &Path, message: &str) {
    fs::create_dir_all(dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    let package = serde_json::json!({
        "name": "small-app",
        "version": "1.0.0",
        "private": true,
        "main": "index.js",
    });
    fs::write(dir.join("package.json"), format!("{package:#}\n"))
        .unwrap_or_else(|error| panic!("cannot write package.json in {}: {error}", dir.display()));
    let handler = format!(
        "exports.handler = async () => ({{ statusCode: 200, body: {} }});\n",
        serde_json::Value::String(message.to_string())
    );
    fs::write(dir.join("index.js"), handler)
        .unwrap_or_else(|error| panic!("cannot write index.js in {}: {error}", dir.display()));
}
