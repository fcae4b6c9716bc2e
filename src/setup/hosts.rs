//! Ready-to-paste configuration for five MCP hosts (Claude Desktop, Cursor, Windsurf, VS Code,
//! Claude Code) with exactly the options `setup` was given: flags stay flags, variables stay
//! variables, and secrets are written as references to a variable in each host's own syntax,
//! never inline.

use serde_json::{json, Map, Value};

/// The variables the command line reads (cli.rs), in the order they are printed.
const VARIABLES: &[&str] = &[
    "MCP_BACKEND_URL",
    "OIDC_ISSUER_URL",
    "OIDC_CLIENT_ID",
    "OIDC_CLIENT_SECRET",
    "OIDC_SCOPES",
    "OIDC_REDIRECT_URL",
    "MCP_PROXY_AUTH_TIMEOUT",
    "MCP_PROXY_DEVICE_CODE",
    "MCP_PROXY_CLIENT_CREDENTIALS",
    "MCP_PROXY_RESOURCE",
    "MCP_PROXY_CACHE_DIR",
    "MCP_PROXY_TOKEN_STORE",
    "MCP_PROXY_TRANSPORT",
    "MCP_PROXY_ALLOW_HTTP",
    "MCP_PROXY_CA_FILE",
    "MCP_PROXY_REQUEST_TIMEOUT",
    "MCP_PROXY_MAX_MESSAGE_BYTES",
    "MCP_PROXY_DEBUG",
];

/// Header names whose values are credentials.
fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["authorization", "cookie", "key", "token", "secret", "password"]
        .iter()
        .any(|s| n.contains(s))
}

#[derive(Debug, PartialEq)]
enum Var {
    Plain(String),
    /// A secret: only its name is ever printed.
    Secret,
}

/// How a host starts the proxy: `npx -y authful-mcp-proxy <args>` with `env`.
#[derive(Debug)]
pub struct Launch {
    args: Vec<String>,
    env: Vec<(String, Var)>,
}

impl Launch {
    /// From the `setup` command line (without the program name) and the environment.
    pub fn from_argv(argv: &[String], lookup: &dyn Fn(&str) -> Option<String>) -> Launch {
        let mut args = Vec::new();
        let mut env: Vec<(String, Var)> = Vec::new();
        let mut it = argv.iter().peekable();
        let mut command_seen = false;
        while let Some(a) = it.next() {
            match a.as_str() {
                "setup" if !command_seen => command_seen = true,
                "--json" => {}
                "--oidc-client-secret" => {
                    it.next();
                    env.push(("OIDC_CLIENT_SECRET".into(), Var::Secret));
                }
                s if s.starts_with("--oidc-client-secret=") => env.push(("OIDC_CLIENT_SECRET".into(), Var::Secret)),
                "-H" | "--header" => {
                    if let Some(h) = it.next() {
                        args.push(a.clone());
                        args.push(header(h, &mut env));
                    }
                }
                s if s.starts_with("--header=") => args.push(format!("--header={}", header(&s[9..], &mut env))),
                s if s.starts_with("-H") && s.len() > 2 => args.push(format!("-H{}", header(&s[2..], &mut env))),
                _ => args.push(a.clone()),
            }
        }
        for name in VARIABLES {
            if env.iter().any(|(n, _)| n == name) {
                continue;
            }
            if let Some(v) = lookup(name).filter(|v| !v.trim().is_empty()) {
                let var = if *name == "OIDC_CLIENT_SECRET" {
                    Var::Secret
                } else {
                    Var::Plain(v)
                };
                env.push((name.to_string(), var));
            }
        }
        Launch { args, env }
    }

    fn args(&self) -> Vec<String> {
        let mut all = vec!["-y".to_string(), "authful-mcp-proxy".to_string()];
        all.extend(self.args.iter().cloned());
        all
    }

    /// The `env` object, with secrets written by `reference`.
    fn env_json(&self, reference: &dyn Fn(&str) -> Option<String>) -> Map<String, Value> {
        let mut m = Map::new();
        for (name, var) in &self.env {
            match var {
                Var::Plain(v) => {
                    m.insert(name.clone(), Value::String(v.clone()));
                }
                Var::Secret => {
                    if let Some(r) = reference(name) {
                        m.insert(name.clone(), Value::String(r));
                    }
                }
            }
        }
        m
    }

