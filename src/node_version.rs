//! Choosing the Node.js major, and so the default base image, from package.json's
//! `engines.node` range.

/// Node.js majors that AWS Lambda supports: nodejs22.x and nodejs24.x. nodejs20.x left
/// standard support on 2026-04-30 (AWS Lambda runtimes page, as listed in December 2026).
pub const LAMBDA_NODE_MAJORS: &[u64] = &[22, 24];

/// The repository of the AWS Lambda Node.js base images, tagged by major.
pub const LAMBDA_NODE_BASE: &str = "public.ecr.aws/lambda/nodejs";

type Version = (u64, u64, u64);

/// A half-open interval `[lower, upper)` of versions; `None` is unbounded.
#[derive(Debug, Clone, Copy)]
struct Interval {
    lower: Version,
    upper: Option<Version>,
}

/// The major chosen, and a warning when `engines.node` could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MajorChoice {
    pub major: u64,
    pub warning: Option<String>,
}

/// Picks the newest Lambda-supported major that `engines_node` admits, or the newest
/// supported one (with a warning) when the range admits none or cannot be read.
pub fn choose_major(engines_node: Option<&str>) -> MajorChoice {
    let newest = *LAMBDA_NODE_MAJORS.last().expect("the list is not empty");
    let Some(range) = engines_node else {
        return MajorChoice {
            major: newest,
            warning: None,
        };
    };
    let Some(sets) = parse_range(range) else {
        return MajorChoice {
            major: newest,
            warning: Some(format!(
                "cannot read engines.node `{range}`; using Node.js {newest}"
            )),
        };
    };
    let admitted = LAMBDA_NODE_MAJORS
        .iter()
        .rev()
        .find(|major| sets.iter().any(|set| admits_major(set, **major)));
    match admitted {
        Some(major) => MajorChoice { major: *major, warning: None },
        None => MajorChoice {
            major: newest,
            warning: Some(format!(
                "engines.node `{range}` admits no Node.js major that Lambda supports ({}); using Node.js {newest}",
                LAMBDA_NODE_MAJORS.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )),
        },
    }
}

/// Reports whether the `engines.node` range admits some version of `major`; `None` when the
/// range cannot be read.
pub fn range_admits_major(range: &str, major: u64) -> Option<bool> {
    let sets = parse_range(range)?;
    Some(sets.iter().any(|set| admits_major(set, major)))
}

/// Reads the Node.js major from a Lambda Node.js base image tag such as `22`, `22.2024.11.01`
/// or `24-arm64`; `None` for tags that do not start with a number.
pub fn major_from_tag(tag: &str) -> Option<u64> {
    let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn admits_major(set: &[Interval], major: u64) -> bool {
    let mut lower = (major, 0, 0);
    let mut upper = (major.saturating_add(1), 0, 0);
    for interval in set {
        lower = lower.max(interval.lower);
        if let Some(bound) = interval.upper {
            upper = upper.min(bound);
        }
    }
    lower < upper
}

/// Parses an npm semver range into alternatives (`||`), each a list of intervals to intersect.
fn parse_range(range: &str) -> Option<Vec<Vec<Interval>>> {
    range
        .split("||")
        .map(|alternative| {
            let alternative = alternative.trim();
            if let Some((from, to)) = alternative.split_once(" - ") {
                let (lower, _) = parse_partial(from.trim())?;
                let (upper_version, parts) = parse_partial(to.trim())?;
                return Some(vec![Interval {
                    lower,
                    upper: Some(next_after(upper_version, parts)),
                }]);
            }
            let tokens = join_operators(alternative);
            tokens.iter().map(|token| parse_comparator(token)).collect()
        })
        .collect()
}

/// Splits on whitespace, reattaching an operator written apart from its version (`>= 20`).
fn join_operators(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match tokens.last_mut() {
            Some(last) if last.chars().all(|c| "<>=~^".contains(c)) => last.push_str(word),
            _ => tokens.push(word.to_string()),
        }
    }
    tokens
}

