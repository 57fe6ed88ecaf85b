//! Configuration: each rejected case by its exact message (file, line, key),
//! the accepted forms, and the shipped example file.

use std::path::Path;
use std::time::Duration;

use msfb_seat_exporter::config::{self, LoadOptions, Mode};
use msfb_seat_exporter::exporter;

use crate::util::{load_with_env, temp_dir};

/// The valid head every case starts from (lines 1–6).
const AUTH: &str = "[auth]
tenant_id = \"contoso.onmicrosoft.com\"
client_id = \"00000000-0000-0000-0000-000000000000\"
client_secret_file = \"secret.txt\"

";

const PRODUCT: &str = "[[products]]
product_id = \"9NBLGGH4R315\"
sku_id = \"0016\"
users = [\"alice@contoso.com\"]
";

/// Loads `text` as `config.toml` next to a secret file and a users file;
/// returns the error with the directory stripped from paths.
fn error_of(text: &str) -> String {
    let dir = temp_dir(&[
        ("config.toml", text),
        ("secret.txt", "s3cr3t-value\n"),
        (
            "users.txt",
            "# staff\nbob@contoso.com\n\nnot-a-upn # oops\n",
        ),
    ]);
    let err =
        load_with_env(&dir.path().join("config.toml"), &[]).expect_err("config must be rejected");
    let prefix = format!("{}/", dir.path().display());
    let message = err.to_string().replace(&prefix, "");
    assert!(!message.contains("s3cr3t"), "secret leaked: {message}");
    message
}

macro_rules! rejected {
    ($($name:ident: $text:expr => $message:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(error_of(&$text), $message);
        }
    )*};
}

