//! Every check of SPEC §3, turning [`RawConfig`] into [`Config`]. A check
//! reports the key path it is about; `mod.rs` turns that into file and line.
//! The first problem wins, in the order the sections appear in the example
//! file, so the operator fixes one line at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use super::files::{exposure_warning, read_bytes, read_text};
use super::locate::KeyPath;
use super::raw::{RawConfig, RawMode, RawPerTarget, RawProduct, RawUserLabel, RawUsers, RawWeb};
use super::{
    Config, InventoryConfig, LoadOptions, MetricsConfig, Mode, PerTarget, PersistenceConfig,
    PollConfig, ProductConfig, StoreConfig, TlsFiles, UserLabel, WebConfig,
};

/// Shortest poll interval: the Store is a shared service, not a health
/// endpoint.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Longest poll or inventory interval: far longer than anyone polls, and
/// far inside what the clock arithmetic of the schedules can add.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest id or UPN we accept; AAD UPNs are at most 113 characters, so this
/// only stops a runaway value from reaching every label.
const MAX_NAME_LEN: usize = 256;
/// Upper bound for `max_concurrency`.
const MAX_CONCURRENCY: i64 = 1024;
/// Upper bound for `max_retries`.
const MAX_RETRIES: i64 = 10;
const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_MAX_PAGES: u32 = 10_000;
/// Longest `forget_after`.
const MAX_FORGET_AFTER: Duration = Duration::from_secs(31_557_600); // "1year" to humantime
/// Discovered targets kept per product and instance by default: about
/// 45 MiB of state; a larger tenant raises it or shards.
const DEFAULT_MAX_DISCOVERED: usize = 100_000;

/// A rejected key and why.
#[derive(Debug)]
pub(crate) struct Issue {
    pub path: KeyPath,
    pub message: String,
    /// The command-line flag that set the value, when one did: then the
    /// flag is to blame, not a line of the file.
    pub flag: Option<&'static str>,
}

pub(super) type Checked<T> = Result<T, Issue>;

pub(super) fn issue(path: &KeyPath, message: impl Into<String>) -> Issue {
    Issue {
        path: path.clone(),
        message: message.into(),
        flag: None,
    }
}

/// An issue with `path`, blamed on `flag` when the value came from it.
fn issue_from(path: &KeyPath, flag: Option<&'static str>, message: impl Into<String>) -> Issue {
    Issue {
        flag,
        ..issue(path, message)
    }
}

pub(super) struct Ctx<'a> {
    dir: PathBuf,
    pub(super) options: &'a LoadOptions,
    pub(super) warnings: Vec<String>,
    /// Secret files read, for `--config.check`'s hint.
    secret_files: Vec<super::SecretFile>,
}

impl Ctx<'_> {
    /// Resolves a path from the config: `$CREDENTIALS_DIRECTORY/` is expanded
    /// from the environment (systemd `LoadCredential=`), relative paths are
    /// taken from the config file's directory.
    pub(super) fn resolve(&self, key: &KeyPath, written: &str) -> Checked<PathBuf> {
        if written.trim().is_empty() {
            return Err(issue(key, "must not be empty"));
        }
        const CRED: &str = "$CREDENTIALS_DIRECTORY";
        let expanded = if let Some(rest) = written.strip_prefix(CRED) {
            let dir = (self.options.env)("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                issue(
                    key,
                    format!(
                        "{written:?} uses $CREDENTIALS_DIRECTORY, which is not set \
                         (it is set by systemd for units with LoadCredential=)"
                    ),
                )
            })?;
            format!("{dir}{rest}")
        } else {
            written.to_owned()
        };
        let path = PathBuf::from(expanded);
        Ok(if path.is_relative() {
            self.dir.join(path)
        } else {
            path
        })
    }

    /// Reads a one-value secret file: trailing line breaks are dropped, an
    /// empty file is an error. The contents never appear in a message.
    /// Readable by others: accepted, with a warning.
    pub(super) fn read_secret(&mut self, key: &KeyPath, written: &str) -> Checked<SecretString> {
        let path = self.resolve(key, written)?;
        let text = read_text(&path)
            .map_err(|e| issue(key, format!("cannot read {}: {e}", path.display())))?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.trim().is_empty() {
            return Err(issue(key, format!("{} is empty", path.display())));
        }
        self.warnings
            .extend(exposure_warning(&key.to_string(), &path));
        self.secret_files.push(super::SecretFile {
            key: key.to_string(),
            path,
            from_credentials: written.starts_with("$CREDENTIALS_DIRECTORY/"),
        });
        Ok(SecretString::from(value.to_owned()))
    }
}

