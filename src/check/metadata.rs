//! Checks on the manifest and config alone: media types, entrypoint and command, platform,
//! history, and the layer count and size limits.

use serde::Deserialize;

use crate::handler::{Handler, HandlerError};
use crate::image::MAX_LAYERS;
use crate::manifest::{Descriptor, ImageManifest};
use crate::media_type::{Family, MediaType};

use super::index::plural;
use super::{Architecture, CheckOptions, Finding};

/// Lambda's limit on a container image's uncompressed size, all layers together: 10 GiB.
pub(super) const MAX_UNCOMPRESSED_SIZE: u64 = 10 * 1024 * 1024 * 1024;

/// The entrypoint of the Lambda base images, which starts the runtime with the handler.
const LAMBDA_ENTRYPOINT: &str = "/lambda-entrypoint.sh";

/// The fields of an image config that the checks read. Deserializing ignores the rest.
#[derive(Debug, Deserialize)]
pub(super) struct ImageConfig {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    history: Option<Vec<HistoryEntry>>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
struct ContainerConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryEntry {
    #[serde(default)]
    empty_layer: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Returns the config's `rootfs.diff_ids`, one per layer in a valid image.
    pub(super) fn diff_ids(&self) -> Vec<String> {
        self.rootfs
            .as_ref()
            .map(|rootfs| rootfs.diff_ids.clone())
            .unwrap_or_default()
    }

    fn cmd(&self) -> Option<&[String]> {
        self.config.as_ref()?.cmd.as_deref()
    }

    fn entrypoint(&self) -> Option<&[String]> {
        self.config.as_ref()?.entrypoint.as_deref()
    }
}

/// Describes a layer by its 1-based position and digest, as messages name it.
pub(super) fn layer_label(index: usize, descriptor: &Descriptor) -> String {
    format!("layer {} ({})", index + 1, descriptor.digest)
}

pub(super) fn is_image_config(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::OciConfig | MediaType::DockerConfig)
}

pub(super) fn unsupported_manifest(media_type: &MediaType) -> Finding {
    Finding::error(
        "manifest-media-type-unsupported",
        format!(
            "the manifest media type `{media_type}` is not an image manifest; Lambda accepts \
             `{}` and `{}`; push a container image, not an artifact or a schema 1 manifest",
            MediaType::OciManifest,
            MediaType::DockerManifest
        ),
    )
}

pub(super) fn invalid_manifest(what: &str, error: &serde_json::Error) -> Finding {
    Finding::error(
        "manifest-invalid",
        format!(
            "the {what} is not valid: {error}; push the image again with a tool that writes OCI \
             or Docker v2 manifests"
        ),
    )
}

/// Checks the manifest's own media type, its config's and layers', and its layer count.
pub(super) fn manifest_findings(manifest: &ImageManifest) -> Vec<Finding> {
    let mut findings = Vec::new();
    match &manifest.media_type {
        None => findings.push(missing_media_type(manifest)),
        Some(media_type) if !media_type.is_manifest() => {
            findings.push(unsupported_manifest(media_type))
        }
        Some(_) => {}
    }
    if !is_image_config(&manifest.config.media_type) {
        findings.push(Finding::error(
            "config-media-type-unsupported",
            format!(
                "the config media type `{}` is not an image config; Lambda accepts `{}` and \
                 `{}`; push a container image, not an artifact",
                manifest.config.media_type,
                MediaType::OciConfig,
                MediaType::DockerConfig
            ),
        ));
    }
    if manifest.layers.is_empty() {
        findings.push(Finding::error(
            "no-layers",
            "the manifest has no layers, so it is an artifact rather than a container image; \
             push an image built FROM a Lambda base image"
                .to_string(),
        ));
    }
    for (index, descriptor) in manifest.layers.iter().enumerate() {
        findings.extend(layer_media_type_finding(index, descriptor));
    }
    findings.extend(family_finding(manifest));
    findings.extend(layer_count_finding(manifest.layers.len()));
    findings
}

