//! The HTTP headers MCP 2026-07-28 derives from a request body: `MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`, and `Mcp-Param-{Name}` for tool arguments a tool's
//! `inputSchema` annotates with `x-mcp-header`; values outside the header-safe set in the
//! `=?base64?…?=` form. Also the check of those annotations (a tool with an invalid one is
//! not shown to the client). Pure functions: no I/O.

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const METHOD: &str = "mcp-method";
pub const NAME: &str = "mcp-name";
const PARAM_PREFIX: &str = "mcp-param-";
const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// A header value as the spec wants it: plain when every character is visible ASCII or
/// space, with no space at either end, and it does not already look like the sentinel
/// form; otherwise `=?base64?{standard padded base64 of the UTF-8}?=`. Empty stays empty.
pub fn encode(v: &str) -> String {
    let visible = v.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let padded = v.starts_with(' ') || v.ends_with(' ');
    let looks_encoded = v.starts_with(SENTINEL_START) && v.ends_with(SENTINEL_END);
    if visible && !padded && !looks_encoded {
        v.to_string()
    } else {
        format!(
            "{SENTINEL_START}{}{SENTINEL_END}",
            base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
        )
    }
}

/// Which body field `Mcp-Name` mirrors for a method (the spec's three, plus the tasks
/// extension's `taskId`, which the TypeScript SDK's server requires).
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The standard headers for one request: version (when the body names one), method, name.
pub fn standard(version: Option<&str>, method: &str, params: Option<&Value>) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&encode(v)).ok()) {
        h.insert(PROTOCOL_VERSION, v);
    }
    if let Ok(m) = HeaderValue::from_str(&encode(method)) {
        h.insert(METHOD, m);
    }
    let name = name_field(method).and_then(|f| params?.get(f)?.as_str());
    if let Some(n) = name.and_then(|n| HeaderValue::from_str(&encode(n)).ok()) {
        h.insert(NAME, n);
    }
    h
}

/// One `x-mcp-header` annotation: the argument's path (`properties` keys) and header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decl {
    pub path: Vec<String>,
    pub header: String,
}

/// Keywords whose subschemas are not "statically reachable": an annotation under any of
/// them makes the tool invalid (the same list as the TypeScript SDK's scan).
const UNREACHABLE: &[&str] = &[
    "items",
    "prefixItems",
    "contains",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "patternProperties",
    "dependentSchemas",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "$defs",
    "definitions",
];
/// Keywords whose value maps names to subschemas.
const NAMED: &[&str] = &["patternProperties", "dependentSchemas", "$defs", "definitions"];

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `x-mcp-header` annotations of a tool's `inputSchema`, or why the tool is invalid.
pub fn scan(input_schema: &Value) -> Result<Vec<Decl>, String> {
    let mut decls = Vec::new();
    visit(input_schema, &mut Vec::new(), true, &mut decls)?;
    Ok(decls)
}

fn path_name(path: &[String]) -> String {
    if path.is_empty() {
        "<root>".into()
    } else {
        path.join(".")
    }
}

fn visit(node: &Value, path: &mut Vec<String>, reachable: bool, decls: &mut Vec<Decl>) -> Result<(), String> {
    let Some(obj) = node.as_object() else { return Ok(()) };
    if let Some(raw) = obj.get("x-mcp-header") {
        let at = path_name(path);
        if !reachable || path.is_empty() {
            return Err(format!(
                "{at}: x-mcp-header is only allowed on properties reached through `properties` keys alone"
            ));
        }
        let name = raw.as_str().unwrap_or("");
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!("{at}: x-mcp-header {raw} is not a non-empty HTTP token"));
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("string" | "integer" | "boolean") => {}
            other => {
                return Err(format!(
                    "{at}: x-mcp-header is only allowed on string, integer or boolean properties, not {}",
                    other.unwrap_or("<no type>")
                ))
            }
        }
        if let Some(prior) = decls.iter().find(|d| d.header.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "x-mcp-header `{name}` is not unique (also declared as `{}`)",
                prior.header
            ));
        }
        decls.push(Decl {
            path: path.clone(),
            header: name.to_string(),
        });
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (key, child) in props {
            path.push(key.clone());
            let r = visit(child, path, reachable, decls);
            path.pop();
            r?;
        }
    }
    for &k in UNREACHABLE {
        let Some(sub) = obj.get(k) else { continue };
        let branches: Vec<&Value> = match sub {
            Value::Array(a) => a.iter().collect(),
            Value::Object(o) if NAMED.contains(&k) => o.values().collect(),
            v => vec![v],
        };
        for b in branches {
            path.push(format!("<{k}>"));
            let r = visit(b, path, false, decls);
            path.pop();
            r?;
        }
    }
    Ok(())
}