pub(crate) fn validate(raw: RawConfig, path: &Path, options: &LoadOptions) -> Checked<Config> {
    let mut ctx = Ctx {
        dir: path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        options,
        warnings: Vec::new(),
        secret_files: Vec::new(),
    };
    let web = web(raw.web, &mut ctx)?;
    let store = store(&raw.store, &mut ctx)?;
    let auth = super::auth::auth(raw.auth, &mut ctx)?;
    let poll = poll(&raw.poll, &ctx)?;
    if store.timeout >= poll.interval {
        return Err(issue(
            &KeyPath::of("store.timeout"),
            format!(
                "must be shorter than poll.interval ({} >= {})",
                humantime::format_duration(store.timeout),
                humantime::format_duration(poll.interval)
            ),
        ));
    }
    let metrics = metrics(raw.metrics, &mut ctx)?;
    let inventory_key = KeyPath::of("inventory.interval");
    if raw.inventory.enabled {
        check_interval(&inventory_key, raw.inventory.interval)?;
    }
    let inventory = InventoryConfig {
        enabled: raw.inventory.enabled,
        interval: raw.inventory.interval,
        max_pages: count_up_to(
            &KeyPath::of("inventory.max_pages"),
            raw.inventory.max_pages,
            MAX_PAGES,
        )?,
    };
    let products = products(raw.products, &mut ctx)?;
    let persistence = persistence(raw.persistence, &ctx)?;

    Ok(Config {
        source: path.to_path_buf(),
        web,
        store,
        auth,
        poll,
        metrics,
        inventory,
        persistence,
        products,
        warnings: ctx.warnings,
        secret_files: ctx.secret_files,
    })
}

fn web(raw: RawWeb, ctx: &mut Ctx<'_>) -> Checked<WebConfig> {
    let flag = ctx
        .options
        .listen_address
        .is_some()
        .then_some(LISTEN_ADDRESS_FLAG);
    let listen_address = ctx
        .options
        .listen_address
        .clone()
        .unwrap_or(raw.listen_address);
    check_listen_address(&KeyPath::of("web.listen_address"), &listen_address)
        .map_err(|i| Issue { flag, ..i })?;
    check_telemetry_path(&raw.telemetry_path)?;
    let tls = tls_files(raw.tls_cert_file, raw.tls_key_file, ctx)?;
    check_basic_auth_users(&raw.basic_auth_users, ctx)?;
    Ok(WebConfig {
        listen_address,
        telemetry_path: raw.telemetry_path,
        tls,
        basic_auth_users: raw.basic_auth_users,
        headers: Vec::new(),
    })
}

/// One basic-auth user (in `[web]` or the web configuration file): a name
/// that fits an `Authorization` header, and a bcrypt hash.
pub(crate) fn check_basic_auth_user(user: &str, hash: &str) -> Result<(), &'static str> {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        return Err("user names must be non-empty, without ':' or control characters");
    }
    if !looks_like_bcrypt(hash) {
        return Err("must be a bcrypt hash (\"$2b$...\"), not a plain password");
    }
    Ok(())
}