fn missing_media_type(manifest: &ImageManifest) -> Finding {
    let family = manifest.config.media_type.family().unwrap_or(Family::Oci);
    Finding::error(
        "manifest-media-type-missing",
        format!(
            "the manifest has no top-level mediaType; Lambda rejects it (\"image manifest media \
             type ... is not supported\"); push it again with mediaType set to `{}`",
            MediaType::manifest_of(family)
        ),
    )
}

const GZIP_FIX: &str =
    "rebuild it with gzip, for example `docker buildx build --output type=registry,compression=gzip,force-compression=true`";

fn layer_media_type_finding(index: usize, descriptor: &Descriptor) -> Option<Finding> {
    let label = layer_label(index, descriptor);
    let media_type = &descriptor.media_type;
    let message = match media_type {
        MediaType::OciLayerGzip | MediaType::DockerLayerGzip => return None,
        _ if media_type.as_str().ends_with("zstd") => format!(
            "{label} is zstd-compressed (`{media_type}`), but Lambda accepts only gzip tar \
             layers; {GZIP_FIX}"
        ),
        MediaType::OciLayerTar => format!(
            "{label} is an uncompressed tar (`{media_type}`), but Lambda accepts only gzip tar \
             layers; {GZIP_FIX}"
        ),
        MediaType::DockerForeignLayerGzip => format!(
            "{label} is a foreign layer (`{media_type}`), which registries do not store and \
             Lambda does not accept; use a Linux base image without foreign layers"
        ),
        _ => format!(
            "{label} has media type `{media_type}`, which is not a gzip tar layer; Lambda \
             accepts only `{}` and `{}`; push a container image with gzip layers",
            MediaType::OciLayerGzip,
            MediaType::DockerLayerGzip
        ),
    };
    Some(Finding::error("layer-media-type-unsupported", message))
}

/// Reports config and layer media types of the other family than the manifest's (or, when the
/// manifest has no media type, than the config's).
fn family_finding(manifest: &ImageManifest) -> Option<Finding> {
    let manifest_family = manifest.media_type.as_ref().and_then(MediaType::family);
    let (reference, reference_type, family) = match manifest_family {
        Some(family) => ("manifest", manifest.media_type.as_ref()?, family),
        None => (
            "config",
            &manifest.config.media_type,
            manifest.config.media_type.family()?,
        ),
    };
    let differs = |media_type: &MediaType| media_type.family().is_some_and(|f| f != family);

    let mut others = Vec::new();
    let mut count = 0;
    if reference == "manifest" && differs(&manifest.config.media_type) {
        others.push("the config".to_string());
        count += 1;
    }
    let layers: Vec<String> = (manifest.layers.iter().enumerate())
        .filter(|(_, descriptor)| differs(&descriptor.media_type))
        .map(|(index, _)| (index + 1).to_string())
        .collect();
    if !layers.is_empty() {
        count += layers.len();
        others.push(format!(
            "{} {}",
            plural(layers.len(), "layer", "layers"),
            layers.join(", ")
        ));
    }
    if others.is_empty() {
        return None;
    }
    Some(Finding::error(
        "media-type-family-mixed",
        format!(
            "the media types mix the OCI and Docker families: the {reference} is {} \
             (`{reference_type}`), but {} {} {} media types; Lambda rejects a manifest whose \
             parts do not all use one family; push the image with one family throughout \
             (`docker buildx build --output type=registry,oci-mediatypes=true` writes only OCI \
             media types)",
            family_name(family),
            others.join(" and "),
            if count == 1 { "has" } else { "have" },
            family_name(other_family(family))
        ),
    ))
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Oci => "OCI",
        Family::Docker => "Docker",
    }
}

fn other_family(family: Family) -> Family {
    match family {
        Family::Oci => Family::Docker,
        Family::Docker => Family::Oci,
    }
}

/// Reports more layers than [`MAX_LAYERS`].
pub(super) fn layer_count_finding(count: usize) -> Option<Finding> {
    (count > MAX_LAYERS).then(|| {
        Finding::error(
            "too-many-layers",
            format!(
                "the manifest has {count} layers, more than the {MAX_LAYERS} that Lambda is \
                 known to accept; build on a base image with fewer layers, or squash layers"
            ),
        )
    })
}