rejected! {
    no_products: AUTH =>
        "config.toml:1: products: at least one [[products]] table is required";
    product_without_users: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = []\n") =>
        "config.toml:9: products[0].users: a product needs at least one user (in users or users_file)";
    empty_product_id: format!("{AUTH}[[products]]\nproduct_id = \"  \"\nsku_id = \"S\"\nusers = [\"a@b.c\"]\n") =>
        "config.toml:7: products[0].product_id: must not be empty";
    empty_sku_id: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"\"\nusers = [\"a@b.c\"]\n") =>
        "config.toml:8: products[0].sku_id: must not be empty";
    user_without_domain: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"a@b.c\", \"alice\"]\n") =>
        "config.toml:9: products[0].users[1]: \"alice\" is not a user principal name (local@domain)";
    user_with_control_character: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [\"al\\u0007ice@b.c\"]\n") =>
        "config.toml:9: products[0].users[0]: \"al\\u{7}ice@b.c\" contains control characters";
    duplicate_product: format!("{AUTH}{PRODUCT}\n{PRODUCT}") =>
        "config.toml:11: products[1]: duplicate product: product_id \"9NBLGGH4R315\" sku_id \"0016\" is already products[0]";
    interval_too_short: format!("{AUTH}[poll]\ninterval = \"5s\"\n\n{PRODUCT}") =>
        "config.toml:7: poll.interval: must be at least 10s (got 5s)";
    timeout_not_shorter_than_interval: format!("[store]\ntimeout = \"1m\"\n\n{AUTH}[poll]\ninterval = \"1m\"\n\n{PRODUCT}") =>
        "config.toml:2: store.timeout: must be shorter than poll.interval (1m >= 1m)";
    unknown_key: format!("{AUTH}[poll]\nintervall = \"5m\"\n\n{PRODUCT}") =>
        "config.toml:7: poll.intervall: unknown field `intervall`, expected one of `interval`, `shard_index`, `shard_count`";
    unknown_section: format!("{AUTH}[polling]\ninterval = \"5m\"\n\n{PRODUCT}") =>
        "config.toml:6: polling: unknown field `polling`, expected one of `web`, `store`, `auth`, `poll`, `metrics`, `inventory`, `persistence`, `products`";
    unknown_product_key: format!("{AUTH}{PRODUCT}user = \"x@y.z\"\n") =>
        "config.toml:10: products[0].user: unknown field `user`, expected one of `product_id`, `sku_id`, `name`, `users`, `users_file`, `mode`, `forget_after`, `max_pages`, `max_discovered`";
    missing_auth: PRODUCT =>
        "config.toml:1: auth: missing field `auth`";
    missing_tenant: format!("[auth]\nclient_id = \"c\"\nclient_secret_file = \"secret.txt\"\n\n{PRODUCT}") =>
        "config.toml:1: auth.tenant_id: missing field `tenant_id`";
    bad_duration: format!("{AUTH}[poll]\ninterval = \"soon\"\n\n{PRODUCT}") =>
        "config.toml:7: poll.interval: invalid value: string \"soon\", expected a duration";
    wrong_type: format!("[store]\nmax_concurrency = \"eight\"\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: store.max_concurrency: invalid type: string \"eight\", expected i64";
    zero_concurrency: format!("[store]\nmax_concurrency = 0\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: store.max_concurrency: must be between 1 and 1024 (got 0)";
    negative_rate: format!("[store]\nmax_requests_per_second = -1\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: store.max_requests_per_second: must be 0 (unlimited) or a positive number (got -1)";
    bad_base_url: format!("[store]\nbase_url = \"ftp://store.example\"\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: store.base_url: must be an http:// or https:// URL with a host (got \"ftp://store.example\")";
    both_secret_sources: format!("[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"secret.txt\"\nclient_secret_env = \"X\"\n\n{PRODUCT}") =>
        "config.toml:5: auth.client_secret_env: set either client_secret_file or client_secret_env, not both";
    no_secret_source: format!("[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\n\n{PRODUCT}") =>
        "config.toml:1: auth.client_secret_file: one of client_secret_file or client_secret_env is required";
    missing_secret_file: format!("[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"nope.txt\"\n\n{PRODUCT}") =>
        "config.toml:4: auth.client_secret_file: cannot read nope.txt: No such file or directory (os error 2)";
    unset_secret_variable: format!("[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"MSFB_TEST_UNSET\"\n\n{PRODUCT}") =>
        "config.toml:4: auth.client_secret_env: environment variable MSFB_TEST_UNSET is not set or empty";
    credentials_directory_unset: format!("[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"$CREDENTIALS_DIRECTORY/secret\"\n\n{PRODUCT}") =>
        "config.toml:4: auth.client_secret_file: \"$CREDENTIALS_DIRECTORY/secret\" uses $CREDENTIALS_DIRECTORY, which is not set (it is set by systemd for units with LoadCredential=)";
    empty_tenant: format!("[auth]\ntenant_id = \"\"\nclient_id = \"c\"\nclient_secret_file = \"secret.txt\"\n\n{PRODUCT}") =>
        "config.toml:2: auth.tenant_id: must not be empty";
    shard_index_out_of_range: format!("{AUTH}[poll]\nshard_index = 4\nshard_count = 4\n\n{PRODUCT}") =>
        "config.toml:7: poll.shard_index: must be between 0 and shard_count - 1 = 3 (got 4)";
    bad_line_in_users_file: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers_file = \"users.txt\"\n") =>
        "config.toml:9: products[0].users_file: users.txt:4: \"not-a-upn\" is not a user principal name (local@domain)";
    missing_users_file: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers_file = \"nobody.txt\"\n") =>
        "config.toml:9: products[0].users_file: cannot read nobody.txt: No such file or directory (os error 2)";
    syntax_error: format!("{AUTH}[poll\ninterval = \"5m\"\n") =>
        "config.toml:6: unclosed table, expected `]`";
    bad_telemetry_path: format!("[web]\ntelemetry_path = \"metrics\"\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: web.telemetry_path: must be a path below \"/\" such as \"/metrics\" (got \"metrics\")";
    bad_listen_address: format!("[web]\nlisten_address = \"10043\"\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: web.listen_address: must be \"host:port\" or \":port\" (got \"10043\")";
    hash_without_key: format!("{AUTH}[metrics]\nuser_label = \"hash\"\n\n{PRODUCT}") =>
        "config.toml:6: metrics.user_hash_key_file: is required when metrics.user_label = \"hash\"";
    bad_user_label: format!("{AUTH}[metrics]\nuser_label = \"email\"\n\n{PRODUCT}") =>
        "config.toml:7: metrics.user_label: unknown variant `email`, expected `upn` or `hash`";
    bad_per_target: format!("{AUTH}[metrics]\nper_target = \"minimal\"\n\n{PRODUCT}") =>
        "config.toml:7: metrics.per_target: unknown variant `minimal`, expected `full` or `compact`";
    plain_password_for_basic_auth: format!("[web]\nbasic_auth_users = {{ prom = \"hunter2\" }}\n\n{AUTH}{PRODUCT}") =>
        "config.toml:2: web.basic_auth_users.prom: must be a bcrypt hash (\"$2b$...\"), not a plain password";
    tls_cert_without_key: format!("[web]\ntls_cert_file = \"secret.txt\"\n\n{AUTH}{PRODUCT}") =>
        "config.toml:1: web.tls_key_file: is required when web.tls_cert_file is set";
    // Listing, discovery and inventory (issue 6, SPEC §11).
    users_neither_list_nor_all: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = \"everyone\"\n") =>
        "config.toml:9: products[0].users: must be a list of user principal names or \"all\" (got \"everyone\")";
    discovery_in_per_user_mode: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = \"all\"\nmode = \"per_user\"\n") =>
        "config.toml:10: products[0].mode: users = \"all\" needs mode = \"list\" (or no mode)";
    users_file_with_discovery: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = \"all\"\nusers_file = \"users.txt\"\n") =>
        "config.toml:10: products[0].users_file: cannot be combined with users = \"all\"";
    forget_after_without_discovery: format!("{AUTH}{PRODUCT}mode = \"list\"\nforget_after = \"1d\"\n") =>
        "config.toml:11: products[0].forget_after: only applies to users = \"all\"";
    zero_max_pages: format!("{AUTH}{PRODUCT}mode = \"list\"\nmax_pages = 0\n") =>
        "config.toml:11: products[0].max_pages: must be between 1 and 1000000 (got 0)";
    too_many_max_pages: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = \"all\"\nmax_pages = 1000001\n") =>
        "config.toml:10: products[0].max_pages: must be between 1 and 1000000 (got 1000001)";
    max_pages_in_per_user_mode: format!("{AUTH}{PRODUCT}max_pages = 50\n") =>
        "config.toml:10: products[0].max_pages: only applies to mode = \"list\"";
    inventory_max_pages_out_of_range: format!("{AUTH}[inventory]\nmax_pages = 0\n\n{PRODUCT}") =>
        "config.toml:7: inventory.max_pages: must be between 1 and 1000000 (got 0)";
    max_discovered_without_discovery: format!("{AUTH}{PRODUCT}mode = \"list\"\nmax_discovered = 5\n") =>
        "config.toml:11: products[0].max_discovered: only applies to users = \"all\"";
    zero_max_discovered: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = \"all\"\nmax_discovered = 0\n") =>
        "config.toml:10: products[0].max_discovered: must be between 1 and 10000000 (got 0)";
    forget_after_too_long: format!("{AUTH}[[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = \"all\"\nforget_after = \"2y\"\n") =>
        "config.toml:10: products[0].forget_after: must be at most 1year (got 2years)";
    poll_interval_too_long: format!("{AUTH}[poll]\ninterval = \"500000000000y\"\n\n{PRODUCT}") =>
        "config.toml:7: poll.interval: must be at most 30days (got 500000000000years)";
    inventory_interval_too_long: format!("{AUTH}[inventory]\ninterval = \"1y\"\n\n{PRODUCT}") =>
        "config.toml:7: inventory.interval: must be at most 30days (got 1year)";
    inventory_interval_too_short: format!("{AUTH}[inventory]\ninterval = \"9s\"\n\n{PRODUCT}") =>
        "config.toml:7: inventory.interval: must be at least 10s (got 9s)";
}