/// `web.telemetry_path`: a plain path that is not one of the exporter's own.
fn check_telemetry_path(telemetry_path: &str) -> Checked<()> {
    let key = KeyPath::of("web.telemetry_path");
    if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 {
        return Err(issue(
            &key,
            format!("must be a path below \"/\" such as \"/metrics\" (got {telemetry_path:?})"),
        ));
    }
    if telemetry_path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
        || telemetry_path.contains(['?', '#'])
    {
        return Err(issue(
            &key,
            format!("must be a plain path without spaces, '?' or '#' (got {telemetry_path:?})"),
        ));
    }
    if telemetry_path == "/status" || telemetry_path.starts_with("/-/") {
        return Err(issue(
            &key,
            format!("{telemetry_path:?} is used by the exporter itself"),
        ));
    }
    Ok(())
}

/// `web.tls_cert_file` and `web.tls_key_file`: both or neither, each a
/// readable regular file; a key others can read is warned about.
fn tls_files(
    cert: Option<String>,
    key: Option<String>,
    ctx: &mut Ctx<'_>,
) -> Checked<Option<TlsFiles>> {
    let cert_key = KeyPath::of("web.tls_cert_file");
    let key_key = KeyPath::of("web.tls_key_file");
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(issue(&key_key, "is required when web.tls_cert_file is set"));
        }
        (None, Some(_)) => {
            return Err(issue(&cert_key, "is required when web.tls_key_file is set"));
        }
    };
    let files = TlsFiles::new(ctx.resolve(&cert_key, &cert)?, ctx.resolve(&key_key, &key)?);
    // Read now, so that a pipe or a directory is refused naming its key
    // (the listener reads them again to use them).
    for (k, p) in [(&cert_key, &files.cert), (&key_key, &files.key)] {
        read_bytes(p, super::files::MAX_PEM_BYTES)
            .map_err(|e| issue(k, format!("cannot read {}: {e}", p.display())))?;
    }
    ctx.warnings
        .extend(exposure_warning(&key_key.to_string(), &files.key));
    Ok(Some(files))
}

