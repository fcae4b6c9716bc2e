//! The Node binding: the only file with `#[napi]`. Thin adapters over the core.

use napi_derive::napi;

/// Run the command line `argv` (without `node` and the script); resolves with the exit code.
#[napi]
pub async fn run(argv: Vec<String>) -> i32 {
    crate::app::run(argv).await
}

/// Ask every running proxy in this process to stop cleanly (GET stream closed, session
/// DELETEd, stdout flushed); `run` then resolves.
#[napi]
pub fn shutdown() {
    crate::shutdown::trigger();
}

/// The JS API's entry points. Each resolves with a JSON envelope, `{ value }` or
/// `{ error: { code, message, hint } }`, which index.js turns into a value or an `Error`
/// with a stable `code`.
#[napi]
pub async fn api_access_token(argv: Vec<String>) -> String {
    crate::api::envelope(crate::api::access_token(argv).await.map(serde_json::Value::String))
}

#[napi]
pub async fn api_reject_token(argv: Vec<String>, token: String) -> String {
    crate::api::envelope(
        crate::api::reject_token(argv, token)
            .await
            .map(|_| serde_json::Value::Null),
    )
}

#[napi]
pub async fn api_step_up(argv: Vec<String>, token: String, scopes: Vec<String>) -> String {
    crate::api::envelope(
        crate::api::step_up(argv, token, scopes)
            .await
            .map(serde_json::Value::Bool),
    )
}

#[napi]
pub async fn api_login(argv: Vec<String>) -> String {
    crate::api::envelope(crate::api::login(argv).await)
}

#[napi]
pub async fn api_status(argv: Vec<String>) -> String {
    crate::api::envelope(crate::api::status(argv).await)
}

#[napi]
pub async fn api_logout(argv: Vec<String>, all: bool) -> String {
    crate::api::envelope(crate::api::logout(argv, all).await)
}
