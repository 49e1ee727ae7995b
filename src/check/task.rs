//! The merged view of `/var/task` after all layers, as the function finds it at run time: its permissions,
//! and whether the handler in `Cmd` resolves.

use std::collections::{BTreeMap, BTreeSet};

use tracing::debug;

use crate::handler::{self, Handler, HandlerError, TaskFiles};

use super::index::plural;
use super::layer::{normalize, Content, EntryKind, ScannedEntry, Whiteout};
use super::Finding;

/// The entries under `/var/task`, keyed by path relative to it (`""` is `/var/task` itself),
/// with lower layers' entries replaced or removed by upper layers'.
#[derive(Debug, Default)]
pub(super) struct TaskTree {
    entries: BTreeMap<String, TreeEntry>,
}

#[derive(Debug)]
struct TreeEntry {
    kind: EntryKind,
    mode: u32,
    /// The index of the layer the entry comes from.
    layer: usize,
    content: Option<Content>,
}

/// Returns the files that [`handler::resolve`] may read for `handler`: the module candidates
/// and every package.json from the module's folder up to `/var/task`.
pub(super) fn needed_files(handler: &Handler) -> BTreeSet<String> {
    let base = normalize(&handler.module_path);
    let mut needed: BTreeSet<String> = ["", ".js", ".mjs", ".cjs"]
        .iter()
        .map(|extension| format!("{base}{extension}"))
        .collect();
    let mut folder = parent_folder(&base);
    loop {
        if folder.is_empty() {
            needed.insert("package.json".to_string());
            break;
        }
        needed.insert(format!("{folder}/package.json"));
        folder = parent_folder(folder);
    }
    needed
}

fn parent_folder(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Formats a path relative to `/var/task` as an absolute path.
fn absolute(path: &str) -> String {
    if path.is_empty() {
        "/var/task".to_string()
    } else {
        format!("/var/task/{path}")
    }
}

impl TaskTree {
    /// Applies one layer: its whiteouts remove lower layers' entries, then its entries are
    /// added, as the OCI image spec's layer changesets define.
    pub(super) fn apply_layer(
        &mut self,
        layer: usize,
        whiteouts: Vec<Whiteout>,
        entries: Vec<ScannedEntry>,
    ) {
        for whiteout in whiteouts {
            match whiteout {
                Whiteout::Delete(path) => self.remove(&path, true),
                Whiteout::Opaque(path) => self.remove(&path, false),
            }
        }
        for entry in entries {
            if entry.kind != EntryKind::Directory {
                // A file or link in place of a directory hides everything the directory held.
                self.remove(&entry.path, false);
            }
            self.entries.insert(
                entry.path,
                TreeEntry {
                    kind: entry.kind,
                    mode: entry.mode,
                    layer,
                    content: entry.content,
                },
            );
        }
    }

    /// Removes everything below `path`, and `path` itself when `including_path` is set.
    fn remove(&mut self, path: &str, including_path: bool) {
        self.entries
            .retain(|key, _| !(is_below(key, path) || (including_path && key == path)));
    }

    /// Reports files that other users cannot read and directories they cannot search.
    pub(super) fn permission_findings(&self) -> Vec<Finding> {
        let unreadable: Vec<(&String, u32)> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.kind == EntryKind::File && entry.mode & 0o004 == 0)
            .map(|(path, entry)| (path, entry.mode))
            .collect();
        let unsearchable: Vec<(&String, u32)> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.kind == EntryKind::Directory && entry.mode & 0o001 == 0)
            .map(|(path, entry)| (path, entry.mode))
            .collect();

        let mut findings = Vec::new();
        if let Some(&(path, mode)) = unreadable.first() {
            let (subject, pronoun) = subject(
                &format!("`{}` (mode {mode:04o})", absolute(path)),
                unreadable.len(),
                ("file", "files"),
            );
            let verb = if unreadable.len() == 1 { "is" } else { "are" };
            findings.push(Finding::error(
                "task-file-not-readable",
                format!(
                    "{subject} {verb} not readable by others; Lambda runs the function as a \
                     non-root user, which cannot read {pronoun}; make {pronoun} world-readable \
                     (`chmod o+r`, mode 0644) and rebuild the image"
                ),
            ));
        }
        if let Some(&(path, mode)) = unsearchable.first() {
            let (subject, pronoun) = subject(
                &format!("the directory `{}` (mode {mode:04o})", absolute(path)),
                unsearchable.len(),
                ("directory", "directories"),
            );
            let verb = if unsearchable.len() == 1 { "is" } else { "are" };
            findings.push(Finding::error(
                "task-directory-not-searchable",
                format!(
                    "{subject} {verb} not searchable by others; Lambda runs the function as a \
                     non-root user, which cannot open anything inside {pronoun}; make {pronoun} \
                     world-searchable (`chmod o+x`, mode 0755) and rebuild the image"
                ),
            ));
        }
        findings
    }

    /// Resolves `handler` against the files under `/var/task` and reports a missing module or
    /// a module that does not export the function, as the Lambda runtime would.
    ///
    /// A report that the layers read cannot back is left out: a missing module when some layer
    /// was not read (`last_unread` is its index), a module that a later unread layer may
    /// replace, and a module whose source was not kept (a link, or a file over the size cap).
    pub(super) fn handler_finding(
        &self,
        handler: &Handler,
        last_unread: Option<usize>,
    ) -> Option<Finding> {
        match handler::resolve(handler, self) {
            Ok(_) => None,
            Err(HandlerError::ModuleNotFound { tried, .. }) => {
                if last_unread.is_some() {
                    debug!(%handler, "not reporting the missing module: some layers were not read");
                    return None;
                }
                if self.is_directory(&normalize(&handler.module_path)) {
                    // NOTE: the runtime loads a folder as a module through its package.json
                    // `main` or index.js, which this check does not follow.
                    debug!(%handler, "the module path is a folder");
                    return None;
                }
                let tried: Vec<String> = tried.iter().map(|path| format!("`{path}`")).collect();
                Some(Finding::error(
                    "handler-module-not-found",
                    format!(
                        "the handler `{handler}` in Cmd names the module `{}`, but none of {} \
                         exists under /var/task; Lambda would fail with \
                         Runtime.ImportModuleError; add the module to the image or set Cmd to a \
                         MODULE.FUNCTION whose module exists",
                        handler.module_path,
                        tried.join(", ")
                    ),
                ))
            }
            Err(HandlerError::NotExported {
                module_file,
                function,
                ..
            }) => {
                let entry = self.entries.get(&module_file)?;
                if last_unread.is_some_and(|unread| unread > entry.layer) {
                    debug!(%handler, "not reporting the export: a later layer was not read");
                    return None;
                }
                if self.kept_source(&module_file).is_none() {
                    debug!(%handler, module_file, "the module's source was not kept");
                    return None;
                }
                Some(Finding::error(
                    "handler-not-exported",
                    format!(
                        "the handler `{handler}` in Cmd names the function `{function}`, but \
                         `{}` does not export it; Lambda would fail with \
                         Runtime.HandlerNotFound; export it (`exports.{function} = ...` or \
                         `export const {function} = ...`) or set Cmd to a function the module \
                         exports",
                        absolute(&module_file)
                    ),
                ))
            }
            Err(_) => None,
        }
    }

    fn is_directory(&self, path: &str) -> bool {
        self.entries
            .get(path)
            .is_some_and(|entry| entry.kind == EntryKind::Directory)
    }

    /// Returns the kept contents of the file at `path`, following a hard link.
    fn kept_source(&self, path: &str) -> Option<&[u8]> {
        let entry = self.entries.get(path)?;
        match (&entry.kind, &entry.content) {
            (EntryKind::File, Some(Content::Kept(bytes))) => Some(bytes),
            (
                EntryKind::HardLink {
                    target: Some(target),
                },
                _,
            ) if target != path => self.kept_source(target),
            _ => None,
        }
    }
}

