//! One HTTP exchange with the Store or the token endpoint, the same way for
//! every request (SPEC §4, §5): send, count the answer in
//! `msfb_api_requests_total` and its latency, read at most
//! [`MAX_BODY_BYTES`] of the body, and classify what came back. Get seat,
//! the listing pages and the token request all go through [`exchange`], so
//! a timeout, a reset or an oversized body means the same thing for each.
//!
//! Nothing here retries, and no description carries the URL: a hashed user
//! label must not be undone by a log line.

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::wire::ItemType;
use super::{MAX_BODY_BYTES, MAX_RETRY_AFTER};
use crate::config::NonJson404;
use crate::targets::ErrorCode;

/// A request that gave no usable answer.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The `code` label.
    pub code: ErrorCode,
    /// `Retry-After`, capped at [`MAX_RETRY_AFTER`], when the Store sent one.
    pub retry_after: Option<Duration>,
    /// A short description for logs and the status page; never contains the
    /// URL, a token or a body.
    pub detail: String,
}

/// What one request came back with, read as SPEC §5 reads it.
#[derive(Debug)]
pub enum Answer<T> {
    /// A 2xx whose body decoded.
    Found(T),
    /// A 404, with the item type its body names.
    NotFound(ItemType),
    /// Anything else: inconclusive.
    Failed(Failure),
}

/// An answered request: its status, its `Retry-After`, and its body read
/// within [`MAX_BODY_BYTES`] (or why it could not be).
pub(crate) struct Exchanged {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Result<Bytes, Failure>,
}

/// Sends `request` and reads its answer. `count` is called once, with the
/// status (or the failure's class) and the seconds from sending to the end
/// of the body, so the latency includes reading it.
///
/// # Errors
/// The failure when no answer came (timeout, refused, reset).
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    count: impl FnOnce(ErrorCode, f64),
) -> Result<Exchanged, Failure> {
    let started = Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let failure = transport_failure(&e);
            count(failure.code, started.elapsed().as_secs_f64());
            return Err(failure);
        }
    };
    let status = response.status().as_u16();
    let retry_after = parse_retry_after(response.headers(), SystemTime::now());
    let body = read_body(response).await;
    count(ErrorCode::Status(status), started.elapsed().as_secs_f64());
    Ok(Exchanged {
        status,
        retry_after,
        body,
    })
}

