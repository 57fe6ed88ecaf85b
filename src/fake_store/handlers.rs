//! The fake's HTTP handlers. Faults are applied in front of the router, so
//! that "drop the connection" can be done by failing the hyper service, which
//! closes the connection without a response.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::faults::{Action, Match};
use super::{Casing, FakeInventory, FakeSeat, LOG_LEN, NotFoundShape, Shared, State as FakeState};

/// What kind of request this is, for counting and fault matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    Seat,
    List,
    Inventory,
    Other,
}

fn kind_of(method: &http::Method, path: &str) -> Kind {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if method == http::Method::POST
        && (path.ends_with("/oauth2/token") || path.ends_with("/oauth2/v2.0/token"))
        || path == super::entra::IMDS_PATH
    {
        return Kind::Token;
    }
    match segments.as_slice() {
        ["V1", "Inventory", _, _, "Seats", _] => Kind::Seat,
        ["V1", "Inventory", _, _, "Seats"] => Kind::List,
        ["V1", "Inventory"] => Kind::Inventory,
        _ => Kind::Other,
    }
}

fn user_segment(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    Some(
        percent_encoding::percent_decode_str(last)
            .decode_utf8_lossy()
            .to_lowercase(),
    )
}

/// The continuation token of a raw request target, decoded as a form
/// value is (`+` is a space), if any.
fn continuation_of(raw: &str) -> Option<String> {
    let query = raw.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "continuationToken").then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Page number (1-based) a listing request asks for; 0 for a token the fake
/// did not issue.
fn page_of(raw: &str) -> u32 {
    match continuation_of(raw) {
        None => 1,
        Some(t) => parse_token(&t).map_or(0, |(page, _)| page),
    }
}

fn matches(m: &Match, kind: Kind, raw: &str, path: &str) -> bool {
    match m {
        Match::Any => true,
        Match::Token => kind == Kind::Token,
        Match::AllSeats => kind == Kind::Seat,
        Match::User(u) => {
            kind == Kind::Seat && user_segment(path).as_deref() == Some(&u.to_lowercase())
        }
        Match::PathContains(s) => raw.contains(s.as_str()),
        Match::AllListings => kind == Kind::List,
        Match::SeatsPage(n) => kind == Kind::List && page_of(raw) == *n,
        Match::Inventory => kind == Kind::Inventory,
        Match::InventoryPage(n) => kind == Kind::Inventory && page_of(raw) == *n,
    }
}

/// Counts a request as being answered until dropped (also when the client
/// goes away mid-answer).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let mut s = shared.lock();
        s.in_flight += 1;
        s.counts.max_in_flight = s.counts.max_in_flight.max(s.in_flight);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

/// Counts the request and takes the first matching fault.
fn admit(state: &mut FakeState, kind: Kind, raw: &str, path: &str) -> Option<Action> {
    let c = &mut state.counts;
    c.total += 1;
    match kind {
        Kind::Token => c.token_requests += 1,
        Kind::Seat => c.seat_requests += 1,
        Kind::List => c.list_requests += 1,
        Kind::Inventory => c.inventory_requests += 1,
        Kind::Other => {}
    }
    if state.log.len() >= LOG_LEN {
        state.log.pop_front();
    }
    state.log.push_back(raw.to_owned());
    let i = state
        .faults
        .iter()
        .position(|f| f.remaining != Some(0) && matches(&f.matches, kind, raw, path))?;
    let fault = &mut state.faults[i];
    if let Some(n) = &mut fault.remaining {
        *n -= 1;
    }
    Some(fault.action.clone())
}