/// Describes the first of `count` entries, adding how many more there are, and returns the
/// pronoun for them.
fn subject(first: &str, count: usize, kind: (&str, &str)) -> (String, &'static str) {
    if count == 1 {
        return (first.to_string(), "it");
    }
    let more = count - 1;
    let kind = plural(more, kind.0, kind.1);
    (
        format!("{first} and {more} more {kind} under /var/task"),
        "them",
    )
}

/// Reports whether `path` is below the folder `folder`. Every path but `""` is below `""`.
fn is_below(path: &str, folder: &str) -> bool {
    if folder.is_empty() {
        return !path.is_empty();
    }
    path.len() > folder.len() && path.starts_with(folder) && path.as_bytes()[folder.len()] == b'/'
}

impl TaskFiles for TaskTree {
    /// Returns a file's kept contents. A file whose contents were not kept, and a link, read
    /// as empty: they exist, which is what the module lookup needs, and
    /// [`TaskTree::handler_finding`] does not trust an export check on them.
    fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let entry = self.entries.get(path)?;
        match entry.kind {
            EntryKind::File | EntryKind::Symlink | EntryKind::HardLink { .. } => Some(
                self.kept_source(path)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default(),
            ),
            EntryKind::Directory | EntryKind::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32, content: Option<&str>) -> ScannedEntry {
        ScannedEntry {
            path: path.to_string(),
            kind: EntryKind::File,
            mode,
            content: content.map(|text| Content::Kept(text.as_bytes().to_vec())),
        }
    }

    fn directory(path: &str, mode: u32) -> ScannedEntry {
        ScannedEntry {
            path: path.to_string(),
            kind: EntryKind::Directory,
            mode,
            content: None,
        }
    }

    fn handler(text: &str) -> Handler {
        text.parse().unwrap()
    }

    fn paths(tree: &TaskTree) -> Vec<&str> {
        tree.entries.keys().map(String::as_str).collect()
    }

