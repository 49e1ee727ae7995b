//! Parses Lambda handler strings and looks for the handler in JavaScript sources.
//!
//! Input: up to three NUL-separated parts: a handler string such as `src/app.handler`, the
//! JavaScript source of its module, and a package.json. Missing parts are empty or absent.
//!
//! Checked:
//! - nothing panics in `Handler` parsing, `exports_function`, `resolve` or `detect`;
//! - the `Display` output of a parsed handler parses back to an equal handler;
//! - a resolved handler names a module file that exists.

#![no_main]

use std::collections::BTreeMap;

use lambda_image::handler::{detect, exports_function, resolve, Handler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let mut parts = input.splitn(3, '\0');
    let handler_text = parts.next().unwrap_or_default();
    let source = parts.next().unwrap_or_default();
    let package_json = parts.next();

    let _ = exports_function(source, handler_text);

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(package_json) = package_json {
        files.insert("package.json".to_string(), package_json.as_bytes().to_vec());
    }

    if let Ok(handler) = handler_text.parse::<Handler>() {
        let displayed = handler.to_string();
        let again: Handler = displayed.parse().unwrap_or_else(|error| {
            panic!("{handler_text:?} parsed as {handler:?}, but its display {displayed:?} does not parse: {error}")
        });
        assert_eq!(
            again, handler,
            "{handler_text:?} displays as {displayed:?}, which parses to another handler"
        );

        let mut module_files = files.clone();
        module_files.insert(
            format!("{}.js", handler.module_path),
            source.as_bytes().to_vec(),
        );
        if let Ok(resolved) = resolve(&handler, &module_files) {
            assert!(
                module_files.contains_key(&resolved.module_file),
                "{handler_text:?} resolved to {:?}, which is not among the files",
                resolved.module_file
            );
        }
    }

    files.insert("index.js".to_string(), source.as_bytes().to_vec());
    if let Ok(resolved) = detect(&files) {
        assert!(
            files.contains_key(&resolved.module_file),
            "detect found {:?}, which is not among the files",
            resolved.module_file
        );
    }
});