/// The header text of an argument value: strings as they are, booleans `true`/`false`,
/// integers in decimal (within JavaScript's safe range). `None` (no header) for null,
/// absent and anything else.
pub fn param_text(v: &Value) -> Option<String> {
    const SAFE: f64 = 9_007_199_254_740_991.0;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (i.unsigned_abs() <= SAFE as u64).then(|| i.to_string())
            } else if let Some(u) = n.as_u64() {
                (u <= SAFE as u64).then(|| u.to_string())
            } else {
                let f = n.as_f64()?;
                if !f.is_finite() || f.abs() > SAFE {
                    None
                } else if f.fract() == 0.0 {
                    Some(format!("{}", f as i64))
                } else {
                    Some(f.to_string())
                }
            }
        }
        _ => None,
    }
}

/// The `Mcp-Param-*` headers for a `tools/call` with these arguments.
pub fn params(decls: &[Decl], arguments: Option<&Value>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let Some(args) = arguments else { return out };
    for d in decls {
        let value = d.path.iter().try_fold(args, |node, key| node.get(key));
        let Some(text) = value.and_then(param_text) else {
            continue;
        };
        let name = HeaderName::from_bytes(format!("{PARAM_PREFIX}{}", d.header).as_bytes());
        if let (Ok(n), Ok(v)) = (name, HeaderValue::from_str(&encode(&text))) {
            out.push((n, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoding_table() {
        let rows = [
            ("us-west1", "us-west1"),                                      // plain ASCII
            ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),            // non-ASCII
            (" padded ", "=?base64?IHBhZGRlZCA=?="),                       // leading/trailing space
            ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),               // control character
            ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="), // looks like the sentinel
            ("a\tb", "=?base64?YQli?="),                                   // TAB is a control character
            ("inner space ok", "inner space ok"),                          // inner spaces stay plain
            ("", ""),                                                      // empty is sent empty
            ("=?base64?", "=?base64?"),                                    // only the start: plain
        ];
        for (input, want) in rows {
            assert_eq!(encode(input), want, "{input:?}");
        }
    }

    #[test]
    fn standard_headers_follow_the_body() {
        let p = json!({"name": "get_weather", "uri": "x"});
        let h = standard(Some("2026-07-28"), "tools/call", Some(&p));
        assert_eq!(h[PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(h[METHOD], "tools/call");
        assert_eq!(h[NAME], "get_weather");
        let h = standard(Some("2026-07-28"), "resources/read", Some(&json!({"uri": "file:///ä"})));
        assert_eq!(h[NAME], "=?base64?ZmlsZTovLy/DpA==?=");
        let h = standard(Some("2026-07-28"), "tasks/get", Some(&json!({"taskId": "t1"})));
        assert_eq!(h[NAME], "t1");
        let h = standard(None, "tools/list", None);
        assert!(h.get(PROTOCOL_VERSION).is_none() && h.get(NAME).is_none());
    }

    #[test]
    fn annotation_scan_table() {
        let ok = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
            "q": {"type": "string"}
        }});
        assert_eq!(
            scan(&ok).unwrap(),
            vec![
                Decl {
                    path: vec!["region".into()],
                    header: "Region".into()
                },
                Decl {
                    path: vec!["opts".into(), "n".into()],
                    header: "N".into()
                },
            ]
        );
        let bad = [
            json!({"type": "object", "properties": {"a": {"type": "number", "x-mcp-header": "A"}}}), // number
            json!({"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": ""}}}),  // empty
            json!({"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}), // not a token
            json!({"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": "A\r"}}}), // CR
            json!({"type": "object", "properties": {
                "a": {"type": "string", "x-mcp-header": "X"}, "b": {"type": "string", "x-mcp-header": "x"}}}), // duplicate
            json!({"type": "object", "properties": {"a": {"type": "array",
                "items": {"type": "string", "x-mcp-header": "A"}}}}), // under items
            json!({"type": "object", "anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}), // anyOf
            json!({"type": "object", "$defs": {"d": {"type": "string", "x-mcp-header": "A"}}}), // $defs
            json!({"type": "object", "x-mcp-header": "Root"}),                                  // on the root
        ];
        for b in bad {
            assert!(scan(&b).is_err(), "{b}");
        }
        assert_eq!(scan(&json!({"type": "object"})).unwrap(), vec![]);
    }

    #[test]
    fn param_headers_mirror_present_values_only() {
        let decls = scan(&json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "flag": {"type": "boolean", "x-mcp-header": "Flag"},
            "gone": {"type": "string", "x-mcp-header": "Gone"},
            "nul": {"type": "string", "x-mcp-header": "Nul"},
            "o": {"type": "object", "properties": {"t": {"type": "string", "x-mcp-header": "T"}}}
        }}))
        .unwrap();
        let args = json!({"region": "Hello, 世界", "n": 42, "flag": false, "nul": null, "o": {"t": ""}});
        let got: Vec<(String, String)> = params(&decls, Some(&args))
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("mcp-param-region".into(), "=?base64?SGVsbG8sIOS4lueVjA==?=".into()),
                ("mcp-param-n".into(), "42".into()),
                ("mcp-param-flag".into(), "false".into()),
                ("mcp-param-t".into(), "".into()), // empty values are sent, empty
            ]
        );
        assert_eq!(param_text(&json!(42.0)).as_deref(), Some("42"));
        assert_eq!(param_text(&json!(9_007_199_254_740_993u64)), None); // beyond the safe range
    }
}