fn respond(action: Action) -> Response {
    match action {
        Action::Status {
            code,
            body,
            retry_after,
        } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp =
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Some(ra) = retry_after
                && let Ok(v) = http::HeaderValue::from_str(&ra)
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Action::Malformed => json_response(StatusCode::OK, "{\"State\":\"Act".to_owned()),
        Action::Oversized(n) => {
            let mut body = String::with_capacity(n);
            body.push_str("{\"State\":\"Active\",\"Padding\":\"");
            while body.len() + 2 < n {
                body.push('x');
            }
            body.push_str("\"}");
            json_response(StatusCode::OK, body)
        }
        Action::OversizedChunked(n) => chunked_response(oversized_chunks(n)),
        Action::CutMidBody => chunked_response(cut_mid_body()),
        Action::Body(body) => json_response(StatusCode::OK, body),
        // Delay and Drop are handled by the caller.
        Action::Delay(_) | Action::Drop => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Bytes sent per chunk of a streamed body.
const CHUNK: usize = 64 * 1024;

/// A seat body of `n` bytes (an active seat, padded), in chunks.
fn oversized_chunks(
    n: usize,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    let head = b"{\"State\":\"Active\",\"Padding\":\"".as_slice();
    let tail = b"\"}".as_slice();
    let padding = n.saturating_sub(head.len() + tail.len());
    let mut parts = vec![bytes::Bytes::from_static(head)];
    let mut left = padding;
    while left > 0 {
        let len = left.min(CHUNK);
        parts.push(bytes::Bytes::from(vec![b'x'; len]));
        left -= len;
    }
    parts.push(bytes::Bytes::from_static(tail));
    futures::stream::iter(parts.into_iter().map(Ok))
}

/// The start of a seat body, a pause (so that hyper flushes the headers and
/// that chunk), then an error: hyper aborts the connection mid-body.
fn cut_mid_body()
-> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use futures::StreamExt as _;
    let start = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"{\"State\":\"Act")) });
    let cut = futures::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err(std::io::Error::other("fault: connection cut mid-body"))
    });
    start.chain(cut)
}

/// A 200 JSON response streaming `chunks`: without a known length, hyper
/// sends it with `Transfer-Encoding: chunked` and no `Content-Length`.
fn chunked_response(
    chunks: impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The fake as a hyper service.
pub(crate) fn service(
    shared: Arc<Shared>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<Body>,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<http::Response<Body>, std::io::Error>> + Send,
> + Clone
+ Send
+ 'static {
    let router = router(Arc::clone(&shared));
    hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let router = router.clone();
        async move {
            let path = req.uri().path().to_owned();
            let raw = req
                .uri()
                .path_and_query()
                .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
            let kind = kind_of(req.method(), &path);
            let action = admit(&mut shared.lock(), kind, &raw, &path);
            let _in_flight = InFlight::enter(&shared);
            match action {
                Some(Action::Drop) => Err(std::io::Error::other("fault: drop connection")),
                Some(Action::Delay(d)) => {
                    tokio::time::sleep(d).await;
                    Ok(route(router, req).await)
                }
                Some(other) => Ok(respond(other)),
                None => Ok(route(router, req).await),
            }
        }
    })
}

async fn route(router: Router, req: http::Request<Incoming>) -> Response {
    let result: Result<Response, Infallible> = router.oneshot(req.map(Body::new)).await;
    match result {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/token", super::entra::token_endpoint("v1"))
        .route(
            "/{tenant}/oauth2/v2.0/token",
            super::entra::token_endpoint("v2"),
        )
        .route(super::entra::IMDS_PATH, get(super::entra::imds))
        .route("/V1/Inventory/{product}/{sku}/Seats/{user}", get(seat))
        .route("/V1/Inventory/{product}/{sku}/Seats", get(list_seats))
        .route("/V1/Inventory", get(inventory))
        .with_state(shared)
}

/// The fake's state, locked, for a request with a bearer token the fake
/// issued and that has not expired; `None` calls for [`unauthorized`].
fn authorized<'a>(shared: &'a Shared, headers: &HeaderMap) -> Option<MutexGuard<'a, FakeState>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    let s = shared.lock();
    let valid = s
        .tokens
        .get(token)
        .is_some_and(|expires| *expires > tokio::time::Instant::now());
    valid.then_some(s)
}

fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        json!({"code": "Unauthorized", "message": "missing, unknown or expired bearer token"})
            .to_string(),
    )
}

fn not_found(shape: NotFoundShape, item: &str, values: &str) -> Response {
    let body = match shape {
        NotFoundShape::KeyValue => json!({
            "code": "NotFound",
            "message": "Not found",
            "data": [{"key": "ItemType", "value": item}, {"key": "Values", "value": values}],
        }),
        NotFoundShape::Flat => json!({"ItemType": item, "Values": values}),
        NotFoundShape::Nested => {
            json!({"error": {"code": "NotFound", "details": {"itemType": item, "values": values}}})
        }
    };
    json_response(StatusCode::NOT_FOUND, body.to_string())
}

