//! Waiting for something another task or process does: poll a probe until
//! it answers. The deadline only turns a hang into a failure that says what
//! was awaited and the last state seen; it is generous (a minute or more)
//! so that a busy machine is never mistaken for a broken exporter.

/// Polls `probe` until it gives `Ok`, or panics after `deadline` with
/// `what` and the last state. For waiting on other processes: the deadline
/// is generous because the test machine may be slow and busy.
pub async fn eventually<T, F, Fut>(what: &str, deadline: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(state) => state,
        };
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Polls `url` with GETs until it answers 200 (see [`eventually`]); the
/// last state is the status and body, or the error.
pub async fn until_200(what: &str, deadline: std::time::Duration, url: &str) {
    let http = reqwest::Client::new();
    eventually(what, deadline, || async {
        match http.get(url).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!(
                "{}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}
