//! Configuration loading: the shipped file, error messages that name the key, precedence
//! (flags > environment > file > defaults) and RabbitMQ-compatible password hashes.
//!
//! The environment is always passed as a map; no test touches the process environment.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lagomorph::config::{
    Config, ConfigError, ENV_CONFIG, ENV_VARS, FlushMode, LogFormat, Overrides, UserConfig,
    hash_password, hash_password_with_salt, is_password_hash, verify_password,
};
use proptest::prelude::*;

fn shipped_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lagomorph.toml")
}

fn shipped_text() -> String {
    std::fs::read_to_string(shipped_path()).expect("config/lagomorph.toml is readable")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// An environment lookup over a fixed map.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |key| map.get(key).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Parses `toml` and expects an error naming `key`.
fn expect_error_naming(toml: &str, key: &str) -> ConfigError {
    let err = Config::from_toml_str(toml).expect_err("config should be refused");
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{key}`")),
        "error for {toml:?} does not name `{key}`: {message}"
    );
    assert_eq!(err.key(), Some(key), "{message}");
    err
}

/// All dotted key paths of a TOML table (array-of-tables entries as `name[]`).
fn key_paths(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(sub) => key_paths(sub, &path, out),
            toml::Value::Array(items)
                if items.iter().all(|i| matches!(i, toml::Value::Table(_)))
                    && !items.is_empty() =>
            {
                for item in items {
                    if let toml::Value::Table(sub) = item {
                        key_paths(sub, &format!("{path}[]"), out);
                    }
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped file

#[test]
fn shipped_file_equals_builtin_defaults() {
    let from_file = Config::from_file(&shipped_path()).expect("shipped config is valid");
    let defaults = Config::default();
    // Users are compared by name and tags and by checking the password against the hash, so the
    // test holds even if the shipped hash is re-salted.
    let names = |c: &Config| {
        c.users
            .iter()
            .map(|u| (u.name.clone(), u.tags.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&from_file), names(&defaults));
    assert_eq!(
        names(&from_file),
        vec![("guest".to_owned(), vec!["administrator".to_owned()])]
    );
    let guest = from_file.find_user("guest").expect("guest is configured");
    assert!(guest.check_password("guest"));
    assert!(!guest.check_password("Guest"));
    let without_users = |c: &Config| Config {
        users: Vec::new(),
        ..c.clone()
    };
    assert_eq!(without_users(&from_file), without_users(&defaults));
    // The defaults use a fixed salt, so the whole structures are in fact equal.
    assert_eq!(from_file, defaults);
}

#[test]
fn builtin_defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(
        c.amqp.listeners,
        vec![addr("127.0.0.1:5672"), addr("[::1]:5672")]
    );
    assert_eq!(c.amqp.frame_max, 131_072);
    assert_eq!(c.amqp.channel_max, 2047);
    assert_eq!(c.amqp.heartbeat, 60);
    assert_eq!(c.amqp.max_message_size, 128 * 1024 * 1024);
    assert_eq!(c.amqp.max_connections, 10_000);
    assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
    assert_eq!(c.storage.flush, FlushMode::Batch);
    assert_eq!(c.storage.cache_size_mb, 16);
    assert_eq!(c.storage.queue_memory_window, 10_000);
    assert_eq!(c.storage.queue_memory_window_mb, 32);
    assert_eq!(c.storage.queue_memory_budget_mb, 256);
    assert_eq!(c.default_vhost, "/");
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.management.enabled);
    assert_eq!(c.management.listen, addr("127.0.0.1:15672"));
    assert_eq!(c.memory.high_watermark_mb, 0);
    assert!(verify_password(&c.users[0].password_hash, "guest"));
    c.validate().expect("defaults are valid");
}

#[test]
fn shipped_file_lists_every_key() {
    let shipped: toml::Table = shipped_text().parse().expect("shipped file is TOML");
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    let (mut in_file, mut all) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&shipped, "", &mut in_file);
    key_paths(&defaults, "", &mut all);
    assert_eq!(in_file, all, "config/lagomorph.toml must list every key");
}

#[test]
fn shipped_file_documents_every_environment_variable() {
    let text = shipped_text();
    assert!(text.contains(ENV_CONFIG));
    for var in ENV_VARS {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(var.name))
            .unwrap_or_else(|| panic!("{} is not documented in the header", var.name));
        assert!(line.contains(var.key), "{line:?} should name {}", var.key);
    }
}

#[test]
fn empty_file_means_defaults() {
    assert_eq!(
        Config::from_toml_str("").expect("empty is valid"),
        Config::default()
    );
}

// ---------------------------------------------------------------------------------------------
// Errors name the key

#[test]
fn unknown_keys_are_named_with_their_path() {
    let err = expect_error_naming("[amqp]\nbogus = 1\n", "amqp.bogus");
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("unknown key `amqp.bogus` in "),
        "{err}"
    );
    expect_error_naming("colour = \"blue\"\n", "colour");
    expect_error_naming("[amqpp]\nframe_max = 4096\n", "amqpp");
    expect_error_naming(
        "[[users]]\nname = \"a\"\npassword_hash = \"x\"\npasword = \"typo\"\n",
        "users[0].pasword",
    );
    expect_error_naming("[log]\nlevel = \"info\"\nfromat = \"json\"\n", "log.fromat");
}

#[test]
fn unknown_key_in_a_file_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[storage]\nflush_mode = \"batch\"\n").expect("write");
    let err = Config::from_file(&path).expect_err("unknown key");
    let message = err.to_string();
    assert!(message.contains("`storage.flush_mode`"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn values_of_the_wrong_type_are_named() {
    let err = expect_error_naming("[amqp]\nframe_max = \"big\"\n", "amqp.frame_max");
    assert!(matches!(err, ConfigError::BadValue { .. }), "{err:?}");
    expect_error_naming("[amqp]\nheartbeat = -1\n", "amqp.heartbeat");
    expect_error_naming("[amqp]\nchannel_max = 70000\n", "amqp.channel_max");
    expect_error_naming(
        "[amqp]\nlisteners = [\"localhost:5672\"]\n",
        "amqp.listeners",
    );
    expect_error_naming("[amqp]\nlisteners = \"127.0.0.1:5672\"\n", "amqp.listeners");
    expect_error_naming("[storage]\nflush = \"sometimes\"\n", "storage.flush");
    expect_error_naming("[log]\nformat = \"xml\"\n", "log.format");
    expect_error_naming("[management]\nenabled = \"yes\"\n", "management.enabled");
    expect_error_naming("amqp = 5\n", "amqp");
    expect_error_naming(
        "[[users]]\nname = \"a\"\npassword_hash = \"x\"\ntags = \"administrator\"\n",
        "users[0].tags",
    );
}

#[test]
fn missing_required_user_fields_are_named() {
    let hash = hash_password("pw");
    let toml =
        format!("[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n\n[[users]]\nname = \"b\"\n");
    let err = expect_error_naming(&toml, "users[1]");
    assert!(err.to_string().contains("password_hash"), "{err}");
}

#[test]
fn syntax_errors_give_a_line() {
    let err = Config::from_toml_str("[amqp]\nframe_max = = 3\n").expect_err("bad TOML");
    match &err {
        ConfigError::Syntax { line, .. } => assert_eq!(*line, 2, "{err}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn rule_violations_are_named() {
    let err = expect_error_naming("[amqp]\nframe_max = 100\n", "amqp.frame_max");
    assert_eq!(
        err.to_string(),
        "config key `amqp.frame_max`: must be at least 4096, got 100"
    );
    let cases: &[(&str, &str)] = &[
        ("[amqp]\nframe_max = 2147483649\n", "amqp.frame_max"),
        ("[amqp]\nchannel_max = 0\n", "amqp.channel_max"),
        (
            "[amqp]\nmax_message_size = 536870913\n",
            "amqp.max_message_size",
        ),
        ("[amqp]\nmax_message_size = 0\n", "amqp.max_message_size"),
        ("[amqp]\nmax_connections = 0\n", "amqp.max_connections"),
        ("[amqp]\nlisteners = []\n", "amqp.listeners"),
        (
            "[amqp]\nlisteners = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
            "amqp.listeners",
        ),
        (
            "[storage]\nflush = \"interval\"\n",
            "storage.flush_interval_ms",
        ),
        (
            "[storage]\nqueue_memory_window = 0\n",
            "storage.queue_memory_window",
        ),
        (
            "[storage]\nqueue_memory_window_mb = 0\n",
            "storage.queue_memory_window_mb",
        ),
        (
            "[storage]\nqueue_memory_budget_mb = 0\n",
            "storage.queue_memory_budget_mb",
        ),
        ("[storage]\ndata_dir = \"\"\n", "storage.data_dir"),
        ("default_vhost = \"\"\n", "default_vhost"),
        ("[log]\nlevel = \"\"\n", "log.level"),
        ("[log]\nlevel = \"verbose\"\n", "log.level"),
        ("[log]\nlevel = \"lagomorph=loud\"\n", "log.level"),
        (
            "[management]\nlisten = \"127.0.0.1:5672\"\n",
            "management.listen",
        ),
    ];
    for (toml, key) in cases {
        let err = expect_error_naming(toml, key);
        assert!(
            matches!(err, ConfigError::Invalid { .. }),
            "{toml:?}: {err:?}"
        );
    }
}

#[test]
fn boundary_values_are_accepted() {
    for toml in [
        "[amqp]\nframe_max = 4096\n",
        "[amqp]\nframe_max = 2147483648\n",
        "[amqp]\nchannel_max = 1\n",
        "[amqp]\nchannel_max = 65535\n",
        "[amqp]\nheartbeat = 0\n",
        "[amqp]\nheartbeat = 65535\n",
        "[amqp]\nmax_message_size = 536870912\n",
        "[amqp]\nlisteners = [\"0.0.0.0:0\"]\n",
        "[storage]\nflush = \"interval\"\nflush_interval_ms = 1\n",
        "[log]\nlevel = \"WARN\"\n",
        "[log]\nlevel = \"info,lagomorph::server=trace\"\nformat = \"json\"\n",
        "[management]\nenabled = false\nlisten = \"127.0.0.1:5672\"\n",
        "users = []\n",
    ] {
        Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{toml:?} refused: {e}"));
    }
}

#[test]
fn user_rules() {
    let hash = hash_password("pw");
    let user = |name: &str, tags: &str| {
        format!("[[users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\ntags = [{tags}]\n\n")
    };
    expect_error_naming(&user("", ""), "users[0].name");
    expect_error_naming(
        &format!("{}{}", user("a", ""), user("a", "")),
        "users[1].name",
    );
    let err = expect_error_naming(
        &format!("{}{}", user("a", ""), user("b", "\"admin\"")),
        "users[1].tags",
    );
    assert!(err.to_string().contains("`admin`"), "{err}");
    expect_error_naming(
        "[[users]]\nname = \"a\"\npassword_hash = \"guest\"\n",
        "users[0].password_hash",
    );
    let all_tags = "\"administrator\", \"management\", \"monitoring\", \"policymaker\", \
                    \"impersonator\", \"none\"";
    let c = Config::from_toml_str(&format!("{}{}", user("a", all_tags), user("b", "")))
        .expect("valid users");
    assert_eq!(c.users.len(), 2);
    assert!(c.find_user("a").expect("a").has_tag("policymaker"));
    assert!(c.find_user("b").expect("b").tags.is_empty());
    assert!(c.find_user("guest").is_none(), "[[users]] replaces guest");
    assert!(c.find_user("b").expect("b").check_password("pw"));
}

// ---------------------------------------------------------------------------------------------
// Precedence: flags > environment > file > defaults

struct Layers {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

fn config_file(contents: &str) -> Layers {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lagomorph.toml");
    std::fs::write(&file, contents).expect("write config");
    Layers { _dir: dir, file }
}

const FILE: &str = r#"
[amqp]
listeners = ["127.0.0.1:1001"]
heartbeat = 11
[storage]
data_dir = "/from/file"
[log]
level = "warn"
[management]
listen = "127.0.0.1:2001"
"#;

#[test]
fn precedence_flags_over_env_over_file_over_defaults() {
    let layers = config_file(FILE);
    let env_pairs = [
        ("LAGOMORPH_LISTEN", "127.0.0.1:1002, [::1]:1002"),
        ("LAGOMORPH_DATA_DIR", "/from/env"),
        ("LAGOMORPH_LOG_LEVEL", "error"),
        ("LAGOMORPH_MANAGEMENT_LISTEN", "127.0.0.1:2002"),
    ];
    let flags = Overrides {
        config: Some(layers.file.clone()),
        data_dir: Some(PathBuf::from("/from/flag")),
        listen: vec![addr("127.0.0.1:1003"), addr("[::1]:1003")],
        log_level: Some("debug".to_owned()),
        management_listen: Some(addr("127.0.0.1:2003")),
    };
    let file_only = Overrides {
        config: Some(layers.file.clone()),
        ..Overrides::default()
    };

    // Flags win over everything.
    let c = Config::load(&flags, &env_of(&env_pairs)).expect("valid");
    assert_eq!(c.storage.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(c.amqp.listeners, flags.listen);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.management.listen, addr("127.0.0.1:2003"));
    assert_eq!(c.amqp.heartbeat, 11, "file value with no override");

    // Without flags, the environment wins over the file.
    let c = Config::load(&file_only, &env_of(&env_pairs)).expect("valid");
    assert_eq!(c.storage.data_dir, PathBuf::from("/from/env"));
    assert_eq!(
        c.amqp.listeners,
        vec![addr("127.0.0.1:1002"), addr("[::1]:1002")]
    );
    assert_eq!(c.log.level, "error");
    assert_eq!(c.management.listen, addr("127.0.0.1:2002"));

    // Without environment, the file wins over the defaults.
    let c = Config::load(&file_only, &no_env).expect("valid");
    assert_eq!(c.storage.data_dir, PathBuf::from("/from/file"));
    assert_eq!(c.amqp.listeners, vec![addr("127.0.0.1:1001")]);
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.management.listen, addr("127.0.0.1:2001"));
    assert_eq!(
        c.amqp.frame_max, 131_072,
        "default where the file is silent"
    );

    // Nothing given: built-in defaults, including guest/guest.
    let c = Config::load(&Overrides::default(), &no_env).expect("valid");
    assert_eq!(c, Config::default());
}

#[test]
fn config_file_from_environment_and_flag() {
    let from_env = config_file("default_vhost = \"env-file\"\n");
    let from_flag = config_file("default_vhost = \"flag-file\"\n");
    let env_path = from_env.file.display().to_string();
    let env = env_of(&[(ENV_CONFIG, env_path.as_str())]);
    let c = Config::load(&Overrides::default(), &env).expect("valid");
    assert_eq!(c.default_vhost, "env-file");
    let flags = Overrides {
        config: Some(from_flag.file.clone()),
        ..Overrides::default()
    };
    let c = Config::load(&flags, &env).expect("valid");
    assert_eq!(c.default_vhost, "flag-file");
}

#[test]
fn every_environment_variable_is_applied() {
    let pairs = [
        ("LAGOMORPH_LISTEN", "127.0.0.1:7001"),
        ("LAGOMORPH_FRAME_MAX", "8192"),
        ("LAGOMORPH_CHANNEL_MAX", "16"),
        ("LAGOMORPH_HEARTBEAT", "0"),
        ("LAGOMORPH_MAX_MESSAGE_SIZE", "1024"),
        ("LAGOMORPH_MAX_CONNECTIONS", "5"),
        ("LAGOMORPH_CONSUMER_TIMEOUT", "2500"),
        ("LAGOMORPH_DATA_DIR", "/tmp/x"),
        ("LAGOMORPH_FLUSH", "interval"),
        ("LAGOMORPH_FLUSH_INTERVAL_MS", "25"),
        ("LAGOMORPH_CACHE_SIZE_MB", "8"),
        ("LAGOMORPH_QUEUE_MEMORY_WINDOW", "100"),
        ("LAGOMORPH_QUEUE_MEMORY_WINDOW_MB", "3"),
        ("LAGOMORPH_QUEUE_MEMORY_BUDGET_MB", "7"),
        ("LAGOMORPH_FLUSH_STALL_EXIT_SECS", "0"),
        ("LAGOMORPH_SEGMENT_SIZE_MB", "8"),
        ("LAGOMORPH_DEFAULT_VHOST", "prod"),
        ("LAGOMORPH_LOG_LEVEL", "trace"),
        ("LAGOMORPH_LOG_FORMAT", "json"),
        ("LAGOMORPH_MANAGEMENT_ENABLED", "false"),
        ("LAGOMORPH_MANAGEMENT_LISTEN", "127.0.0.1:7002"),
        ("LAGOMORPH_HIGH_WATERMARK_MB", "512"),
        ("LAGOMORPH_DISK_FREE_LIMIT", "2GiB"),
        ("LAGOMORPH_TLS_ENABLED", "true"),
        ("LAGOMORPH_TLS_LISTEN", "127.0.0.1:7003"),
        ("LAGOMORPH_TLS_CERT_FILE", "/tmp/c.pem"),
        ("LAGOMORPH_TLS_KEY_FILE", "/tmp/k.pem"),
        ("LAGOMORPH_TLS_CA_FILE", "/tmp/ca.pem"),
    ];
    let names: BTreeSet<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let documented: BTreeSet<&str> = ENV_VARS.iter().map(|v| v.name).collect();
    assert_eq!(names, documented, "this test covers every variable");

    let c = Config::load(&Overrides::default(), &env_of(&pairs)).expect("valid");
    assert_eq!(c.amqp.listeners, vec![addr("127.0.0.1:7001")]);
    assert_eq!(c.amqp.frame_max, 8192);
    assert_eq!(c.amqp.channel_max, 16);
    assert_eq!(c.amqp.heartbeat, 0);
    assert_eq!(c.amqp.max_message_size, 1024);
    assert_eq!(c.amqp.max_connections, 5);
    assert_eq!(c.amqp.consumer_timeout, 2500);
    assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.storage.flush, FlushMode::Interval);
    assert_eq!(c.storage.flush_interval_ms, 25);
    assert_eq!(c.storage.cache_size_mb, 8);
    assert_eq!(c.storage.queue_memory_window, 100);
    assert_eq!(c.storage.queue_memory_window_mb, 3);
    assert_eq!(c.storage.queue_memory_budget_mb, 7);
    assert_eq!(c.storage.flush_stall_exit_secs, 0);
    assert_eq!(c.storage.segment_size_mb, 8);
    assert_eq!(c.default_vhost, "prod");
    assert_eq!(c.log.level, "trace");
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(!c.management.enabled);
    assert_eq!(c.management.listen, addr("127.0.0.1:7002"));
    assert_eq!(c.memory.high_watermark_mb, 512);
    assert_eq!(c.disk.free_limit.bytes(), 2 << 30);
    assert!(c.tls.enabled);
    assert_eq!(c.tls.listeners, vec![addr("127.0.0.1:7003")]);
    assert_eq!(c.tls.cert_file, PathBuf::from("/tmp/c.pem"));
    assert_eq!(c.tls.key_file, PathBuf::from("/tmp/k.pem"));
    assert_eq!(c.tls.ca_file, PathBuf::from("/tmp/ca.pem"));
}

#[test]
fn tls_and_disk_keys() {
    let c = Config::from_toml_str(
        "[amqp]\nauth_mechanisms = [\"EXTERNAL\", \"PLAIN\"]\n\
         [tls]\nenabled = true\ncert_file = \"c\"\nkey_file = \"k\"\nca_file = \"ca\"\n\
         verify = \"required\"\nversions = [\"1.3\"]\n\
         cert_login_from = \"subject_alternative_name\"\ncert_login_san_type = \"email\"\n\
         [disk]\nfree_limit = \"1000000TB\"\ncheck_interval_ms = 50\n",
    )
    .expect("valid");
    assert_eq!(c.disk.free_limit.bytes(), 1_000_000_000_000_000_000);
    assert_eq!(c.tls.verify, lagomorph::config::TlsVerify::Required);
    assert_eq!(c.tls.version_flags(), (false, true));
    let c = Config::from_toml_str("[disk]\nfree_limit = 1234\n").expect("bytes");
    assert_eq!(c.disk.free_limit.bytes(), 1234);

    let key_of = |toml: &str| {
        Config::from_toml_str(toml)
            .expect_err("refused")
            .key()
            .map(str::to_owned)
    };
    assert_eq!(
        key_of("[disk]\nfree_limit = \"5 parsecs\"\n").as_deref(),
        Some("disk.free_limit")
    );
    assert_eq!(
        key_of("[tls]\nenabled = true\n").as_deref(),
        Some("tls.cert_file")
    );
    assert_eq!(
        key_of(
            "[tls]\nenabled = true\ncert_file = \"c\"\nkey_file = \"k\"\nverify = \"optional\"\n"
        )
        .as_deref(),
        Some("tls.ca_file")
    );
    // EXTERNAL without client certificates cannot work.
    assert_eq!(
        key_of("[amqp]\nauth_mechanisms = [\"EXTERNAL\"]\n").as_deref(),
        Some("amqp.auth_mechanisms")
    );
    assert_eq!(
        key_of("[amqp]\nauth_mechanisms = [\"CRAM-MD5\"]\n").as_deref(),
        Some("amqp.auth_mechanisms")
    );
    assert_eq!(
        key_of("[tls]\nversions = [\"1.0\"]\n").as_deref(),
        Some("tls.versions")
    );
}

#[test]
fn empty_environment_variables_are_ignored() {
    let env = env_of(&[("LAGOMORPH_DATA_DIR", ""), (ENV_CONFIG, "")]);
    let c = Config::load(&Overrides::default(), &env).expect("valid");
    assert_eq!(c, Config::default());
}

#[test]
fn bad_environment_values_name_the_variable() {
    for (var, value) in [
        ("LAGOMORPH_HEARTBEAT", "soon"),
        ("LAGOMORPH_FRAME_MAX", "-1"),
        ("LAGOMORPH_LISTEN", "127.0.0.1:5672,nowhere"),
        ("LAGOMORPH_LOG_FORMAT", "xml"),
        ("LAGOMORPH_FLUSH", "never"),
        ("LAGOMORPH_MANAGEMENT_ENABLED", "maybe"),
    ] {
        let err =
            Config::load(&Overrides::default(), &env_of(&[(var, value)])).expect_err("bad value");
        assert!(matches!(err, ConfigError::BadEnv { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(var), "{message}");
        assert!(
            message.contains(value.split(',').next_back().unwrap_or(value)),
            "{message}"
        );
    }
    // A well-formed value that breaks a rule is refused by validation, naming the key.
    let err = Config::load(
        &Overrides::default(),
        &env_of(&[("LAGOMORPH_FRAME_MAX", "100")]),
    )
    .expect_err("too small");
    assert_eq!(err.key(), Some("amqp.frame_max"), "{err}");
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.toml");
    let flags = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let err = Config::load(&flags, &no_env).expect_err("no such file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_later_layer_can_repair_an_earlier_one() {
    // Validation runs on the merged result, so a flag can fix what the file got wrong.
    let layers = config_file("[amqp]\nlisteners = []\n");
    let flags = Overrides {
        config: Some(layers.file.clone()),
        listen: vec![addr("127.0.0.1:0")],
        ..Overrides::default()
    };
    let c = Config::load(&flags, &no_env).expect("flag supplies a listener");
    assert_eq!(c.amqp.listeners, vec![addr("127.0.0.1:0")]);
}

// ---------------------------------------------------------------------------------------------
// Password hashes

/// RabbitMQ's documented example (docs/passwords, "Computing Password Hash"): password `test12`
/// with salt `908D C60A`.
#[test]
fn rabbitmq_published_vector() {
    let expected = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
    assert_eq!(
        hash_password_with_salt([0x90, 0x8d, 0xc6, 0x0a], "test12"),
        expected
    );
    assert!(verify_password(expected, "test12"));
    assert!(!verify_password(expected, "test13"));
}

#[test]
fn sha512_hashes_from_rabbitmq_are_accepted() {
    // rabbit_password_hashing_sha512 with the same salt and password as the documented example.
    let sha512 = "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=";
    assert!(is_password_hash(sha512));
    assert!(verify_password(sha512, "test12"));
    assert!(!verify_password(sha512, "test1"));
}

#[test]
fn hashes_are_salted() {
    let a = hash_password("secret");
    let b = hash_password("secret");
    assert!(verify_password(&a, "secret") && verify_password(&b, "secret"));
    // Two random 32-bit salts collide with probability 2^-32.
    assert_ne!(a, b);
    assert_eq!(a.len(), 48, "base64 of 4 + 32 bytes");
    assert!(is_password_hash(&a));
}

#[test]
fn md5_hashes_from_old_rabbitmq_definitions_verify() {
    // base64(salt ++ md5(salt ++ "test12")), rabbit_password_hashing_md5 (RabbitMQ < 3.6).
    let hash = "kI3GChNpte2FApYFXScl+0dIluk=";
    assert!(is_password_hash(hash));
    assert!(verify_password(hash, "test12"));
    assert!(!verify_password(hash, "test13"));
    assert_eq!(
        lagomorph::password::algorithm_of(hash),
        Some("rabbit_password_hashing_md5")
    );
}

#[test]
fn malformed_hashes_never_verify() {
    for hash in [
        "",
        "guest",
        "not base64 at all!",
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2PO",
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR ",
        "kI3GCg==",
        // 24 bytes: neither MD5 (20), SHA-256 (36) nor SHA-512 (68) with their salt.
        "2lmoth8l4H0DViLaK9Fxi6l9ds8AAAAA",
    ] {
        assert!(!verify_password(hash, "test12"), "{hash:?}");
        assert!(!verify_password(hash, ""), "{hash:?}");
        assert!(!is_password_hash(hash), "{hash:?}");
    }
}

#[test]
fn user_config_new_hashes_the_password() {
    let u = UserConfig::new("alice", "wonderland", &["management"]);
    assert_eq!(u.name, "alice");
    assert!(u.check_password("wonderland"));
    assert!(!u.check_password("wonderlan"));
    assert!(u.has_tag("management") && !u.has_tag("administrator"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hash_round_trip(password in ".{0,40}", other in ".{0,40}") {
        let hash = hash_password(&password);
        prop_assert!(verify_password(&hash, &password));
        prop_assert_eq!(verify_password(&hash, &other), other == password);
    }

    #[test]
    fn verify_never_panics(hash in ".{0,120}", password in ".{0,20}") {
        let _ = verify_password(&hash, &password);
        let _ = is_password_hash(&hash);
    }

    #[test]
    fn from_toml_str_never_panics(text in "[\\[\\]a-z_=\" 0-9.\n]{0,80}") {
        let _ = Config::from_toml_str(&text);
    }
}