fn seat_body(casing: Casing, product: &str, sku: &str, user: &str, seat: &FakeSeat) -> String {
    let state = match casing {
        Casing::Pascal => seat.state.clone(),
        Casing::Camel => seat.state.to_lowercase(),
    };
    let body = json!({
        "AssignedTo": user, "DateAssigned": seat.date_assigned,
        "ProductId": product, "SkuId": sku, "State": state,
    });
    cased(casing, body).to_string()
}

/// `value`, written with PascalCase keys, in `casing`: camelCase lowers
/// the first letter of every key, at every depth.
fn cased(casing: Casing, value: Value) -> Value {
    match (casing, value) {
        (Casing::Pascal, v) => v,
        (Casing::Camel, Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let first = c.next().map(|f| f.to_lowercase().chain(c).collect());
                    (first.unwrap_or_default(), cased(Casing::Camel, v))
                })
                .collect(),
        ),
        (Casing::Camel, v) => v,
    }
}

async fn seat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((product, sku, user)): Path<(String, String, String)>,
) -> Response {
    let Some(s) = authorized(&shared, &headers) else {
        return unauthorized();
    };
    if !s.products.contains(&(product.clone(), sku.clone())) {
        return not_found(s.not_found_shape, "Inventory", &format!("{product}/{sku}"));
    }
    let lower = user.to_lowercase();
    if !s.users.contains(&lower) {
        return not_found(s.not_found_shape, "User", &user);
    }
    match s.seats.get(&((product.clone(), sku.clone()), lower)) {
        Some(seat) => json_response(
            StatusCode::OK,
            seat_body(s.casing, &product, &sku, &user, seat),
        ),
        None => not_found(
            s.not_found_shape,
            "Seat",
            &format!("{product}/{sku}/{user}"),
        ),
    }
}

/// Everything after the page and offset of a token: characters that only
/// survive if the client percent-encodes the token.
const TOKEN_TAIL: &str = "&k=a+b/c d%e";

/// The opaque continuation token of page `page` starting at `offset`.
fn page_token(page: u32, offset: usize) -> String {
    format!("p={page}&o={offset}{TOKEN_TAIL}")
}

/// Reads a token back; `None` unless it is exactly one the fake issues.
fn parse_token(token: &str) -> Option<(u32, usize)> {
    let rest = token.strip_suffix(TOKEN_TAIL)?.strip_prefix("p=")?;
    let (page, offset) = rest.split_once("&o=")?;
    Some((page.parse().ok()?, offset.parse().ok()?))
}

fn bad_request(parameter: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"code": "BadRequest", "message": "Invalid parameters",
               "data": [{"key": "Parameter", "value": parameter}]})
        .to_string(),
    )
}

/// Which slice of a listing of `len` items a request gets and the token of
/// the next page, or the name of the bad parameter (for a 400). `max` is
/// the largest `maxResults` accepted (Get seats: 100; Get Inventory
/// documents none).
fn page_slice(
    s: &FakeState,
    query: &HashMap<String, String>,
    len: usize,
    max: usize,
) -> Result<(std::ops::Range<usize>, Option<String>), &'static str> {
    let asked = match query.get("maxResults") {
        None => 25,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err("maxResults"),
        },
    };
    let (page, offset) = match query.get("continuationToken") {
        None => (1, 0),
        Some(t) => parse_token(t).ok_or("continuationToken")?,
    };
    let size = s.paging.page_size.unwrap_or(asked).max(1);
    let range = offset.min(len)..(offset + size).min(len);
    let next = if s.paging.repeat_token && page > 1 {
        Some(page_token(page, offset))
    } else if s.paging.endless || offset + size < len {
        Some(page_token(page + 1, offset + size))
    } else {
        None
    };
    Ok((range, next))
}

