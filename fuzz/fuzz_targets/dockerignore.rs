//! Parses `.dockerignore` text and matches paths against it.
//!
//! Input: the `.dockerignore` text, optionally followed by a NUL byte and NUL-separated paths.
//! Without a NUL byte, the paths are the pattern lines themselves, without `!` and surrounding
//! whitespace, so that patterns are matched against paths they are likely to match.
//!
//! Checked for every path:
//! - nothing panics;
//! - a directory that `may_include_below` reports as prunable has no included path below it;
//! - without exception lines, whatever excludes a path also excludes everything below it.

#![no_main]

use std::path::Path;

use lambda_image::dockerignore::DockerIgnore;
use libfuzzer_sys::fuzz_target;

/// Paths matched per input, so that one input's run time stays bounded.
const MAX_PATHS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (text, paths): (&str, Vec<&str>) = match input.split_once('\0') {
        Some((text, paths)) => (text, paths.split('\0').collect()),
        None => (&input, input.lines().map(path_of_line).collect()),
    };
    let Ok(rules) = DockerIgnore::parse(text, Path::new(".dockerignore")) else {
        return;
    };
    // A file without any `!` has no exception line, whatever its comments and escapes.
    let has_exceptions = text.contains('!');
    for path in paths.into_iter().take(MAX_PATHS) {
        check_path(&rules, text, path, has_exceptions);
    }
});

fn path_of_line(line: &str) -> &str {
    let line = line.trim();
    line.strip_prefix('!').unwrap_or(line).trim()
}

fn check_path(rules: &DockerIgnore, text: &str, path: &str, has_exceptions: bool) {
    let excluded = rules.is_excluded(path);
    let may_include = rules.may_include_below(path);

    // A directory walk never produces `..`, and `is_excluded` does not resolve it.
    let walkable = !path.split('/').any(|component| component == "..");
    if walkable {
        for (end, _) in path.match_indices('/') {
            let dir = &path[..end];
            assert!(
                rules.may_include_below(dir) || excluded,
                "patterns {text:?}: directory {dir:?} is prunable, but {path:?} below it is included"
            );
        }
    }

    if !has_exceptions {
        assert_eq!(
            may_include, !excluded,
            "patterns {text:?} without exceptions: may_include_below({path:?}) disagrees with is_excluded"
        );
        let below = format!("{path}/x");
        assert!(
            !excluded || rules.is_excluded(&below),
            "patterns {text:?} without exceptions exclude {path:?} but not {below:?}"
        );
    }
}
