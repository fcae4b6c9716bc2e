//! Token-endpoint calls that outlast a provider's hiccup. A network error, an OAuth
//! `temporarily_unavailable` or `server_error`, and HTTP 429 or 5xx (JSON or not) are tried
//! again with backoff, honouring `Retry-After`, for as long as the caller may wait; then the
//! call fails saying the provider is having trouble. Every other answer is final at once.
//! [`Recorder`] is the HTTP client handed to `openidconnect` so the status and `Retry-After`
//! of the last answer are known when its error is classified.

use super::AuthError;
use openidconnect::{http, AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How long a token request keeps trying through transient failures: a user's call is
/// waiting (MCP clients commonly give a request 60 s, and the time a login may take comes on
/// top for a refresh that fails for good), so an outage is reported well within that.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The first pause between tries; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// What an HTTP answer said besides its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The status says "later" (429 Too Many Requests, or a 5xx).
    pub fn is_transient(&self) -> bool {
        self.status == 429 || (500..600).contains(&self.status)
    }
}

/// `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// An HTTP client for `openidconnect` that notes the status and `Retry-After` of the last
/// answer (the error types it returns do not keep them).
pub struct Recorder<'a> {
    http: &'a reqwest::Client,
    last: Arc<Mutex<Option<Answer>>>,
}

impl<'a> Recorder<'a> {
    pub fn new(http: &'a reqwest::Client) -> Self {
        Recorder {
            http,
            last: Arc::default(),
        }
    }

    pub fn last(&self) -> Option<Answer> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'c> AsyncHttpClient<'c> for Recorder<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.http.call(request).await?;
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Answer {
                status: response.status().as_u16(),
                retry_after,
            });
            Ok(response)
        })
    }
}

/// Run `attempt` until it succeeds, fails for good, or `patience` is spent on transient
/// failures (see the module doc). `what` names the request in log lines.
pub async fn with_retry<T, F, Fut>(what: &str, patience: Duration, mut attempt: F) -> Result<T, AuthError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AuthError>>,
{
    let start = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let e = match attempt().await {
            Err(e) if e.is_retryable() => e,
            other => return other,
        };
        let wait = e.retry_after().unwrap_or(delay);
        if start.elapsed() + wait > patience {
            tracing::debug!(
                "{what}: giving up after {tries} tries in {:.1}s",
                start.elapsed().as_secs_f32()
            );
            return Err(e.after_tries(tries));
        }
        tracing::warn!("{what} failed ({e}); trying again in {:.1}s", wait.as_secs_f32());
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        // (header, meaning) with the reason per row.
        let rows: &[(&str, Option<Duration>)] = &[
            ("120", Some(Duration::from_secs(120))),                          // delta-seconds
            (" 3 ", Some(Duration::from_secs(3))),                            // stray spaces
            ("Wed, 21 Oct 2015 07:28:30 GMT", Some(Duration::from_secs(30))), // an HTTP date
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO)),          // a date passed
            ("-1", None),                                                     // not a delay
            ("soon", None),
        ];
        for (v, want) in rows {
            assert_eq!(parse_retry_after(v, now), *want, "{v}");
        }
    }

    fn unavailable(retry_after: Option<Duration>) -> AuthError {
        AuthError::Unavailable {
            detail: "`temporarily_unavailable`".into(),
            retry_after,
            tries: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_tried_again_until_patience_is_spent() {
        // Two hiccups, then a token: one call, no error.
        let mut n = 0;
        let r = with_retry("test", PATIENCE, || {
            n += 1;
            let k = n;
            async move {
                match k {
                    1 => Err(unavailable(None)),
                    2 => Err(AuthError::Network("reset".into())),
                    _ => Ok(k),
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);

        // Retry-After is honoured.
        let start = tokio::time::Instant::now();
        let mut n = 0;
        let r = with_retry("test", PATIENCE, || {
            n += 1;
            let k = n;
            async move {
                if k == 1 {
                    Err(unavailable(Some(Duration::from_secs(7))))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(start.elapsed().as_secs(), 7);

        // Always failing: gives up within the patience, saying how often it tried.
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = with_retry("test", Duration::from_secs(10), || async { Err(unavailable(None)) }).await;
        assert!(start.elapsed() <= Duration::from_secs(10));
        match r {
            Err(AuthError::Unavailable { tries, .. }) => assert!(tries >= 4, "{tries}"),
            other => panic!("{other:?}"),
        }

        // A Retry-After beyond the patience: at once.
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = with_retry("test", PATIENCE, || async {
            Err(unavailable(Some(Duration::from_secs(3600))))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(start.elapsed(), Duration::ZERO);

        // Final answers are not tried again.
        let mut n = 0;
        let r: Result<(), _> = with_retry("test", PATIENCE, || {
            n += 1;
            async {
                Err(AuthError::TokenRefused {
                    error: "invalid_grant".into(),
                    description: None,
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