#[test]
fn an_unreadable_config_file_is_named() {
    let err = config::load(
        Path::new("/nonexistent/config.toml"),
        &LoadOptions::default(),
    )
    .expect_err("missing file");
    assert_eq!(
        err.to_string(),
        "/nonexistent/config.toml: cannot read the configuration file: No such file or directory (os error 2)"
    );
}

#[test]
fn defaults_users_files_and_duplicates() {
    let text = format!(
        "{AUTH}[[products]]\nproduct_id = \"9NBLGGH4R315\"\nsku_id = \"0016\"\n\
         users = [\"alice@contoso.com\", \"Alice@Contoso.com\", \"bob@contoso.com\"]\nusers_file = \"users.txt\"\n"
    );
    let dir = temp_dir(&[
        ("config.toml", &text),
        ("secret.txt", "s3cr3t\n"),
        (
            "users.txt",
            "# staff\nbob@contoso.com\n\n  carol@contoso.com   # new\n",
        ),
    ]);
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("valid");
    assert_eq!(
        c.products[0].users,
        ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("2 duplicate user(s) merged"),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.web.listen_address, ":10043");
    assert_eq!(c.web.telemetry_path, "/metrics");
    assert_eq!(c.store.base_url, "https://bspmts.mp.microsoft.com");
    assert_eq!(c.store.timeout.as_secs(), 10);
    assert_eq!(c.store.max_concurrency, 8);
    assert_eq!(c.store.max_requests_per_second, Some(10.0));
    assert_eq!(c.store.max_retries, 2);
    // The configuration keeps the template; the token client fills it in.
    assert_eq!(
        c.auth.token_url,
        "https://login.microsoftonline.com/{tenant_id}/oauth2/token"
    );
    assert_eq!(
        msfb_seat_exporter::store::token_url(&c.auth),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token"
    );
    assert_eq!(c.auth.resource, "https://onestore.microsoft.com");
    assert_eq!(c.poll.interval.as_secs(), 300);
    assert_eq!((c.poll.shard_index, c.poll.shard_count), (0, 1));
    assert_eq!(c.summary(), "3 targets (1 product, 3 users)");
    // The secret never shows in Debug.
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

#[test]
fn secrets_from_the_environment_and_credentials_directory() {
    use secrecy::ExposeSecret as _;
    let dir = temp_dir(&[("secret", "from-credentials\n")]);
    let creds = dir.path().display().to_string();
    for (key, env, want) in [
        (
            "client_secret_file = \"$CREDENTIALS_DIRECTORY/secret\"",
            ("CREDENTIALS_DIRECTORY", creds.as_str()),
            "from-credentials",
        ),
        (
            "client_secret_env = \"MY_SECRET\"",
            ("MY_SECRET", "from-env"),
            "from-env",
        ),
    ] {
        let text = format!("[auth]\ntenant_id = \"t\"\nclient_id = \"c\"\n{key}\n\n{PRODUCT}");
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        let c = load_with_env(&dir.path().join("config.toml"), &[env]).expect("valid");
        let secret = c.auth.credential.client_secret().expect("a secret");
        assert_eq!(secret.expose_secret(), want, "{key}");
    }
}

#[test]
fn plain_http_is_accepted_with_a_warning() {
    let text = format!("[store]\nbase_url = \"http://127.0.0.1:1/\"\n\n{AUTH}{PRODUCT}");
    let dir = temp_dir(&[("config.toml", &text), ("secret.txt", "x")]);
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("valid");
    assert_eq!(c.store.base_url, "http://127.0.0.1:1");
    assert!(
        c.warnings.iter().any(|w| w.contains("plain http")),
        "{:?}",
        c.warnings
    );
}

/// The shipped example with its secret file replaced by one in a fresh
/// directory (returned with the text).
fn example_with_secret() -> (tempfile::TempDir, String) {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example"))
            .expect("config.toml.example");
    let dir = temp_dir(&[("client_secret", "x")]);
    let secret = dir.path().join("client_secret");
    let text = example.replace(
        "\"$CREDENTIALS_DIRECTORY/client_secret\"",
        &format!("{:?}", secret.display().to_string()),
    );
    assert_ne!(
        text, example,
        "the example names the secret file this test replaces"
    );
    (dir, text)
}

#[test]
fn the_example_file_is_valid_apart_from_the_files_it_names() {
    let (dir, text) = example_with_secret();
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("example is valid");
    assert_eq!(c.summary(), "2 targets (1 product, 2 users)");
    assert_eq!(c.web.listen_address, ":10043");
}

#[test]
fn the_examples_commented_list_and_discovery_settings_are_valid() {
    let (dir, text) = example_with_secret();
    // The first product's commented mode and max_pages, set as shown.
    let mut edited = text.clone();
    for line in ["mode = \"list\"\n", "max_pages = 10000\n"] {
        let commented = format!("\n# {line}");
        assert_eq!(
            edited.matches(&commented).count(),
            1,
            "the example shows {line:?} once, commented out"
        );
        edited = edited.replace(&commented, &format!("\n{line}"));
    }
    // The commented discovery product at the end, every line uncommented.
    let (head, block) = edited
        .split_once("# Discovery: watch every seat the Store lists for a product.\n")
        .expect("the example has a commented discovery block");
    let mut uncommented = head.to_owned();
    for line in block.lines() {
        let line = line
            .strip_prefix("# ")
            .unwrap_or_else(|| panic!("not a commented line in the discovery block: {line:?}"));
        uncommented.push_str(line);
        uncommented.push('\n');
    }
    std::fs::write(dir.path().join("config.toml"), uncommented).unwrap();
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("example is valid");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.products.len(), 2);
    let listed = &c.products[0];
    assert_eq!(listed.mode, Mode::List);
    assert_eq!(listed.max_pages, 10_000);
    assert!(!listed.discover);
    let d = &c.products[1];
    assert_eq!(
        (d.product_id.as_str(), d.sku_id.as_str()),
        ("9WZDNCRFJ3PS", "0010")
    );
    assert!(d.discover);
    assert_eq!(d.mode, Mode::List);
    assert!(d.users.is_empty());
    assert_eq!(d.forget_after, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(d.max_pages, 10_000);
    assert_eq!(c.summary(), "2 targets (2 products, 2 users)");
}

#[test]
fn listing_discovery_and_inventory_defaults() {
    let text = format!(
        "{AUTH}{PRODUCT}\n[[products]]\nproduct_id = \"P2\"\nsku_id = \"S2\"\nusers = \"all\"\n\n\
         [[products]]\nproduct_id = \"P3\"\nsku_id = \"S3\"\nmode = \"list\"\nusers = [\"a@b.c\"]\n"
    );
    let dir = temp_dir(&[("config.toml", &text), ("secret.txt", "x")]);
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("valid");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let week = Duration::from_secs(7 * 24 * 3600);
    let got: Vec<(bool, Mode, Duration, u32)> = c
        .products
        .iter()
        .map(|p| (p.discover, p.mode, p.forget_after, p.max_pages))
        .collect();
    assert_eq!(
        got,
        [
            (false, Mode::PerUser, week, 10_000),
            (true, Mode::List, week, 10_000),
            (false, Mode::List, week, 10_000),
        ]
    );
    assert!(c.products[1].users.is_empty());
    assert!(c.inventory.enabled);
    assert_eq!(c.inventory.interval, Duration::from_secs(3600));
    // Explicit values are taken as written; a disabled inventory's
    // interval is not checked.
    let text = format!(
        "{AUTH}[inventory]\nenabled = false\ninterval = \"1s\"\n\n[[products]]\nproduct_id = \"P\"\n\
         sku_id = \"S\"\nusers = \"all\"\nmode = \"list\"\nforget_after = \"2h\"\nmax_pages = 1000000\n"
    );
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("valid");
    assert!(!c.inventory.enabled);
    let p = &c.products[0];
    assert_eq!(
        (p.discover, p.mode, p.forget_after, p.max_pages),
        (true, Mode::List, Duration::from_secs(7200), 1_000_000)
    );
}

#[test]
fn a_tiny_rate_is_warned_about_not_a_panic() {
    let text = format!("[store]\nmax_requests_per_second = 1e-300\n\n{AUTH}{PRODUCT}");
    let dir = temp_dir(&[("config.toml", &text), ("secret.txt", "x")]);
    // As the daemon loads it: the cycle-fit warning is the poller's.
    let no_env = LoadOptions {
        env: std::sync::Arc::new(|_| None),
        ..LoadOptions::default()
    };
    let c = exporter::load_config(&dir.path().join("config.toml"), &no_env).expect("valid");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("a poll cycle cannot fit: 1 requests at 0.000"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn basic_auth_hashes_of_different_costs_are_warned_about() {
    let hash = |cost: &str| format!("$2b${cost}${}", "a".repeat(53));
    let text = format!(
        "[web]\nbasic_auth_users = {{ prom = \"{}\", grafana = \"{}\", ops = \"{}\" }}\n\n{AUTH}{PRODUCT}",
        hash("12"),
        hash("10"),
        hash("12"),
    );
    let dir = temp_dir(&[("config.toml", &text), ("secret.txt", "x")]);
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("valid");
    assert_eq!(
        c.warnings,
        [
            "web.basic_auth_users: the hashes have different bcrypt costs (10, 12); a refused \
          request for a cheaper user answers faster than for an unknown one, which tells that \
          the user exists: hash every password with the same cost"
        ]
    );
    let same = text.replace(&hash("10"), &hash("12"));
    std::fs::write(dir.path().join("config.toml"), same).unwrap();
    let c = load_with_env(&dir.path().join("config.toml"), &[]).expect("valid");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_cycle_that_cannot_fit_the_interval_is_warned_about() {
    let users: Vec<String> = (0..50).map(|i| format!("\"u{i}@contoso.com\"")).collect();
    let text = format!(
        "[store]\nmax_requests_per_second = 2\n\n{AUTH}[poll]\ninterval = \"20s\"\n\n\
         [[products]]\nproduct_id = \"P\"\nsku_id = \"S\"\nusers = [{}]\n",
        users.join(", ")
    );
    let dir = temp_dir(&[("config.toml", &text), ("secret.txt", "x")]);
    // As the daemon loads it: the cycle-fit warning is the poller's.
    let no_env = LoadOptions {
        env: std::sync::Arc::new(|_| None),
        ..LoadOptions::default()
    };
    let warnings = |text: &str| {
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        exporter::load_config(&dir.path().join("config.toml"), &no_env)
            .expect("valid")
            .warnings
    };
    let fifty_requests = [
        "a poll cycle cannot fit: 50 requests at 2 requests/s take at least 25s, longer than \
          poll.interval (20s); raise store.max_requests_per_second or poll.interval",
    ];
    assert_eq!(warnings(&text), fifty_requests);
    // In list mode the 50 users are one page of one listing.
    let listed = text.replace("sku_id = \"S\"\n", "sku_id = \"S\"\nmode = \"list\"\n");
    let w = warnings(&listed);
    assert!(w.is_empty(), "{w:?}");
    // 5000 listed users are at least 50 pages, which every shard reads.
    let many: Vec<String> = (0..5000).map(|i| format!("\"u{i}@contoso.com\"")).collect();
    let big = listed
        .replace(&users.join(", "), &many.join(", "))
        .replace("[poll]\n", "[poll]\nshard_count = 5\n");
    assert_eq!(warnings(&big), fifty_requests);
    // Split over five shards, each instance's share fits.
    let sharded = text.replace("[poll]\n", "[poll]\nshard_count = 5\n");
    let w = warnings(&sharded);
    assert!(w.is_empty(), "{w:?}");
}
