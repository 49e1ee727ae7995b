//! Events to invoke a handler with: the default Lambda Function URL request, and events read
//! from JSON.

use serde_json::{json, Map, Value};

use super::InvokeError;

/// The Function URL's host; Lambda names it `<url-id>.lambda-url.<region>.on.aws`.
const URL_ID: &str = "abcdefghijklmnopqrstuvwxyz012345";
const DOMAIN_NAME: &str = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws";
const SOURCE_IP: &str = "203.0.113.10";
const USER_AGENT: &str = "curl/8.5.0";
/// 2025-01-01T00:00:00Z, the fixed request time, in the two forms the event carries.
const REQUEST_TIME: &str = "01/Jan/2025:00:00:00 +0000";
const REQUEST_TIME_EPOCH_MS: u64 = 1_735_689_600_000;
const REQUEST_ID: &str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef";

/// Returns the event that `invoke` sends by default: a Lambda Function URL request for `GET /`.
pub fn default_event() -> Value {
    function_url_event("GET", "/")
}

/// Returns a Lambda Function URL event (payload format version 2.0) for a request without a
/// body, with fixed headers, source address and time, as an anonymous caller (auth type NONE)
/// would send it. `path` may carry a query string, such as `/items?limit=2`.
pub fn function_url_event(method: &str, path: &str) -> Value {
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {
            "host": DOMAIN_NAME,
            "user-agent": USER_AGENT,
            "accept": "*/*",
            "x-amzn-trace-id": "Root=1-67748b00-0123456789abcdef01234567",
            "x-forwarded-for": SOURCE_IP,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_ID,
            "domainName": DOMAIN_NAME,
            "domainPrefix": URL_ID,
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": USER_AGENT,
            },
            "requestId": REQUEST_ID,
            "routeKey": "$default",
            "stage": "$default",
            "time": REQUEST_TIME,
            "timeEpoch": REQUEST_TIME_EPOCH_MS,
        },
        "isBase64Encoded": false,
    });
    // Function URLs leave the field out when there is no query string.
    if !raw_query.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters(raw_query));
    }
    event
}

/// Splits a query string into parameters; as in Function URL events, a repeated name gets its
/// values joined with commas. Percent-escapes are kept as written.
fn query_parameters(query: &str) -> Map<String, Value> {
    let mut parameters = Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match parameters.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                parameters.insert(name.to_string(), Value::String(value.to_string()));
            }
        }
    }
    parameters
}

/// Parses an event document, such as the contents of `--event FILE`. `source_name` names the
/// input in the error, such as the file's path or `stdin`.
pub fn parse_event(bytes: &[u8], source_name: &str) -> Result<Value, InvokeError> {
    serde_json::from_slice(bytes).map_err(|error| InvokeError::InvalidEvent {
        source_name: source_name.to_string(),
        reason: format!("line {}, column {}: {error}", error.line(), error.column()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_event_is_function_url_get_root() {
        let event = default_event();
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/");
        assert_eq!(event["requestContext"]["http"]["method"], "GET");
        assert!(event.get("queryStringParameters").is_none());
        assert!(event.get("body").is_none());
    }

    #[test]
    fn query_string_becomes_parameters() {
        let event = function_url_event("GET", "/items?limit=2&tag=a&tag=b&flag");
        assert_eq!(event["rawPath"], "/items");
        assert_eq!(event["rawQueryString"], "limit=2&tag=a&tag=b&flag");
        assert_eq!(
            event["queryStringParameters"],
            json!({"limit": "2", "tag": "a,b", "flag": ""})
        );
    }

    #[test]
    fn invalid_event_names_source_and_position() {
        let error = parse_event(b"{\"a\": }", "event.json").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("event.json"), "{message}");
        assert!(message.contains("line 1, column 7"), "{message}");
    }
}
