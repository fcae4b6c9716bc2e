//! Opening the user's browser. `$BROWSER` is honoured, but launched by us with stdin and
//! stdout detached: a text browser (or anything else) in the foreground would corrupt the
//! JSON-RPC stream. The URL is always printed to stderr as well, by the caller.

use std::process::{Command, Stdio};

/// Text-mode browsers: they would need our terminal, which belongs to the MCP client.
const TEXT_BROWSERS: &[&str] = &[
    "lynx",
    "w3m",
    "links",
    "elinks",
    "links2",
    "www-browser",
    "browsh",
    "curl",
    "wget",
];

/// Whether a browser can plausibly be shown to the user here: a `$BROWSER` that is not a
/// text browser, or a desktop session (not a bare SSH login, not a Linux box without display).
pub fn can_open() -> bool {
    if let Some(var) = std::env::var_os("BROWSER").filter(|v| !v.is_empty()) {
        let var = var.to_string_lossy().into_owned();
        return var.split(if cfg!(windows) { ';' } else { ':' }).any(|c| {
            let prog = c.split_whitespace().next().unwrap_or("");
            let name = std::path::Path::new(prog)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            !name.is_empty() && !TEXT_BROWSERS.contains(&name)
        });
    }
    let display = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let ssh = std::env::var_os("SSH_CONNECTION").is_some() || std::env::var_os("SSH_TTY").is_some();
    if cfg!(target_os = "macos") || cfg!(windows) {
        return !ssh;
    }
    display
}

/// Try to open `url`; false when no browser could be started.
pub fn open(url: &str) -> bool {
    if let Some(var) = std::env::var_os("BROWSER").filter(|v| !v.is_empty()) {
        let var = var.to_string_lossy().into_owned();
        let sep = if cfg!(windows) { ';' } else { ':' };
        return var
            .split(sep)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .any(|c| spawn_detached(c, url));
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return false; // no graphical session: only the printed URL can help
    }
    let opts = webbrowser::BrowserOptions::new().with_suppress_output(true).clone();
    webbrowser::open_browser_with_options(webbrowser::Browser::Default, url, &opts).is_ok()
}

/// `cmd` may hold arguments and a `%s` placeholder for the URL (the `$BROWSER` convention).
fn spawn_detached(cmd: &str, url: &str) -> bool {
    let mut parts = cmd.split_whitespace();
    let Some(program) = parts.next() else { return false };
    let mut args: Vec<String> = parts.map(str::to_string).collect();
    if args.iter().any(|a| a.contains("%s")) {
        for a in &mut args {
            *a = a.replace("%s", url);
        }
    } else {
        args.push(url.to_string());
    }
    match Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it when it exits; we never wait on the browser.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            true
        }
        Err(e) => {
            tracing::debug!("could not start `{program}`: {e}");
            false
        }
    }
}