/// Parses the config, or reports why it is not a valid image config.
pub(super) fn parse_config(bytes: &[u8], findings: &mut Vec<Finding>) -> Option<ImageConfig> {
    match serde_json::from_slice(bytes) {
        Ok(config) => Some(config),
        Err(error) => {
            findings.push(Finding::error(
                "config-invalid",
                format!(
                    "the image config is not valid: {error}; push an image whose config follows \
                     the OCI image specification"
                ),
            ));
            None
        }
    }
}

/// Checks the config's platform, entrypoint, command, history and diff_ids.
pub(super) fn config_findings(
    config: &ImageConfig,
    layer_count: usize,
    options: &CheckOptions,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(os_finding(config.os.as_deref()));
    findings.extend(architecture_finding(
        config.architecture.as_deref(),
        options.expect_arch,
    ));
    findings.extend(entrypoint_finding(config.entrypoint()));
    findings.extend(cmd_finding(config.cmd()));
    findings.extend(history_finding(config.history.as_deref(), layer_count));
    let diff_ids = config.diff_ids().len();
    if diff_ids != layer_count {
        findings.push(Finding::error(
            "diff-id-mismatch",
            format!(
                "the config's rootfs.diff_ids lists {diff_ids} {}, but the manifest has \
                 {layer_count} {}; Lambda cannot unpack such an image; rebuild it so that the \
                 config lists one diff_id per layer",
                plural(diff_ids, "diff_id", "diff_ids"),
                plural(layer_count, "layer", "layers")
            ),
        ));
    }
    findings
}

fn os_finding(os: Option<&str>) -> Option<Finding> {
    let value = match os {
        Some("linux") => return None,
        Some(os) => format!("the config's os is `{os}`"),
        None => "the config has no os".to_string(),
    };
    Some(Finding::error(
        "os-unsupported",
        format!("{value}, but Lambda runs only linux images; build the image for linux/amd64 or linux/arm64"),
    ))
}

fn architecture_finding(
    architecture: Option<&str>,
    expected: Option<Architecture>,
) -> Option<Finding> {
    let Some(actual) = architecture.and_then(|value| value.parse::<Architecture>().ok()) else {
        let value = match architecture {
            Some(value) => format!("the config's architecture is `{value}`"),
            None => "the config has no architecture".to_string(),
        };
        return Some(Finding::error(
            "architecture-unsupported",
            format!(
                "{value}, but Lambda runs only amd64 (x86_64) and arm64; build the image for \
                 linux/amd64 or linux/arm64"
            ),
        ));
    };
    let expected = expected.filter(|expected| *expected != actual)?;
    Some(Finding::error(
        "architecture-mismatch",
        format!(
            "the config's architecture is {actual}, but {expected} is expected; build the image \
             for linux/{expected}, or give the function the {} architecture",
            actual.lambda_name()
        ),
    ))
}

fn entrypoint_finding(entrypoint: Option<&[String]>) -> Option<Finding> {
    match entrypoint.and_then(<[String]>::first) {
        None => Some(Finding::error(
            "entrypoint-missing",
            format!(
                "the config has no Entrypoint, so Lambda has no program to start; build FROM a \
                 Lambda base image such as public.ecr.aws/lambda/nodejs, whose Entrypoint is \
                 `{LAMBDA_ENTRYPOINT}`, or set ENTRYPOINT [\"{LAMBDA_ENTRYPOINT}\"]"
            ),
        )),
        Some(program) if !program.starts_with('/') => Some(Finding::error(
            "entrypoint-not-absolute",
            format!(
                "the Entrypoint `{program}` is not an absolute path, which Lambda requires; set \
                 ENTRYPOINT [\"{LAMBDA_ENTRYPOINT}\"] or another absolute path"
            ),
        )),
        Some(_) => None,
    }
}