/// Reads an answer the same way for every Store request (SPEC §4, §5): a
/// 2xx body that does not decode is `decode`, an unreadable one keeps the
/// body read's failure; a 404 says "not found" when its body is a JSON
/// object (the item type is a detail, `unknown` when it names none) — any
/// other 404 is not the Store's and a failure (`not_store`, SPEC §17)
/// unless `non_json_404` makes it conclusive; any other status is a failure
/// carrying its `Retry-After`.
pub(crate) fn interpret<T>(
    sent: Result<Exchanged, Failure>,
    non_json_404: NonJson404,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Answer<T> {
    let Exchanged {
        status,
        retry_after,
        body,
    } = match sent {
        Ok(exchanged) => exchanged,
        Err(failure) => return Answer::Failed(failure),
    };
    match (status, body) {
        (200..=299, Ok(body)) => match decode(&body) {
            Ok(value) => Answer::Found(value),
            Err(detail) => Answer::Failed(Failure {
                code: ErrorCode::Decode,
                retry_after: None,
                detail,
            }),
        },
        (200..=299, Err(failure)) => Answer::Failed(failure),
        (404, body) => match body.ok().and_then(|b| ItemType::from_store_404(&b)) {
            Some(item) => Answer::NotFound(item),
            None if non_json_404 == NonJson404::Conclusive => Answer::NotFound(ItemType::Unknown),
            None => Answer::Failed(Failure {
                code: ErrorCode::Status(404),
                retry_after: None,
                detail: "HTTP 404 whose body is not the Store's JSON (a proxy, or a wrong \
                         base_url?)"
                    .to_owned(),
            }),
        },
        (status, _) => Answer::Failed(Failure {
            code: ErrorCode::Status(status),
            retry_after,
            detail: format!("HTTP {status}"),
        }),
    }
}

/// Describes a transport failure by class, without the URL.
fn transport_failure(e: &reqwest::Error) -> Failure {
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else if e.is_body() || e.is_decode() {
        ErrorCode::Body
    } else {
        ErrorCode::Connect
    };
    Failure {
        code,
        retry_after: None,
        detail: describe(e),
    }
}

/// The error chain of a reqwest error, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "request timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads at most [`MAX_BODY_BYTES`]; a longer body is an error and the rest
/// is left unread (the connection is dropped rather than drained).
async fn read_body(mut response: reqwest::Response) -> Result<Bytes, Failure> {
    let too_large = || Failure {
        code: ErrorCode::Body,
        retry_after: None,
        detail: format!("response body is larger than {MAX_BODY_BYTES} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    // A Store answer nearly always comes in one chunk: keep it as it is,
    // and copy into a buffer only when a second one follows.
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let held = joined.as_ref().map_or(first.len(), BytesMut::len);
                if held + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                match &mut joined {
                    Some(buf) => buf.extend_from_slice(&chunk),
                    None if first.is_empty() => first = chunk,
                    None => {
                        let mut buf = BytesMut::with_capacity(first.len() + chunk.len());
                        buf.extend_from_slice(&first);
                        buf.extend_from_slice(&chunk);
                        joined = Some(buf);
                    }
                }
            }
            Ok(None) => return Ok(joined.map_or(first, BytesMut::freeze)),
            Err(e) => {
                let mut failure = transport_failure(&e);
                if failure.code == ErrorCode::Connect {
                    failure.code = ErrorCode::Body;
                }
                return Err(failure);
            }
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// The body of `answer` (raw HTTP) as [`read_body`] reads it.
    async fn read_answer(answer: Vec<u8>) -> Result<Bytes, Failure> {
        let (url, _) = crate::store::canned_server(answer).await;
        read_body(reqwest::get(url).await.unwrap()).await
    }

    /// A chunked answer of `chunks`: each becomes a chunk of the body.
    fn chunked(chunks: &[&[u8]]) -> Vec<u8> {
        let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for chunk in chunks {
            answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            answer.extend_from_slice(chunk);
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"0\r\n\r\n");
        answer
    }

    #[tokio::test]
    async fn bodies_in_any_number_of_chunks_are_read_whole_up_to_the_limit() {
        let body = read_answer(chunked(&[b"{\"a\":"])).await.unwrap();
        assert_eq!(&body[..], b"{\"a\":");
        let body = read_answer(chunked(&[b"{\"a\"", b":", b"1}"]))
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        let empty = read_answer(chunked(&[])).await.unwrap();
        assert!(empty.is_empty());
        let half = vec![b'x'; MAX_BODY_BYTES / 2];
        let whole = read_answer(chunked(&[&half, &half])).await.unwrap();
        assert_eq!(whole.len(), MAX_BODY_BYTES);
        let over = read_answer(chunked(&[&half, &half, b"x"]))
            .await
            .unwrap_err();
        assert_eq!(over.code, ErrorCode::Body);
        let over = read_answer(chunked(&[&half, b"x", &half]))
            .await
            .unwrap_err();
        assert_eq!(over.code, ErrorCode::Body);
    }

    #[test]
    fn retry_after_seconds_dates_and_cap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(parse_retry_after(&h, now), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h, now), None);
    }

    fn exchanged(status: u16, body: &'static [u8]) -> Result<Exchanged, Failure> {
        Ok(Exchanged {
            status,
            retry_after: Some(Duration::from_secs(3)),
            body: Ok(Bytes::from_static(body)),
        })
    }

    fn decode_ok(b: &[u8]) -> Result<usize, String> {
        if b == b"ok" {
            Ok(b.len())
        } else {
            Err("bad".into())
        }
    }

    fn interpret_default<T>(
        sent: Result<Exchanged, Failure>,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Answer<T> {
        interpret(sent, NonJson404::Inconclusive, decode)
    }

    /// SPEC §17: only a JSON object is the Store's 404; an HTML page or an
    /// empty body is a failure (`code="404"`, `not_store` in `poller`),
    /// unless `non_json_404 = "conclusive"`.
    #[test]
    fn a_404_is_the_stores_only_with_a_json_object() {
        for body in [
            &b"<html>Not Found</html>"[..],
            b"",
            b"[]",
            b"\"x\"",
            b"null",
        ] {
            let owned = Bytes::copy_from_slice(body);
            let sent = || {
                Ok(Exchanged {
                    status: 404,
                    retry_after: None,
                    body: Ok(owned.clone()),
                })
            };
            match interpret_default(sent(), decode_ok) {
                Answer::Failed(f) => assert_eq!(f.code, ErrorCode::Status(404)),
                other => panic!("{body:?}: {other:?}"),
            }
            assert!(matches!(
                interpret(sent(), NonJson404::Conclusive, decode_ok),
                Answer::NotFound(ItemType::Unknown)
            ));
        }
        assert!(matches!(
            interpret_default(exchanged(404, br#"{"ItemType":"Seat"}"#), decode_ok),
            Answer::NotFound(ItemType::Seat)
        ));
    }

    #[test]
    fn answers_are_read_alike_for_every_request() {
        assert!(matches!(
            interpret_default(exchanged(200, b"ok"), decode_ok),
            Answer::Found(2)
        ));
        assert!(matches!(
            interpret_default(exchanged(200, b"no"), decode_ok),
            Answer::Failed(Failure {
                code: ErrorCode::Decode,
                retry_after: None,
                ..
            })
        ));
        assert!(matches!(
            interpret_default(exchanged(404, b"{}"), decode_ok),
            Answer::NotFound(ItemType::Unknown)
        ));
        match interpret_default(exchanged(503, b"ok"), decode_ok) {
            Answer::Failed(f) => {
                assert_eq!(f.code, ErrorCode::Status(503));
                assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        let unreadable = Err(Failure {
            code: ErrorCode::Timeout,
            retry_after: None,
            detail: String::new(),
        });
        assert!(matches!(
            interpret_default(unreadable, decode_ok),
            Answer::Failed(Failure {
                code: ErrorCode::Timeout,
                ..
            })
        ));
    }
}