    #[test]
    fn needed_files_cover_candidates_and_package_files() {
        let needed = needed_files(&handler("./src/api/index.get"));
        let expected = [
            "package.json",
            "src/api/index",
            "src/api/index.cjs",
            "src/api/index.js",
            "src/api/index.mjs",
            "src/api/package.json",
            "src/package.json",
        ];
        assert_eq!(needed.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn whiteouts_remove_lower_entries_only() {
        let mut tree = TaskTree::default();
        tree.apply_layer(
            0,
            Vec::new(),
            vec![
                directory("", 0o755),
                directory("lib", 0o755),
                file("lib/a.js", 0o644, None),
                file("old.js", 0o644, None),
            ],
        );
        tree.apply_layer(
            1,
            vec![
                Whiteout::Opaque("lib".to_string()),
                Whiteout::Delete("old.js".to_string()),
            ],
            vec![file("lib/b.js", 0o644, None)],
        );
        assert_eq!(paths(&tree), ["", "lib", "lib/b.js"]);

        tree.apply_layer(2, vec![Whiteout::Delete(String::new())], Vec::new());
        assert_eq!(paths(&tree), Vec::<&str>::new());
    }

    #[test]
    fn file_replacing_directory_hides_its_contents() {
        let mut tree = TaskTree::default();
        tree.apply_layer(
            0,
            Vec::new(),
            vec![directory("lib", 0o755), file("lib/a.js", 0o644, None)],
        );
        tree.apply_layer(1, Vec::new(), vec![file("lib", 0o644, None)]);
        assert_eq!(paths(&tree), ["lib"]);
    }

    #[test]
    fn upper_layer_fixes_permissions() {
        let mut tree = TaskTree::default();
        tree.apply_layer(0, Vec::new(), vec![file("a.js", 0o600, None)]);
        assert_eq!(tree.permission_findings().len(), 1);
        tree.apply_layer(1, Vec::new(), vec![file("a.js", 0o644, None)]);
        assert_eq!(tree.permission_findings(), []);
    }

    #[test]
    fn permission_findings_count_the_rest() {
        let mut tree = TaskTree::default();
        tree.apply_layer(
            0,
            Vec::new(),
            vec![
                directory("", 0o700),
                directory("lib", 0o750),
                file("a.js", 0o640, None),
                file("b.js", 0o600, None),
                file("c.js", 0o604, None),
            ],
        );
        let findings = tree.permission_findings();
        assert_eq!(findings.len(), 2);
        assert_eq!(
            findings[0].message,
            "`/var/task/a.js` (mode 0640) and 1 more file under /var/task are not readable by \
             others; Lambda runs the function as a non-root user, which cannot read them; make \
             them world-readable (`chmod o+r`, mode 0644) and rebuild the image"
        );
        assert_eq!(
            findings[1].message,
            "the directory `/var/task` (mode 0700) and 1 more directory under /var/task are \
             not searchable by others; Lambda runs the function as a non-root user, which \
             cannot open anything inside them; make them world-searchable (`chmod o+x`, mode \
             0755) and rebuild the image"
        );
    }

    #[test]
    fn handler_in_hard_link_is_followed() {
        let mut tree = TaskTree::default();
        tree.apply_layer(
            0,
            Vec::new(),
            vec![
                file("dist/main.js", 0o644, Some("exports.handler = 1")),
                ScannedEntry {
                    path: "lambda.js".to_string(),
                    kind: EntryKind::HardLink {
                        target: Some("dist/main.js".to_string()),
                    },
                    mode: 0o644,
                    content: None,
                },
            ],
        );
        assert_eq!(tree.handler_finding(&handler("lambda.handler"), None), None);
        let finding = tree.handler_finding(&handler("lambda.other"), None);
        assert_eq!(
            finding.map(|finding| finding.code),
            Some("handler-not-exported")
        );
    }

    #[test]
    fn handler_in_symlink_is_not_judged() {
        let mut tree = TaskTree::default();
        let link = ScannedEntry {
            path: "lambda.js".to_string(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            content: None,
        };
        tree.apply_layer(0, Vec::new(), vec![link]);
        assert_eq!(tree.handler_finding(&handler("lambda.handler"), None), None);
    }

    #[test]
    fn missing_module_is_not_judged_with_unread_layers() {
        let tree = TaskTree::default();
        assert_eq!(
            tree.handler_finding(&handler("lambda.handler"), Some(0)),
            None
        );
        let finding = tree.handler_finding(&handler("lambda.handler"), None);
        assert_eq!(
            finding.map(|finding| finding.code),
            Some("handler-module-not-found")
        );
    }

    #[test]
    fn folder_module_is_not_judged() {
        let mut tree = TaskTree::default();
        tree.apply_layer(0, Vec::new(), vec![directory("app", 0o755)]);
        assert_eq!(tree.handler_finding(&handler("app.handler"), None), None);
    }

    #[test]
    fn export_under_unread_layer_is_not_judged() {
        let mut tree = TaskTree::default();
        tree.apply_layer(0, Vec::new(), vec![file("lambda.js", 0o644, Some(""))]);
        assert_eq!(
            tree.handler_finding(&handler("lambda.handler"), Some(1)),
            None
        );
        assert!(tree
            .handler_finding(&handler("lambda.handler"), None)
            .is_some());
    }
}