fn cmd_finding(cmd: Option<&[String]>) -> Option<Finding> {
    match cmd {
        None | Some([]) => Some(Finding::warning(
            "cmd-missing",
            "the config has no Cmd, so the function has no handler unless its ImageConfig sets \
             Command; set CMD [\"MODULE.FUNCTION\"], such as CMD [\"lambda.handler\"]"
                .to_string(),
        )),
        Some([_]) => None,
        Some(elements) => Some(Finding::error(
            "cmd-not-single",
            format!(
                "the Cmd {} has {} elements, but the Lambda base images' {LAMBDA_ENTRYPOINT} \
                 exits unless it gets exactly one argument, the handler; set CMD [{}]",
                json_list(elements),
                elements.len(),
                serde_json::Value::from(elements[0].as_str())
            ),
        )),
    }
}

fn json_list(elements: &[String]) -> String {
    serde_json::Value::from(elements.to_vec()).to_string()
}

/// Reports a history whose entries that add a layer do not pair up with the layers. A
/// missing or empty history is fine: the Lambda base images ship `"history": null`.
pub(super) fn history_finding(
    history: Option<&[HistoryEntry]>,
    layer_count: usize,
) -> Option<Finding> {
    let history = history.filter(|entries| !entries.is_empty())?;
    let adding = history
        .iter()
        .filter(|entry| entry.empty_layer != Some(true))
        .count();
    (adding != layer_count).then(|| {
        Finding::warning(
            "history-mismatch",
            format!(
                "the config's history has {adding} {} that add a layer (without empty_layer), \
                 but the manifest has {layer_count} {}; `docker history` and image scanners \
                 pair them and misreport the image; rebuild it, or give the history one entry \
                 per layer",
                plural(adding, "entry", "entries"),
                plural(layer_count, "layer", "layers")
            ),
        )
    })
}

/// Parses the handler that a one-element `Cmd` names, reporting an invalid one.
pub(super) fn handler(config: &ImageConfig, findings: &mut Vec<Finding>) -> Option<Handler> {
    let [text] = config.cmd()? else {
        return None;
    };
    match text.parse::<Handler>() {
        Ok(handler) => Some(handler),
        Err(HandlerError::Invalid { reason, .. }) => {
            findings.push(Finding::error(
                "handler-invalid",
                format!(
                    "the Cmd `{text}` is not a valid handler: {reason}; set Cmd to \
                     MODULE.FUNCTION, such as `lambda.handler` or `src/app.handler`"
                ),
            ));
            None
        }
        Err(_) => None,
    }
}

/// The uncompressed size of one layer, or its compressed size when it was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayerSize {
    Uncompressed(u64),
    Unknown { compressed: u64 },
}

/// Reports layers whose uncompressed sizes add up to more than [`MAX_UNCOMPRESSED_SIZE`].
///
/// A layer that was not read counts with its compressed size, so the total is an estimate
/// from below and the message reads "at least".
pub(super) fn size_finding(sizes: &[LayerSize]) -> Option<Finding> {
    let mut total: u64 = 0;
    let mut unread = 0;
    for size in sizes {
        total = total.saturating_add(match size {
            LayerSize::Uncompressed(size) => *size,
            LayerSize::Unknown { compressed } => {
                unread += 1;
                *compressed
            }
        });
    }
    if total <= MAX_UNCOMPRESSED_SIZE {
        return None;
    }
    let amount = if unread == 0 {
        format!("{} bytes", group_digits(total))
    } else {
        format!(
            "at least {} bytes (counting {unread} unread {} at their compressed size)",
            group_digits(total),
            plural(unread, "layer", "layers")
        )
    };
    Some(Finding::error(
        "image-too-large",
        format!(
            "the layers are {amount} uncompressed, more than the {} bytes (10 GiB) Lambda \
             accepts for a container image; leave out dev dependencies, caches and data, or \
             move large data to Amazon S3 or EFS",
            group_digits(MAX_UNCOMPRESSED_SIZE)
        ),
    ))
}

