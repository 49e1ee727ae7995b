//! Bad input through the binary: app folders that cannot be packed, invalid references,
//! platforms, handlers, flags and environment. Every case must fail with exit status 1 (2 for
//! usage errors that clap reports), one `error:` line that names the offending value, no panic,
//! and no partial output: no layout written, nothing pushed, no work files left in TMPDIR.

mod common;

#[path = "support/hostile_cli.rs"]
mod hostile_cli;
#[path = "support/hostile_server.rs"]
mod hostile_server;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use common::{base_layout, inspect_layout, layout_top_digest, BASE_TAG};
use hostile_cli::{run_bounded, write_small_app, Run, Sandbox};
use hostile_server::{BaseImage, HostileServer, Response};

/// How long an ordinary case may run before it is killed; each takes well under a second.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(20);
/// How long the app over Lambda's 10 GiB limit may take. Checking the size needs no read of the
/// 11 GiB file, so 10 s is ample even for a debug build; reading it takes minutes.
const OVERSIZED_APP_TIME_LIMIT: Duration = Duration::from_secs(10);
/// Size of the sparse file in the oversized app: 11 GiB, over Lambda's 10 GiB image limit.
const OVERSIZED_FILE_BYTES: u64 = 11 * 1024 * 1024 * 1024;

/// The folders and servers that one case may use. Every case gets its own.
struct Fixture {
    sandbox: Sandbox,
    /// A valid app: package.json and index.js with `handler`.
    app: PathBuf,
    /// The `--output` of build cases; it does not exist unless the case creates it.
    output: PathBuf,
    /// A fake registry that accepts pushes, so that a push that should fail but goes on is seen.
    target: Arc<HostileServer>,
}

impl Fixture {
    fn new(target: Arc<HostileServer>) -> Fixture {
        let sandbox = Sandbox::new();
        let app = sandbox.path().join("app");
        write_small_app(&app, "bad input");
        let output = sandbox.path().join("out");
        Fixture {
            sandbox,
            app,
            output,
            target,
        }
    }

    /// Returns a copy of the valid app under NAME, for a case to break.
    fn app_copy(&self, name: &str) -> PathBuf {
        let copy = self.sandbox.path().join(name);
        common::copy_dir(&self.app, &copy);
        copy
    }

    /// Returns `IMAGE` on the fake push target for REPOSITORY_AND_TAG.
    fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.target.host())
    }
}

fn local_base() -> String {
    format!("oci:{}:{BASE_TAG}", base_layout("base").display())
}