fn parse_comparator(token: &str) -> Option<Interval> {
    let operator_length = token
        .find(|c: char| !"<>=~^".contains(c))
        .unwrap_or(token.len());
    let (operator, version) = token.split_at(operator_length);
    let (version, parts) = parse_partial(version)?;
    let any = Interval {
        lower: (0, 0, 0),
        upper: None,
    };
    if parts == 0 {
        return match operator {
            "" | "=" | ">=" | "<=" | "^" | "~" => Some(any),
            _ => None,
        };
    }
    let next = next_after(version, parts);
    Some(match operator {
        "" | "=" => Interval {
            lower: version,
            upper: Some(next),
        },
        ">=" => Interval {
            lower: version,
            upper: None,
        },
        ">" => Interval {
            lower: next,
            upper: None,
        },
        "<" => Interval {
            lower: (0, 0, 0),
            upper: Some(version),
        },
        "<=" => Interval {
            lower: (0, 0, 0),
            upper: Some(next),
        },
        "^" if version.0 > 0 || parts == 1 => Interval {
            lower: version,
            upper: Some((version.0.saturating_add(1), 0, 0)),
        },
        "^" if version.1 > 0 || parts == 2 => Interval {
            lower: version,
            upper: Some((0, version.1.saturating_add(1), 0)),
        },
        "^" => Interval {
            lower: version,
            upper: Some(next),
        },
        "~" if parts == 1 => Interval {
            lower: version,
            upper: Some((version.0.saturating_add(1), 0, 0)),
        },
        "~" => Interval {
            lower: version,
            upper: Some((version.0, version.1.saturating_add(1), 0)),
        },
        _ => return None,
    })
}

/// Parses `1`, `1.2`, `1.2.3`, `v1.x`, `1.2.*`; returns the version padded with zeros and the
/// number of numeric parts given.
fn parse_partial(text: &str) -> Option<(Version, usize)> {
    let text = text.trim_start_matches('v');
    if text.is_empty() {
        return Some(((0, 0, 0), 0));
    }
    // Pre-release and build suffixes do not change which major a version belongs to.
    let text = text.split(['-', '+']).next()?;
    let mut numbers = Vec::new();
    for part in text.split('.') {
        if matches!(part, "x" | "X" | "*") {
            break;
        }
        numbers.push(part.parse::<u64>().ok()?);
    }
    if numbers.len() > 3 {
        return None;
    }
    let get = |i: usize| numbers.get(i).copied().unwrap_or(0);
    Some(((get(0), get(1), get(2)), numbers.len()))
}

/// The first version after everything that a partial version with `parts` parts covers.
fn next_after(version: Version, parts: usize) -> Version {
    match parts {
        0 => (u64::MAX, 0, 0),
        1 => (version.0.saturating_add(1), 0, 0),
        2 => (version.0, version.1.saturating_add(1), 0),
        _ => (version.0, version.1, version.2.saturating_add(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn major(range: &str) -> u64 {
        choose_major(Some(range)).major
    }

    #[test]
    fn ranges_pick_the_newest_admitted_major() {
        assert_eq!(major("22"), 22);
        assert_eq!(major("22.x"), 22);
        assert_eq!(major("^22.3.0"), 22);
        assert_eq!(major("~22.1"), 22);
        assert_eq!(major(">=20"), 24);
        assert_eq!(major(">=20 <23"), 22);
        assert_eq!(major(">= 20 < 23"), 22);
        assert_eq!(major("20 || 22"), 22);
        assert_eq!(major("22 - 23"), 22);
        assert_eq!(major("<=22"), 22);
        assert_eq!(major(">22"), 24);
        assert_eq!(major("*"), 24);
        assert_eq!(major("v24.1.0"), 24);
    }

    #[test]
    fn base_tags_give_their_major() {
        assert_eq!(major_from_tag("22"), Some(22));
        assert_eq!(major_from_tag("24.2025.11.20"), Some(24));
        assert_eq!(major_from_tag("latest"), None);
        assert_eq!(range_admits_major(">=22", 20), Some(false));
        assert_eq!(range_admits_major("20 || 22", 22), Some(true));
        assert_eq!(range_admits_major("banana", 22), None);
    }

    #[test]
    fn huge_versions_do_not_overflow() {
        assert_eq!(choose_major(Some("18446744073709551615")).major, 24);
        assert_eq!(range_admits_major("^18446744073709551615", 22), Some(false));
        assert_eq!(major_from_tag("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn no_engines_means_newest_without_warning() {
        assert_eq!(
            choose_major(None),
            MajorChoice {
                major: 24,
                warning: None
            }
        );
    }

    #[test]
    fn unsupported_or_unreadable_ranges_warn() {
        let old = choose_major(Some("18.x"));
        assert_eq!(old.major, 24);
        assert!(old.warning.unwrap().contains("admits no Node.js major"));
        let garbage = choose_major(Some("latest please"));
        assert!(garbage
            .warning
            .unwrap()
            .contains("cannot read engines.node"));
    }
}