/// Formats `value` with commas between groups of three digits: `10,737,418,240`.
fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn digits_are_grouped_by_three() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(MAX_UNCOMPRESSED_SIZE), "10,737,418,240");
    }

    #[test]
    fn size_limit_allows_exactly_ten_gib() {
        let sizes = [
            LayerSize::Uncompressed(6 * GIB),
            LayerSize::Uncompressed(4 * GIB),
        ];
        assert_eq!(size_finding(&sizes), None);
    }

    #[test]
    fn size_limit_rejects_one_byte_more() {
        let sizes = [
            LayerSize::Uncompressed(6 * GIB),
            LayerSize::Uncompressed(4 * GIB + 1),
        ];
        let finding = size_finding(&sizes).expect("over the limit");
        assert_eq!(finding.severity, super::super::Severity::Error);
        assert_eq!(finding.code, "image-too-large");
        assert_eq!(
            finding.message,
            "the layers are 10,737,418,241 bytes uncompressed, more than the 10,737,418,240 \
             bytes (10 GiB) Lambda accepts for a container image; leave out dev dependencies, \
             caches and data, or move large data to Amazon S3 or EFS"
        );
    }

    #[test]
    fn size_limit_counts_unread_layers_compressed() {
        let sizes = [
            LayerSize::Unknown {
                compressed: 3 * GIB,
            },
            LayerSize::Uncompressed(8 * GIB),
        ];
        let finding = size_finding(&sizes).expect("over the limit");
        assert_eq!(
            finding.message,
            "the layers are at least 11,811,160,064 bytes (counting 1 unread layer at their \
             compressed size) uncompressed, more than the 10,737,418,240 bytes (10 GiB) Lambda \
             accepts for a container image; leave out dev dependencies, caches and data, or \
             move large data to Amazon S3 or EFS"
        );
    }

    #[test]
    fn size_sum_does_not_overflow() {
        let sizes = [
            LayerSize::Uncompressed(u64::MAX),
            LayerSize::Uncompressed(1),
        ];
        assert!(size_finding(&sizes).is_some());
    }

    #[test]
    fn layer_count_limit_is_127() {
        assert_eq!(layer_count_finding(127), None);
        let finding = layer_count_finding(128).expect("over the limit");
        assert_eq!(finding.code, "too-many-layers");
        assert_eq!(
            finding.message,
            "the manifest has 128 layers, more than the 127 that Lambda is known to accept; \
             build on a base image with fewer layers, or squash layers"
        );
    }

    fn manifest_with_layers(count: usize) -> ImageManifest {
        let layer = Descriptor::new(MediaType::OciLayerGzip, Digest::of(b"layer"), 10);
        ImageManifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            config: Descriptor::new(MediaType::OciConfig, Digest::of(b"config"), 2),
            layers: vec![layer; count],
            annotations: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn manifest_with_128_layers_is_reported() {
        let codes: Vec<&str> = manifest_findings(&manifest_with_layers(128))
            .iter()
            .map(|finding| finding.code)
            .collect();
        assert_eq!(codes, ["too-many-layers"]);
        assert!(manifest_findings(&manifest_with_layers(127)).is_empty());
    }

    #[test]
    fn manifest_without_layers_is_reported() {
        let findings = manifest_findings(&manifest_with_layers(0));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].code, "no-layers");
    }

    #[test]
    fn foreign_and_unknown_layers_are_reported() {
        let mut manifest = manifest_with_layers(2);
        manifest.media_type = Some(MediaType::DockerManifest);
        manifest.config.media_type = MediaType::DockerConfig;
        manifest.layers[0].media_type = MediaType::DockerForeignLayerGzip;
        manifest.layers[1].media_type = MediaType::parse("application/vnd.example.layer");
        let digest = Digest::of(b"layer");
        let messages: Vec<String> = manifest_findings(&manifest)
            .into_iter()
            .map(|finding| finding.message)
            .collect();
        assert_eq!(
            messages,
            [
                format!(
                    "layer 1 ({digest}) is a foreign layer \
                     (`application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`), which \
                     registries do not store and Lambda does not accept; use a Linux base image \
                     without foreign layers"
                ),
                format!(
                    "layer 2 ({digest}) has media type `application/vnd.example.layer`, which is \
                     not a gzip tar layer; Lambda accepts only \
                     `application/vnd.oci.image.layer.v1.tar+gzip` and \
                     `application/vnd.docker.image.rootfs.diff.tar.gzip`; push a container image \
                     with gzip layers"
                ),
            ]
        );
    }

    #[test]
    fn artifact_config_is_reported() {
        let mut manifest = manifest_with_layers(1);
        manifest.config.media_type = MediaType::parse("application/vnd.oci.empty.v1+json");
        let findings = manifest_findings(&manifest);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].code, "config-media-type-unsupported");
        assert_eq!(
            findings[0].message,
            "the config media type `application/vnd.oci.empty.v1+json` is not an image config; \
             Lambda accepts `application/vnd.oci.image.config.v1+json` and \
             `application/vnd.docker.container.image.v1+json`; push a container image, not an \
             artifact"
        );
    }

    fn config(json: &str) -> ImageConfig {
        serde_json::from_str(json).unwrap()
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|finding| finding.code).collect()
    }

    const VALID: &str = r#"{"architecture":"amd64","os":"linux",
        "config":{"Entrypoint":["/lambda-entrypoint.sh"],"Cmd":["lambda.handler"]},
        "rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#;

    #[test]
    fn valid_config_has_no_findings() {
        let findings = config_findings(&config(VALID), 1, &CheckOptions::default());
        assert_eq!(findings, []);
    }

    #[test]
    fn config_without_platform_is_reported() {
        let config =
            config(r#"{"config":{"Entrypoint":["/e"],"Cmd":["a.b"]},"rootfs":{"diff_ids":["x"]}}"#);
        let findings = config_findings(&config, 1, &CheckOptions::default());
        assert_eq!(
            codes(&findings),
            ["os-unsupported", "architecture-unsupported"]
        );
        assert_eq!(
            findings[0].message,
            "the config has no os, but Lambda runs only linux images; build the image for \
             linux/amd64 or linux/arm64"
        );
        assert_eq!(
            findings[1].message,
            "the config has no architecture, but Lambda runs only amd64 (x86_64) and arm64; \
             build the image for linux/amd64 or linux/arm64"
        );
    }

    #[test]
    fn windows_s390x_config_is_reported() {
        let json = VALID
            .replace("\"amd64\"", "\"s390x\"")
            .replace("\"linux\"", "\"windows\"");
        let findings = config_findings(&config(&json), 1, &CheckOptions::default());
        assert_eq!(
            findings[0].message,
            "the config's os is `windows`, but Lambda runs only linux images; build the image \
             for linux/amd64 or linux/arm64"
        );
        assert_eq!(
            findings[1].message,
            "the config's architecture is `s390x`, but Lambda runs only amd64 (x86_64) and \
             arm64; build the image for linux/amd64 or linux/arm64"
        );
    }

    #[test]
    fn missing_cmd_is_a_warning() {
        let json = VALID.replace(r#","Cmd":["lambda.handler"]"#, "");
        let findings = config_findings(&config(&json), 1, &CheckOptions::default());
        assert_eq!(codes(&findings), ["cmd-missing"]);
        assert_eq!(findings[0].severity, super::super::Severity::Warning);
    }

    #[test]
    fn null_history_and_empty_layers_are_accepted() {
        assert_eq!(history_finding(None, 3), None);
        assert_eq!(history_finding(Some(&[]), 3), None);
        let history: Vec<HistoryEntry> = serde_json::from_str(
            r#"[{"empty_layer":true},{"created_by":"a"},{"empty_layer":false}]"#,
        )
        .unwrap();
        assert_eq!(history_finding(Some(&history), 2), None);
        assert!(history_finding(Some(&history), 3).is_some());
    }

    #[test]
    fn invalid_handler_in_cmd_is_reported() {
        let json = VALID.replace("lambda.handler", "lambda");
        let mut findings = Vec::new();
        assert_eq!(handler(&config(&json), &mut findings), None);
        assert_eq!(codes(&findings), ["handler-invalid"]);
        assert_eq!(
            findings[0].message,
            "the Cmd `lambda` is not a valid handler: `lambda` has no `.` between the module \
             name and the function name; set Cmd to MODULE.FUNCTION, such as `lambda.handler` \
             or `src/app.handler`"
        );
    }
}