/// Returns `build DIR --output OUT --base <local layout> --node-modules local EXTRA…`.
fn build_args(fixture: &Fixture, dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["build".into(), dir.into(), "--output".into()];
    args.push(fixture.output.clone().into());
    args.extend(["--base", &local_base(), "--node-modules", "local"].map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    args
}

/// Returns `push DIR IMAGE --base <local layout> --node-modules local EXTRA…`.
fn push_args(dir: &Path, image: &str, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["push".into(), dir.into(), image.into()];
    args.extend(["--base", &local_base(), "--node-modules", "local"].map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    args
}

/// Returns ARGS with the value after FLAG replaced by VALUE.
fn with_value(mut args: Vec<OsString>, flag: &str, value: impl Into<OsString>) -> Vec<OsString> {
    let position = args
        .iter()
        .position(|arg| arg == flag)
        .unwrap_or_else(|| panic!("the arguments have no {flag}"));
    args[position + 1] = value.into();
    args
}

fn text(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_string()
}

/// A case ready to run: its command line, environment and the failure it must produce.
struct Prepared {
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    /// The expected exit status: 1, or 2 for usage errors.
    code: i32,
    /// Texts the `error:` line must contain, such as the offending value.
    needles: Vec<String>,
    /// Whether the product runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, the
    /// capabilities that let root read any file.
    without_file_override: bool,
    time_limit: Duration,
    /// A server the case needs while it runs.
    _server: Option<HostileServer>,
}

impl Prepared {
    fn new(args: Vec<OsString>, code: i32, needles: &[&str]) -> Prepared {
        Prepared {
            args,
            env: Vec::new(),
            code,
            needles: needles.iter().map(|needle| needle.to_string()).collect(),
            without_file_override: false,
            time_limit: CASE_TIME_LIMIT,
            _server: None,
        }
    }

    fn env(mut self, name: &str, value: &str) -> Prepared {
        self.env.push((name.to_string(), value.to_string()));
        self
    }
}

type CaseFn = fn(&Fixture) -> Prepared;

/// Every case: a name and a function that prepares it in its fixture.
const CASES: &[(&str, CaseFn)] = &[
    ("directory does not exist", |f| {
        let dir = f.sandbox.path().join("no-such-app");
        Prepared::new(build_args(f, &dir, &[]), 1, &[&text(&dir)])
    }),
    ("directory is a file", |f| {
        let file = f.app.join("index.js");
        Prepared::new(build_args(f, &file, &[]), 1, &[&text(&file)])
    }),
    ("directory is a file, push", |f| {
        let file = f.app.join("index.js");
        Prepared::new(
            push_args(&file, &f.image("app:latest"), &[]),
            1,
            &[&text(&file)],
        )
    }),
    ("no package.json", |f| {
        let app = f.app_copy("app-without-package");
        fs::remove_file(app.join("package.json")).unwrap();
        Prepared::new(build_args(f, &app, &[]), 1, &["package.json"])
    }),
    ("package.json is not JSON", |f| {
        let app = f.app_copy("app-bad-package");
        fs::write(app.join("package.json"), "{ \"name\": \"app\", ").unwrap();
        Prepared::new(build_args(f, &app, &[]), 1, &["package.json", "JSON"])
    }),
    ("unreadable file", |f| {
        let app = f.app_copy("app-unreadable-file");
        let secret = app.join("data.txt");
        fs::write(&secret, "private").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
        let mut prepared = Prepared::new(build_args(f, &app, &[]), 1, &[&text(&secret)]);
        prepared.without_file_override = true;
        prepared
    }),
    ("unreadable folder", |f| {
        let app = f.app_copy("app-unreadable-folder");
        let folder = app.join("private");
        fs::create_dir(&folder).unwrap();
        fs::write(folder.join("a.txt"), "a").unwrap();
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o000)).unwrap();
        let mut prepared = Prepared::new(build_args(f, &app, &[]), 1, &[&text(&folder)]);
        prepared.without_file_override = true;
        prepared
    }),
    ("symlink loop", |f| {
        let app = f.app_copy("app-symlink-loop");
        std::os::unix::fs::symlink("loop-b", app.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", app.join("loop-b")).unwrap();
        Prepared::new(build_args(f, &app, &[]), 1, &["loop-"])
    }),
    ("symlink escapes the app", |f| {
        let app = f.app_copy("app-symlink-escape");
        let outside = f.sandbox.path().join("outside.txt");
        fs::write(&outside, "outside").unwrap();
        std::os::unix::fs::symlink("../outside.txt", app.join("escape")).unwrap();
        Prepared::new(
            build_args(f, &app, &[]),
            1,
            &[&text(&app.join("escape")), "outside"],
        )
    }),
    ("file name is not UTF-8", |f| {
        let app = f.app_copy("app-non-utf8-name");
        let name = OsStr::from_bytes(b"data-\xff\xfe.txt");
        fs::write(app.join(name), "x").unwrap();
        Prepared::new(build_args(f, &app, &[]), 1, &["data-", "UTF-8"])
    }),
    ("file changes size while being read", file_changes_size),
    ("app over 10 GiB", |f| {
        let app = f.app_copy("app-oversized");
        let file = fs::File::create(app.join("huge.bin")).unwrap();
        file.set_len(OVERSIZED_FILE_BYTES).unwrap();
        let mut prepared = Prepared::new(build_args(f, &app, &["--no-cache"]), 1, &["10 GiB"]);
        prepared.time_limit = OVERSIZED_APP_TIME_LIMIT;
        prepared
    }),
    ("reference with a space", |f| {
        let image = f.image("my app:latest");
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    ("reference with uppercase repository", |f| {
        let image = f.image("MyApp:latest");
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    ("reference with a short digest", |f| {
        let image = f.image("app@sha256:abcdef");
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    ("reference with a 65-character digest", |f| {
        let image = f.image(&format!("app@sha256:{}", "a".repeat(65)));
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    ("reference with an empty tag", |f| {
        let image = f.image("app:");
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    ("reference with port out of range", |f| {
        let image = "127.0.0.1:65536/app:latest";
        Prepared::new(push_args(&f.app, image, &[]), 1, &[image])
    }),
    ("reference with a URL scheme", |f| {
        let image = format!("http://{}", f.image("app:latest"));
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    ("push target names a digest", |f| {
        let image = f.image(&format!("app@sha256:{}", "a".repeat(64)));
        Prepared::new(push_args(&f.app, &image, &[]), 1, &[&image])
    }),
    // A malformed flag value is a usage error, as clap reports every other one.
    ("build tag is empty", |f| {
        Prepared::new(build_args(f, &f.app, &["--tag", ""]), 2, &["--tag"])
    }),
    ("build tag has a space", |f| {
        Prepared::new(build_args(f, &f.app, &["--tag", "my tag"]), 2, &["my tag"])
    }),
    ("base reference is invalid", |f| {
        let args = with_value(build_args(f, &f.app, &[]), "--base", "Not A Reference");
        Prepared::new(args, 1, &["Not A Reference"])
    }),
    ("base layout does not exist", |f| {
        let missing = f.sandbox.path().join("no-such-layout");
        let base = format!("oci:{}:{BASE_TAG}", missing.display());
        let args = with_value(build_args(f, &f.app, &[]), "--base", base);
        Prepared::new(args, 1, &[&text(&missing)])
    }),
    ("platform with unknown architecture", |f| {
        let args = build_args(f, &f.app, &["--platform", "linux/s390x"]);
        Prepared::new(args, 1, &["linux/s390x"])
    }),
    ("platform with another OS", |f| {
        let args = build_args(f, &f.app, &["--platform", "windows/amd64"]);
        Prepared::new(args, 1, &["windows/amd64"])
    }),
    ("platform without architecture", |f| {
        Prepared::new(
            build_args(f, &f.app, &["--platform", "linux"]),
            1,
            &["linux"],
        )
    }),
    ("platform named twice", |f| {
        let args = build_args(f, &f.app, &["--platform", "linux/amd64,linux/amd64"]);
        Prepared::new(args, 1, &["amd64"])
    }),
    ("handler with ..", |f| {
        let args = build_args(f, &f.app, &["--handler", "../index.handler"]);
        Prepared::new(args, 1, &["../index.handler"])
    }),
    ("handler is empty", |f| {
        Prepared::new(build_args(f, &f.app, &["--handler", ""]), 1, &["handler"])
    }),
    ("handler without function", |f| {
        Prepared::new(
            build_args(f, &f.app, &["--handler", "index"]),
            1,
            &["index"],
        )
    }),
    ("handler function not exported", |f| {
        let args = build_args(f, &f.app, &["--handler", "index.notExported"]);
        Prepared::new(args, 1, &["notExported"])
    }),
    ("handler module missing", |f| {
        let args = build_args(f, &f.app, &["--handler", "missing.handler"]);
        Prepared::new(args, 1, &["missing"])
    }),
    ("SOURCE_DATE_EPOCH is not a number", |f| {
        Prepared::new(
            build_args(f, &f.app, &[]),
            1,
            &["SOURCE_DATE_EPOCH", "yesterday"],
        )
        .env("SOURCE_DATE_EPOCH", "yesterday")
    }),
    ("output is a folder that is not a layout", |f| {
        fs::create_dir(&f.output).unwrap();
        fs::write(f.output.join("notes.txt"), "keep me").unwrap();
        Prepared::new(build_args(f, &f.app, &[]), 1, &[&text(&f.output)])
    }),
    ("output is a file", |f| {
        fs::write(&f.output, "keep me").unwrap();
        Prepared::new(build_args(f, &f.app, &[]), 1, &[&text(&f.output)])
    }),
    (".dockerignore with an invalid pattern", |f| {
        let app = f.app_copy("app-bad-dockerignore");
        fs::write(app.join(".dockerignore"), "node_modules\nsrc/[a-\n").unwrap();
        Prepared::new(build_args(f, &app, &[]), 1, &[".dockerignore", "src/[a-"])
    }),
    ("--index with one platform", |f| {
        Prepared::new(build_args(f, &f.app, &["--index"]), 1, &["--index"])
    }),
    ("unknown subcommand", |_| {
        Prepared::new(vec!["frobnicate".into()], 2, &["frobnicate"])
    }),
    ("unknown flag", |f| {
        Prepared::new(
            build_args(f, &f.app, &["--frobnicate"]),
            2,
            &["--frobnicate"],
        )
    }),
    ("compression level out of range", |f| {
        let args = build_args(f, &f.app, &["--compression-level", "10"]);
        Prepared::new(args, 2, &["10", "--compression-level"])
    }),
    ("compression level not a number", |f| {
        let args = build_args(f, &f.app, &["--compression-level", "best"]);
        Prepared::new(args, 2, &["best", "--compression-level"])
    }),
    ("resolve without address", |f| {
        let args = build_args(f, &f.app, &["--resolve", "registry.example:443"]);
        Prepared::new(args, 2, &["registry.example:443", "--resolve"])
    }),
    ("resolve with invalid address", |f| {
        let args = build_args(f, &f.app, &["--resolve", "registry.example:443:not-an-ip"]);
        Prepared::new(args, 2, &["not-an-ip"])
    }),
    ("node-modules mode unknown", |f| {
        let args = with_value(build_args(f, &f.app, &[]), "--node-modules", "copy");
        Prepared::new(args, 2, &["copy", "--node-modules"])
    }),
    ("timeout not a number", |f| {
        let args = build_args(f, &f.app, &["--timeout", "soon"]);
        Prepared::new(args, 2, &["soon", "--timeout"])
    }),
];

/// Grows a file of the app when the product fetches the base image, which happens after the
/// product has listed the app's files and before it reads them into a layer.
fn file_changes_size(fixture: &Fixture) -> Prepared {
    let app = fixture.app_copy("app-growing-file");
    let growing = app.join("growing.js");
    fs::write(&growing, "// grows\n").unwrap();
    let base = BaseImage::load(&base_layout("base"));
    let grown = AtomicBool::new(false);
    let server = {
        let growing = growing.clone();
        HostileServer::start(move |request| {
            if !grown.swap(true, Ordering::SeqCst) {
                let mut file = fs::OpenOptions::new().append(true).open(&growing).unwrap();
                std::io::Write::write_all(&mut file, &[b'/'; 100_000]).unwrap();
            }
            base.serve(request)
        })
    };
    let base = format!("{}/lambda/nodejs:{BASE_TAG}", server.host());
    let args = with_value(build_args(fixture, &app, &[]), "--base", base);
    let mut prepared = Prepared::new(args, 1, &[&text(&growing)]);
    prepared._server = Some(server);
    prepared
}

/// Starts a fake registry that accepts every blob and manifest, as a permissive registry would.
fn accepting_registry() -> HostileServer {
    HostileServer::start(|request| {
        let path = request.path();
        match request.method.as_str() {
            "HEAD" | "GET" if path == "/v2/" => Response::status(200),
            "HEAD" | "GET" => Response::not_found(),
            "POST" => Response::status(202).header("Location", "/v2/upload/session"),
            "PUT" if path.contains("/manifests/") => Response::status(201),
            "PUT" | "PATCH" => Response::status(201),
            _ => Response::status(400),
        }
    })
}

/// Reports whether the tests run as root, who reads files whatever their permissions.
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let output = Command::new("id")
            .arg("-u")
            .output()
            .expect("cannot run id -u");
        String::from_utf8_lossy(&output.stdout).trim() == "0"
    })
}

/// Lists every entry under PATH (or PATH itself) with its content, to prove a run left it as
/// it was. Empty when PATH does not exist.
fn snapshot(path: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut entries = BTreeMap::new();
    if fs::symlink_metadata(path).is_err() {
        return entries;
    }
    for entry in walkdir::WalkDir::new(path) {
        let entry = entry.expect("cannot walk the output path");
        let content = if entry.file_type().is_file() {
            fs::read(entry.path()).expect("cannot read the output path")
        } else {
            Vec::new()
        };
        entries.insert(entry.path().to_path_buf(), content);
    }
    entries
}

fn run_case(fixture: &Fixture, prepared: &Prepared) -> Run {
    let mut command = if prepared.without_file_override && running_as_root() {
        // Root reads files whatever their mode; without these capabilities it cannot.
        let wrapper = [
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search",
            "--",
        ];
        fixture.sandbox.wrapped_command(&wrapper, &prepared.args)
    } else {
        fixture.sandbox.command(&prepared.args)
    };
    for (name, value) in &prepared.env {
        command.env(name, value);
    }
    run_bounded(command, prepared.time_limit)
}

/// Lists what the run left behind that a failed command must not: a changed output path,
/// writes to the push target, files in TMPDIR.
fn partial_output(
    fixture: &Fixture,
    output_before: &BTreeMap<PathBuf, Vec<u8>>,
    writes_before: usize,
    run: &Run,
) -> Vec<String> {
    let mut problems = Vec::new();
    if snapshot(&fixture.output) != *output_before {
        problems.push(format!("the run changed {}", fixture.output.display()));
    }
    let writes: Vec<String> = fixture
        .target
        .requests()
        .iter()
        .filter(|request| request.is_write())
        .skip(writes_before)
        .map(|request| format!("{} {}", request.method, request.target))
        .collect();
    if !writes.is_empty() {
        problems.push(format!("the run wrote to the push target: {writes:?}"));
    }
    // A killed run cannot clean up, so its work files prove nothing.
    if run.status.is_some() {
        let left: Vec<_> = fs::read_dir(fixture.sandbox.temp())
            .expect("cannot list the sandbox's TMPDIR")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        if !left.is_empty() {
            problems.push(format!("the run left work files in TMPDIR: {left:?}"));
        }
    }
    problems
}

/// Makes every file and folder under the fixture writable again, so the sandbox can be deleted.
fn restore_permissions(fixture: &Fixture) {
    for entry in walkdir::WalkDir::new(fixture.sandbox.path())
        .into_iter()
        .flatten()
    {
        if entry.path_is_symlink() {
            continue;
        }
        let mode = if entry.file_type().is_dir() {
            0o755
        } else {
            0o644
        };
        let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode));
    }
}

#[test]
fn bad_input_fails_cleanly() {
    let target = Arc::new(accepting_registry());
    let mut failures = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, prepare) in CASES {
        assert!(seen.insert(*name), "two cases are named {name:?}");
        let fixture = Fixture::new(target.clone());
        let prepared = prepare(&fixture);
        let output_before = snapshot(&fixture.output);
        let writes_before = target
            .requests()
            .iter()
            .filter(|request| request.is_write())
            .count();

        let run = run_case(&fixture, &prepared);
        let needles: Vec<&str> = prepared.needles.iter().map(String::as_str).collect();
        let mut problems = run.failure_problems(prepared.code, &needles);
        problems.extend(partial_output(
            &fixture,
            &output_before,
            writes_before,
            &run,
        ));
        if !problems.is_empty() {
            failures.push(format!("{name}:\n  - {}\n  {run}", problems.join("\n  - ")));
        }
        restore_permissions(&fixture);
    }
    assert!(
        CASES.len() >= 30,
        "the table has {} cases, fewer than 30",
        CASES.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

/// A push to a port where nothing listens is more likely a wrong address than a registry
/// restarting: each request fails after one retry, not after the whole backoff.
#[test]
fn closed_registry_port_fails_after_one_retry() {
    let fixture = Fixture::new(Arc::new(accepting_registry()));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let image = format!("{closed}/app:latest");

    let run = fixture
        .sandbox
        .run(&push_args(&fixture.app, &image, &[]), CASE_TIME_LIMIT);

    run.assert_failure(1, &[&closed.to_string(), "Connection refused"]);
    // Requests sent in parallel each retry once.
    assert!(run.stderr.contains("retrying"), "{run}");
    assert!(!run.stderr.contains("attempt=2"), "{run}");
}

/// Two builds that write the same layout at once must each succeed or fail cleanly, and the
/// layout they leave must be valid and contain the image that a successful build printed.
#[test]
fn concurrent_builds_to_one_output() {
    const ROUNDS: usize = 3;
    let shared = tempfile::tempdir().unwrap();
    for round in 0..ROUNDS {
        let output = shared.path().join(format!("layout-{round}"));
        let runs: Vec<(Run, String)> = thread::scope(|scope| {
            let builders: Vec<_> = ["first", "second"]
                .into_iter()
                .map(|name| {
                    let output = output.clone();
                    scope.spawn(move || {
                        let sandbox = Sandbox::new();
                        let app = sandbox.path().join("app");
                        write_small_app(&app, &format!("{name} build, round {round}"));
                        let args: Vec<OsString> = vec![
                            "build".into(),
                            app.into(),
                            "--output".into(),
                            output.into(),
                            "--base".into(),
                            local_base().into(),
                            "--node-modules".into(),
                            "local".into(),
                        ];
                        let run = sandbox.run(&args, CASE_TIME_LIMIT);
                        (run, name.to_string())
                    })
                })
                .collect();
            builders
                .into_iter()
                .map(|builder| builder.join().expect("a build thread panicked"))
                .collect()
        });

        let mut digests = Vec::new();
        for (run, name) in &runs {
            if run.code() == Some(0) {
                let line = run.stdout.trim();
                let digest = line
                    .rsplit_once('@')
                    .unwrap_or_else(|| panic!("round {round}, {name} build printed {line:?}"))
                    .1;
                digests.push(digest.to_string());
            } else {
                run.assert_failure(1, &[&text(&output)]);
            }
        }
        assert!(
            !digests.is_empty(),
            "round {round}: neither build succeeded:\n{}\n{}",
            runs[0].0,
            runs[1].0
        );
        let image = inspect_layout(&output);
        let top = layout_top_digest(&output);
        assert!(
            digests.contains(&top),
            "round {round}: the layout names {top}, which no successful build printed: {digests:?}"
        );
        assert_eq!(image["manifest_digest"], top.as_str(), "round {round}");
    }
}
