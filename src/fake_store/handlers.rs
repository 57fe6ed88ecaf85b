//! The fake's HTTP handlers. Faults are applied in front of the router, so
//! that "drop the connection" can be done by failing the hyper service, which
//! closes the connection without a response.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::faults::{Action, Match};
use super::{Casing, FakeSeat, LOG_LEN, NotFoundShape, Shared, State as FakeState};

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
    if method == http::Method::POST && path.ends_with("/oauth2/token") {
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

fn matches(m: &Match, kind: Kind, raw: &str, path: &str) -> bool {
    match m {
        Match::Any => true,
        Match::Token => kind == Kind::Token,
        Match::AllSeats => kind == Kind::Seat,
        Match::User(u) => {
            kind == Kind::Seat && user_segment(path).as_deref() == Some(&u.to_lowercase())
        }
        Match::PathContains(s) => raw.contains(s.as_str()),
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
        Action::Body(body) => json_response(StatusCode::OK, body),
        // Delay and Drop are handled by the caller.
        Action::Delay(_) | Action::Drop => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
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
        .route("/{tenant}/oauth2/token", post(token))
        .route("/V1/Inventory/{product}/{sku}/Seats/{user}", get(seat))
        .with_state(shared)
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = shared.lock();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003",
        );
    }
    if field("client_id") != s.client_id || field("client_secret") != s.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "AADSTS7000215");
    }
    if field("resource").is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "AADSTS900144");
    }
    let now = tokio::time::Instant::now();
    s.tokens.retain(|_, expires| *expires > now);
    s.token_serial += 1;
    let token = format!(
        "fake-token-{}-{:016x}",
        s.token_serial,
        rand::random::<u64>()
    );
    let lifetime = s.token_lifetime;
    s.tokens.insert(token.clone(), now + lifetime);
    let secs = lifetime.as_secs();
    let expires_in = if s.expires_in_as_string {
        Value::String(secs.to_string())
    } else {
        Value::from(secs)
    };
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "resource": field("resource"),
        "access_token": token,
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, error: &str, code: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("{code}: the fake token endpoint refused the request."),
        })),
    )
        .into_response()
}

fn authorized(s: &FakeState, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    s.tokens
        .get(token)
        .is_some_and(|expires| *expires > tokio::time::Instant::now())
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
    let v = match casing {
        Casing::Pascal => json!({
            "AssignedTo": user, "DateAssigned": seat.date_assigned,
            "ProductId": product, "SkuId": sku, "State": state,
        }),
        Casing::Camel => json!({
            "assignedTo": user, "dateAssigned": seat.date_assigned,
            "productId": product, "skuId": sku, "state": state,
        }),
    };
    v.to_string()
}

async fn seat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((product, sku, user)): Path<(String, String, String)>,
) -> Response {
    let s = shared.lock();
    if !authorized(&s, &headers) {
        return unauthorized();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