/// `web.basic_auth_users`: usable names and bcrypt hashes, with a warning
/// when the hashes' costs differ.
fn check_basic_auth_users(users: &BTreeMap<String, String>, ctx: &mut Ctx<'_>) -> Checked<()> {
    for (user, hash) in users {
        let key = KeyPath::of("web.basic_auth_users").key(user);
        check_basic_auth_user(user, hash).map_err(|message| issue(&key, message))?;
    }
    // Validated above: the cost is the two digits after "$2b$".
    let costs: std::collections::BTreeSet<&str> = users.values().map(|h| &h[4..6]).collect();
    if costs.len() > 1 {
        ctx.warnings.push(format!(
            "web.basic_auth_users: the hashes have different bcrypt costs ({}); a refused \
             request for a cheaper user answers faster than for an unknown one, which tells \
             that the user exists: hash every password with the same cost",
            costs.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

/// `$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit cost, then 53 characters.
fn looks_like_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && hash.starts_with("$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// The flag that overrides `[web] listen_address`.
pub(crate) const LISTEN_ADDRESS_FLAG: &str = "--web.listen-address";

pub(crate) fn check_listen_address(key: &KeyPath, addr: &str) -> Checked<()> {
    let bad = || {
        issue(
            key,
            format!("must be \"host:port\" or \":port\" (got {addr:?})"),
        )
    };
    let (_host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    Ok(())
}

fn store(raw: &super::raw::RawStore, ctx: &mut Ctx<'_>) -> Checked<StoreConfig> {
    let key = KeyPath::of("store.base_url");
    let base_url = raw.base_url.trim_end_matches('/').to_owned();
    check_url(&key, &base_url)?;
    if base_url.starts_with("http://") {
        ctx.warnings.push(format!(
            "store.base_url {base_url:?} is plain http: bearer tokens travel unencrypted"
        ));
    }
    if base_url.contains(['?', '#']) {
        return Err(issue(&key, "must not contain a query or fragment"));
    }
    let timeout = raw.timeout;
    if timeout.is_zero() {
        return Err(issue(&KeyPath::of("store.timeout"), "must be more than 0s"));
    }
    in_range(
        &KeyPath::of("store.max_concurrency"),
        raw.max_concurrency,
        1,
        MAX_CONCURRENCY,
    )?;
    let key = KeyPath::of("store.max_requests_per_second");
    let rps = raw.max_requests_per_second;
    if !rps.is_finite() || rps < 0.0 {
        return Err(issue(
            &key,
            format!("must be 0 (unlimited) or a positive number (got {rps})"),
        ));
    }
    in_range(
        &KeyPath::of("store.max_retries"),
        raw.max_retries,
        0,
        MAX_RETRIES,
    )?;
    Ok(StoreConfig {
        base_url,
        timeout,
        // Both ranges were checked just above.
        max_concurrency: raw.max_concurrency as usize,
        max_requests_per_second: (rps > 0.0).then_some(rps),
        max_retries: raw.max_retries as u32,
        proxy: super::network::proxy(raw.proxy_url.as_deref(), ctx)?,
        ca_file: super::network::ca_bundle(raw.ca_file.as_deref(), ctx)?,
        non_json_404: raw.non_json_404,
    })
}

pub(super) fn check_url(key: &KeyPath, url: &str) -> Checked<()> {
    check_url_as(key, url, url)
}

/// [`check_url`] of `url`, quoting `shown` (what the operator wrote).
pub(super) fn check_url_as(key: &KeyPath, url: &str, shown: &str) -> Checked<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| issue(key, format!("is not a valid URL ({e}): {shown:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(issue(
            key,
            format!("must be an http:// or https:// URL with a host (got {shown:?})"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(issue(key, "must not carry credentials"));
    }
    Ok(())
}

pub(super) fn non_empty(key: &KeyPath, value: &str) -> Checked<()> {
    if value.trim().is_empty() {
        return Err(issue(key, "must not be empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(issue(key, "must not contain control characters"));
    }
    Ok(())
}

/// An interval between [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
fn check_interval(key: &KeyPath, interval: Duration) -> Checked<()> {
    let bound = if interval < MIN_INTERVAL {
        format!("at least {}", humantime::format_duration(MIN_INTERVAL))
    } else if interval > MAX_INTERVAL {
        format!("at most {}", humantime::format_duration(MAX_INTERVAL))
    } else {
        return Ok(());
    };
    Err(issue(
        key,
        format!(
            "must be {bound} (got {})",
            humantime::format_duration(interval)
        ),
    ))
}

fn poll(raw: &super::raw::RawPoll, ctx: &Ctx<'_>) -> Checked<PollConfig> {
    check_interval(&KeyPath::of("poll.interval"), raw.interval)?;
    let count = match ctx.options.shard_count {
        Some(c) => i64::from(c),
        None => raw.shard_count,
    };
    let index = match ctx.options.shard_index {
        Some(i) => i64::from(i),
        None => raw.shard_index,
    };
    let count_flag = ctx.options.shard_count.is_some().then_some("--shard.count");
    let index_flag = ctx.options.shard_index.is_some().then_some("--shard.index");
    if !(1..=i64::from(u32::MAX)).contains(&count) {
        return Err(issue_from(
            &KeyPath::of("poll.shard_count"),
            count_flag,
            format!("must be at least 1 (got {count})"),
        ));
    }
    if !(0..count).contains(&index) {
        return Err(issue_from(
            &KeyPath::of("poll.shard_index"),
            index_flag,
            format!(
                "must be between 0 and shard_count - 1 = {} (got {index}){}",
                count - 1,
                match (index_flag, count_flag) {
                    (None, Some(flag)) => format!("; shard_count comes from {flag}"),
                    _ => String::new(),
                }
            ),
        ));
    }
    Ok(PollConfig {
        interval: raw.interval,
        // Both were range-checked against u32 bounds above.
        shard_index: index as u32,
        shard_count: count as u32,
    })
}

fn metrics(raw: super::raw::RawMetrics, ctx: &mut Ctx<'_>) -> Checked<MetricsConfig> {
    let key = KeyPath::of("metrics.user_hash_key_file");
    let user_label = match (raw.user_label, raw.user_hash_key_file) {
        (RawUserLabel::Upn, _) => UserLabel::Upn,
        (RawUserLabel::Hash, Some(file)) => UserLabel::Hash(ctx.read_secret(&key, &file)?),
        (RawUserLabel::Hash, None) => {
            return Err(issue(
                &key,
                "is required when metrics.user_label = \"hash\"",
            ));
        }
    };
    let per_target = match raw.per_target {
        RawPerTarget::Full => PerTarget::Full,
        RawPerTarget::Compact => PerTarget::Compact,
    };
    Ok(MetricsConfig {
        user_label,
        per_target,
    })
}

/// `[persistence] file`, or `--persistence.file` in its place. The file
/// need not exist (a first start), but its directory must, and the path
/// must not name something that is not a regular file: the exporter
/// replaces it by renaming, which would swallow a directory or a FIFO's
/// name.
fn persistence(raw: super::raw::RawPersistence, ctx: &Ctx<'_>) -> Checked<PersistenceConfig> {
    let key = KeyPath::of("persistence.file");
    let flag = ctx
        .options
        .persistence_file
        .is_some()
        .then_some(PERSISTENCE_FILE_FLAG);
    let file = match (&ctx.options.persistence_file, raw.file) {
        (Some(given), _) if given.as_os_str().is_empty() => {
            return Err(issue_from(&key, flag, "must not be empty"));
        }
        (Some(given), _) => given.clone(),
        (None, Some(written)) => ctx.resolve(&key, &written)?,
        (None, None) => return Ok(PersistenceConfig::default()),
    };
    if let Err(e) = super::files::regular_or_missing(&file) {
        let message = format!("{}: {e}", file.display());
        return Err(issue_from(&key, flag, message));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if file.file_name().is_none() || !dir.is_dir() {
        let message = format!(
            "{}: the directory {} does not exist",
            file.display(),
            dir.display()
        );
        return Err(issue_from(&key, flag, message));
    }
    Ok(PersistenceConfig { file: Some(file) })
}

/// The flag that overrides `[persistence] file`.
pub(crate) const PERSISTENCE_FILE_FLAG: &str = "--persistence.file";

/// Checks a product or SKU id: non-empty, no whitespace or control
/// characters, and not a dot segment (which a URL parser would fold away).
fn check_id(key: &KeyPath, id: &str) -> Checked<()> {
    if id.trim().is_empty() {
        return Err(issue(key, "must not be empty"));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(issue(
            key,
            format!("must not contain spaces or control characters (got {id:?})"),
        ));
    }
    if id == "." || id == ".." || id.len() > MAX_NAME_LEN {
        return Err(issue(key, format!("is not a valid id (got {id:?})")));
    }
    Ok(())
}

/// Why `user` is not a user principal name (`local@domain`), if it is not.
pub(crate) fn upn_problem(user: &str) -> Option<String> {
    if user.chars().any(char::is_control) {
        return Some(format!("{user:?} contains control characters"));
    }
    if user.chars().any(char::is_whitespace) {
        return Some(format!("{user:?} contains spaces"));
    }
    if user.len() > MAX_NAME_LEN {
        return Some(format!("is longer than {MAX_NAME_LEN} bytes"));
    }
    match user.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            None
        }
        _ => Some(format!(
            "{user:?} is not a user principal name (local@domain)"
        )),
    }
}

fn products(raw: Vec<RawProduct>, ctx: &mut Ctx<'_>) -> Checked<Vec<ProductConfig>> {
    let list = KeyPath::of("products");
    if raw.is_empty() {
        return Err(issue(&list, "at least one [[products]] table is required"));
    }
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = list.index(i);
        check_id(&key.key("product_id"), &p.product_id)?;
        check_id(&key.key("sku_id"), &p.sku_id)?;
        let id = (p.product_id.to_uppercase(), p.sku_id.to_uppercase());
        if let Some(first) = seen.insert(id, i) {
            return Err(issue(
                &key,
                format!(
                    "duplicate product: product_id {:?} sku_id {:?} is already products[{first}]",
                    p.product_id, p.sku_id
                ),
            ));
        }
        if let Some(name) = &p.name
            && (name.chars().any(char::is_control) || name.len() > MAX_NAME_LEN)
        {
            return Err(issue(
                &key.key("name"),
                "must be at most 256 bytes without control characters",
            ));
        }
        out.push(product(p, &key, ctx)?);
    }
    Ok(out)
}

fn product(p: RawProduct, key: &KeyPath, ctx: &mut Ctx<'_>) -> Checked<ProductConfig> {
    let (listed, discover, mode) = users_and_mode(p.users, p.mode, key)?;
    if discover && p.users_file.is_some() {
        return Err(issue(
            &key.key("users_file"),
            "cannot be combined with users = \"all\"",
        ));
    }
    let users = users(listed, p.users_file.as_deref(), key, ctx)?;
    if users.is_empty() && !discover {
        return Err(issue(
            &key.key("users"),
            "a product needs at least one user (in users or users_file)",
        ));
    }
    let (users, duplicates) = merge_case_variants(users);
    if duplicates > 0 {
        ctx.warnings.push(format!(
            "{key}: {duplicates} duplicate user(s) merged (product_id {:?}, sku_id {:?})",
            p.product_id, p.sku_id
        ));
    }
    let forget_after = forget_after(p.forget_after, discover, key)?;
    let max_discovered = match p.max_discovered {
        None => DEFAULT_MAX_DISCOVERED,
        Some(_) if !discover => {
            return Err(issue(
                &key.key("max_discovered"),
                "only applies to users = \"all\"",
            ));
        }
        Some(n) => count_up_to(&key.key("max_discovered"), n, 10_000_000)? as usize,
    };
    let max_pages = match p.max_pages {
        None => DEFAULT_MAX_PAGES,
        Some(_) if mode == Mode::PerUser => {
            return Err(issue(
                &key.key("max_pages"),
                "only applies to mode = \"list\"",
            ));
        }
        Some(n) => count_up_to(&key.key("max_pages"), n, MAX_PAGES)?,
    };
    Ok(ProductConfig {
        product_id: p.product_id,
        sku_id: p.sku_id,
        name: p.name,
        users,
        discover,
        mode,
        forget_after,
        max_pages,
        max_discovered,
    })
}

/// `users` and `mode`: the listed users, whether they are discovered
/// (`users = "all"`), and how they are checked.
fn users_and_mode(
    users: RawUsers,
    mode: Option<RawMode>,
    key: &KeyPath,
) -> Checked<(Vec<String>, bool, Mode)> {
    let (listed, discover) = match users {
        RawUsers::List(list) => (list, false),
        RawUsers::Word(word) if word == "all" => (Vec::new(), true),
        RawUsers::Word(word) => {
            return Err(issue(
                &key.key("users"),
                format!("must be a list of user principal names or \"all\" (got {word:?})"),
            ));
        }
    };
    let mode = match (mode, discover) {
        (Some(RawMode::PerUser), true) => {
            return Err(issue(
                &key.key("mode"),
                "users = \"all\" needs mode = \"list\" (or no mode)",
            ));
        }
        (_, true) | (Some(RawMode::List), _) => Mode::List,
        (Some(RawMode::PerUser) | None, false) => Mode::PerUser,
    };
    Ok((listed, discover, mode))
}

/// The users of `users` and then of `users_file`, each checked, with the
/// key each came from.
fn users(
    listed: Vec<String>,
    users_file: Option<&str>,
    key: &KeyPath,
    ctx: &Ctx<'_>,
) -> Checked<Vec<(String, KeyPath)>> {
    let users_key = key.key("users");
    let mut users: Vec<(String, KeyPath)> = Vec::new();
    for (j, user) in listed.into_iter().enumerate() {
        let k = users_key.index(j);
        if let Some(problem) = upn_problem(&user) {
            return Err(issue(&k, problem));
        }
        users.push((user, k));
    }
    let Some(file) = users_file else {
        return Ok(users);
    };
    let fkey = key.key("users_file");
    let path = ctx.resolve(&fkey, file)?;
    let text = read_text(&path)
        .map_err(|e| issue(&fkey, format!("cannot read {}: {e}", path.display())))?;
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        if let Some(problem) = upn_problem(entry) {
            return Err(issue(
                &fkey,
                format!("{}:{}: {problem}", path.display(), n + 1),
            ));
        }
        users.push((entry.to_owned(), fkey.clone()));
    }
    Ok(users)
}

/// UPNs are case-insensitive in Azure AD: merges case variants, keeping the
/// first spelling. Returns the users and how many were merged away.
fn merge_case_variants(users: Vec<(String, KeyPath)>) -> (Vec<String>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut merged = Vec::with_capacity(users.len());
    let mut duplicates = 0usize;
    for (user, _) in users {
        if seen.insert(user.to_lowercase()) {
            merged.push(user);
        } else {
            duplicates += 1;
        }
    }
    (merged, duplicates)
}

/// `forget_after`: only with discovery, at most [`MAX_FORGET_AFTER`].
fn forget_after(value: Option<Duration>, discover: bool, key: &KeyPath) -> Checked<Duration> {
    let forget_after = value.unwrap_or(DEFAULT_FORGET_AFTER);
    if value.is_some() && !discover {
        return Err(issue(
            &key.key("forget_after"),
            "only applies to users = \"all\"",
        ));
    }
    if forget_after > MAX_FORGET_AFTER {
        return Err(issue(
            &key.key("forget_after"),
            format!(
                "must be at most {} (got {})",
                humantime::format_duration(MAX_FORGET_AFTER),
                humantime::format_duration(forget_after)
            ),
        ));
    }
    Ok(forget_after)
}

/// Highest page cut-off of a listing (`[[products]] max_pages`,
/// `[inventory] max_pages`).
const MAX_PAGES: u32 = 1_000_000;

/// A count limit from 1 to `max`.
fn count_up_to(key: &KeyPath, n: i64, max: u32) -> Result<u32, Issue> {
    in_range(key, n, 1, i64::from(max))?;
    Ok(u32::try_from(n).expect("checked to be within 1..=max"))
}

/// An integer from `min` to `max`.
fn in_range(key: &KeyPath, n: i64, min: i64, max: i64) -> Checked<()> {
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(issue(
            key,
            format!("must be between {min} and {max} (got {n})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upns() {
        assert!(upn_problem("alice@contoso.com").is_none());
        assert!(upn_problem("o'brien+x#y?z/w@contoso.com").is_none());
        assert!(upn_problem("alice").is_some());
        assert!(upn_problem("@contoso.com").is_some());
        assert!(upn_problem("alice@").is_some());
        assert!(upn_problem("a@b@c").is_some());
        assert!(upn_problem("a\u{7}@b.c").is_some());
        assert!(upn_problem("a b@c.d").is_some());
    }

    #[test]
    fn bcrypt_shape() {
        assert!(looks_like_bcrypt(
            "$2b$12$KIXQJ3Yx1m2Jm0hVh1n6bO3Gm1uA2bqXo0x1yqg4F9uQz5b6eXk7W"
        ));
        assert!(!looks_like_bcrypt("hunter2"));
    }

    #[test]
    fn listen_addresses() {
        let k = KeyPath::of("web.listen_address");
        assert!(check_listen_address(&k, ":10043").is_ok());
        assert!(check_listen_address(&k, "127.0.0.1:80").is_ok());
        assert!(check_listen_address(&k, "[::1]:80").is_ok());
        assert!(check_listen_address(&k, "localhost").is_err());
        assert!(check_listen_address(&k, ":99999").is_err());
    }
}