/// A result set in the fake's casing: `items` under `list_key`, and the
/// token (Pascal omits it on the last page, camel sends `null`).
fn result_set(casing: Casing, list_key: &str, items: Vec<Value>, next: Option<String>) -> String {
    let mut map = serde_json::Map::new();
    let (list_key, token_key) = match casing {
        Casing::Pascal => (capitalise(list_key), "ContinuationToken"),
        Casing::Camel => (list_key.to_owned(), "continuationToken"),
    };
    map.insert(list_key, Value::Array(items));
    match (casing, next) {
        (_, Some(t)) => {
            map.insert(token_key.into(), Value::String(t));
        }
        (Casing::Camel, None) => {
            map.insert(token_key.into(), Value::Null);
        }
        (Casing::Pascal, None) => {}
    }
    Value::Object(map).to_string()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Get seats: every seat of the product (any state), by user, in pages.
async fn list_seats(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((product, sku)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(s) = authorized(&shared, &headers) else {
        return unauthorized();
    };
    let key = (product.clone(), sku.clone());
    if !s.products.contains(&key) {
        return not_found(s.not_found_shape, "Inventory", &format!("{product}/{sku}"));
    }
    let mut seats: Vec<(&String, &FakeSeat)> = s
        .seats
        .iter()
        .filter(|((k, _), _)| *k == key)
        .map(|((_, user), seat)| (user, seat))
        .collect();
    seats.sort_by(|a, b| a.0.cmp(b.0));
    let (range, next) = match page_slice(&s, &query, seats.len(), 100) {
        Ok(x) => x,
        Err(parameter) => return bad_request(parameter),
    };
    let items = seats[range]
        .iter()
        .map(|(user, seat)| {
            let body = seat_body(s.casing, &product, &sku, user, seat);
            serde_json::from_str(&body).unwrap_or(Value::Null)
        })
        .collect();
    json_response(StatusCode::OK, result_set(s.casing, "seats", items, next))
}

fn inventory_entry(
    casing: Casing,
    (product, sku): &(String, String),
    e: &FakeInventory,
    active: i64,
) -> Value {
    let available = e.available_seats.unwrap_or(e.seat_capacity - active);
    let v = |x: &str| match casing {
        Casing::Pascal => x.to_owned(),
        Casing::Camel => x.to_lowercase(),
    };
    let entry = json!({
        "ProductKey": {"ProductId": product, "SkuId": sku},
        "SeatCapacity": e.seat_capacity, "AvailableSeats": available,
        "LastModified": "2024-05-06T07:08:09.1234567Z",
        "LicenseType": v(&e.license_type), "DistributionPolicy": v(&e.distribution_policy),
        "Status": v(&e.status),
    });
    cased(casing, entry)
}

/// Get Inventory: every product of the tenant, in pages.
async fn inventory(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(s) = authorized(&shared, &headers) else {
        return unauthorized();
    };
    let mut products: Vec<&(String, String)> = s.products.iter().collect();
    products.sort();
    let (range, next) = match page_slice(&s, &query, products.len(), 1000) {
        Ok(x) => x,
        Err(parameter) => return bad_request(parameter),
    };
    let default = FakeInventory::default();
    let items = products[range]
        .iter()
        .map(|key| {
            let active = s
                .seats
                .iter()
                .filter(|((k, _), seat)| k == *key && seat.state.eq_ignore_ascii_case("active"))
                .count() as i64;
            let entry = s.inventory.get(*key).unwrap_or(&default);
            inventory_entry(s.casing, key, entry, active)
        })
        .collect();
    json_response(
        StatusCode::OK,
        result_set(s.casing, "inventoryEntries", items, next),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_page_numbers_are_found_in_requests() {
        let t = page_token(3, 200);
        assert_eq!(parse_token(&t), Some((3, 200)));
        assert_eq!(parse_token("p=3&o=200"), None);
        assert_eq!(parse_token(&t.replace('+', " ")), None);
        let encoded: String =
            percent_encoding::utf8_percent_encode(&t, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            page_of(&format!(
                "/V1/Inventory/P/S/Seats?continuationToken={encoded}&maxResults=100"
            )),
            3
        );
        assert_eq!(page_of("/V1/Inventory/P/S/Seats?maxResults=100"), 1);
        assert_eq!(page_of("/V1/Inventory?continuationToken=garbage"), 0);
    }

    #[test]
    fn request_kinds() {
        let get = http::Method::GET;
        assert_eq!(kind_of(&http::Method::POST, "/t/oauth2/token"), Kind::Token);
        assert_eq!(kind_of(&get, "/V1/Inventory/P/S/Seats/u@x"), Kind::Seat);
        assert_eq!(kind_of(&get, "/V1/Inventory/P/S/Seats"), Kind::List);
        assert_eq!(kind_of(&get, "/V1/Inventory"), Kind::Inventory);
        assert_eq!(kind_of(&get, "/V1/Inventory/P/S/Seats/a/b@x"), Kind::Other);
    }
}