    fn secrets(&self) -> Vec<&str> {
        self.env
            .iter()
            .filter(|(_, v)| *v == Var::Secret)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// A literal credential in a header becomes `${VARIABLE}` (the proxy expands it) plus a secret.
fn header(raw: &str, env: &mut Vec<(String, Var)>) -> String {
    let Some((name, value)) = raw.split_once(':') else {
        return raw.to_string();
    };
    if value.contains("${") || !sensitive_header(name.trim()) {
        return raw.to_string();
    }
    let var: String = format!("MCP_HEADER_{}", name.trim())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    env.push((var.clone(), Var::Secret));
    format!("{}: ${{{var}}}", name.trim())
}

/// A key for the server in the hosts' configuration: its host name, with dashes.
pub fn server_name(backend: &url::Url) -> String {
    let host = backend.host_str().unwrap_or("mcp").trim_matches(['[', ']']);
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    match backend.port() {
        Some(p) => format!("{name}-{p}"),
        None => name,
    }
}

pub struct HostConfig {
    host: &'static str,
    /// Where it goes.
    place: &'static str,
    /// A JSON document to merge, or a shell command.
    body: Value,
    command: Option<String>,
    note: Option<String>,
}

impl HostConfig {
    pub fn to_json(&self) -> Value {
        json!({
            "host": self.host,
            "where": self.place,
            "config": self.command.as_ref().map(|c| Value::String(c.clone())).unwrap_or_else(|| self.body.clone()),
            "note": self.note,
        })
    }

    pub fn to_text(&self) -> String {
        let body = match &self.command {
            Some(c) => c.clone(),
            None => format!("{:#}", self.body),
        };
        let mut t = format!("\n== {} ({}):\n{body}\n", self.host, self.place);
        if let Some(n) = &self.note {
            t.push_str(&format!("note: {n}\n"));
        }
        t
    }
}

/// The five configurations.
pub fn render(name: &str, launch: &Launch) -> Vec<HostConfig> {
    let args = launch.args();
    let secrets = launch.secrets();
    let server = |reference: &dyn Fn(&str) -> Option<String>, extra: Option<(&str, &str)>| {
        let mut s = Map::new();
        if let Some((k, v)) = extra {
            s.insert(k.into(), Value::String(v.into()));
        }
        s.insert("command".into(), json!("npx"));
        s.insert("args".into(), json!(args));
        let env = launch.env_json(reference);
        if !env.is_empty() {
            s.insert("env".into(), Value::Object(env));
        }
        Value::Object(s)
    };
    let env_ref = |n: &str| Some(format!("${{env:{n}}}"));
    let input_id = |n: &str| n.to_ascii_lowercase().replace('_', "-");
    let desktop_note = (!secrets.is_empty()).then(|| {
        format!(
            "Claude Desktop cannot refer to a variable in its configuration: set {} in the environment Claude Desktop is started from (it passes it on)",
            secrets.join(", ")
        )
    });
    let mut vscode = json!({ "servers": { name: server(&|n| Some(format!("${{input:{}}}", input_id(n))), Some(("type", "stdio"))) } });
    if !secrets.is_empty() {
        let inputs: Vec<Value> = secrets
            .iter()
            .map(|n| json!({ "type": "promptString", "id": input_id(n), "description": n, "password": true }))
            .collect();
        vscode["inputs"] = Value::Array(inputs);
    }
    let claude_code = server(&|n| Some(format!("${{{n}}}")), Some(("type", "stdio")));
    let claude_code_cmd = format!(
        "claude mcp add-json --scope project {name} '{}'",
        claude_code.to_string().replace('\'', r"'\''")
    );
    vec![
        HostConfig {
            host: "Claude Desktop",
            place: "claude_desktop_config.json, under \"mcpServers\"",
            body: json!({ "mcpServers": { name: server(&|_| None, None) } }),
            command: None,
            note: desktop_note,
        },
        HostConfig {
            host: "Cursor",
            place: "~/.cursor/mcp.json or .cursor/mcp.json",
            body: json!({ "mcpServers": { name: server(&env_ref, None) } }),
            command: None,
            note: None,
        },
        HostConfig {
            host: "Windsurf",
            place: "~/.codeium/windsurf/mcp_config.json",
            body: json!({ "mcpServers": { name: server(&env_ref, None) } }),
            command: None,
            note: None,
        },
        HostConfig {
            host: "VS Code",
            place: ".vscode/mcp.json",
            body: vscode,
            command: None,
            note: None,
        },
        HostConfig {
            host: "Claude Code",
            place: "run in your project; it writes .mcp.json, where `${VAR}` is read from the environment",
            body: claude_code,
            command: Some(claude_code_cmd),
            note: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(argv: &[&str], vars: &[(&str, &str)]) -> Launch {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_argv(&argv, &move |n| {
            vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn secrets_are_references_and_other_options_stay_as_given() {
        let l = launch(
            &[
                "setup",
                "--json",
                "--oidc-client-secret",
                "s3cr3t-value",
                "--token-store",
                "keychain",
                "-H",
                "X-Api-Key: k3y-value",
                "-H",
                "X-Trace: 1",
                "https://mcp.example/mcp",
            ],
            &[
                ("OIDC_ISSUER_URL", "https://idp.example"),
                ("OIDC_CLIENT_SECRET", "env-s3cr3t"),
            ],
        );
        assert_eq!(
            l.args,
            [
                "--token-store",
                "keychain",
                "-H",
                "X-Api-Key: ${MCP_HEADER_X_API_KEY}",
                "-H",
                "X-Trace: 1",
                "https://mcp.example/mcp"
            ]
        );
        let all: String = render("mcp-example", &l)
            .iter()
            .map(|c| c.to_text() + &c.to_json().to_string())
            .collect();
        for secret in ["s3cr3t-value", "k3y-value", "env-s3cr3t"] {
            assert!(!all.contains(secret), "{secret} must never be printed");
        }
        assert!(
            all.contains("${env:OIDC_CLIENT_SECRET}"),
            "Cursor and Windsurf refer to the variable"
        );
        assert!(all.contains("${input:oidc-client-secret}"), "VS Code prompts for it");
        assert!(
            all.contains("${OIDC_CLIENT_SECRET}"),
            "Claude Code expands it from the environment"
        );
        assert!(all.contains("https://idp.example"), "plain variables are kept");
    }

    #[test]
    fn server_names_come_from_the_host() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(server_name(&u("https://mcp.example.com/mcp")), "mcp-example-com");
        assert_eq!(server_name(&u("http://127.0.0.1:8123/mcp")), "127-0-0-1-8123");
    }
}
