//! Browser-test support: a broker with its management listener on port 0, and a headless
//! Debian `chromium` driven through `chromedriver` by fantoccini (WebDriver on loopback).
//!
//! When chromium or chromedriver is missing the tests print a loud SKIPPED line and pass,
//! unless `LAGOMORPH_UI_TESTS=require` (set by CI), which turns a missing browser into a
//! failure. `LAGOMORPH_CHROMIUM` / `LAGOMORPH_CHROMEDRIVER` override the binaries' paths.
#![allow(dead_code, unreachable_pub)]

use crate::support::{TestBroker, serve_management, start};
use fantoccini::{Client, ClientBuilder, Locator};
use lagomorph::broker::{Permission, User};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long any one wait in the browser may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// The browser tests share one machine's two cores: one browser at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// The chromium and chromedriver binaries, or `None` (after saying so) when the tests must
/// be skipped.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("LAGOMORPH_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which(&["chromium", "chromium-browser", "google-chrome"]));
    let driver = std::env::var_os("LAGOMORPH_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which(&["chromedriver"]));
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let msg = format!(
                "chromium ({}) or chromedriver ({}) not found: install Debian's `chromium` and \
                 `chromium-driver` (apt-get install -y chromium chromium-driver)",
                c.map_or("missing".into(), |p| p.display().to_string()),
                d.map_or("missing".into(), |p| p.display().to_string()),
            );
            if std::env::var("LAGOMORPH_UI_TESTS").as_deref() == Ok("require") {
                panic!("LAGOMORPH_UI_TESTS=require and {msg}");
            }
            eprintln!("\n=== SKIPPED browser test: {msg} ===\n");
            None
        }
    }
}

/// chromedriver, in its own process group so that it and the browsers it started go together.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(driver: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        // A free port: bind 0, read it, let it go; chromedriver takes it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group we created: chromedriver and the chromium it started.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker, its management listener and a browser on it.
pub struct Ui {
    pub base: String,
    pub b: TestBroker,
    pub c: Client,
    pub downloads: tempfile::TempDir,
    token: CancellationToken,
    _profile: tempfile::TempDir,
    _driver: Driver,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// A broker with the UI and a fresh headless chromium, or `None` when browsers are missing.
pub async fn ui() -> Option<Ui> {
    ui_with(Duration::from_secs(5)).await
}

/// As [`ui`], with the rate sampler ticking every `sample`.
pub async fn ui_with(sample: Duration) -> Option<Ui> {
    let (chromium, driver) = browser_binaries()?;
    let turn = ONE_AT_A_TIME.lock().await;
    let b = start().await;
    let (base, token) = serve_management(
        &b,
        lagomorph::management::Options {
            sample_interval: sample,
            amqp_listeners: vec![b.addr],
            data_dir: Some(b.dir.clone()),
            ..Default::default()
        },
    )
    .await;
    let driver = Driver::start(&driver);
    let profile = tempfile::tempdir().expect("profile dir");
    let downloads = tempfile::tempdir().expect("downloads dir");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
            "prefs": {
                "download.default_directory": downloads.path(),
                "download.prompt_for_download": false,
            },
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("WebDriver session with chromium");
    Some(Ui {
        base,
        b,
        c,
        downloads,
        token,
        _profile: profile,
        _driver: driver,
        _turn: turn,
    })
}

impl Ui {
    /// Ends the browser session and the broker.
    pub async fn finish(self) {
        let _ = self.c.clone().close().await;
        self.token.cancel();
    }

    /// Opens a page of the UI (`#/queues`...).
    pub async fn open(&self, hash: &str) {
        self.c
            .goto(&format!("{}/{hash}", self.base))
            .await
            .expect("goto");
    }

    /// Adds a user with a password, tags and (optionally) full permissions in `vhost`.
    pub fn add_user(&self, name: &str, password: &str, tags: &[&str], vhost: Option<&str>) {
        let access = self.b.broker.access();
        access
            .put_user(User {
                name: name.into(),
                password_hash: lagomorph::password::hash_password(password),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            })
            .expect("user");
        if let Some(vh) = vhost {
            access
                .put_permission(Permission {
                    user: name.into(),
                    vhost: vh.into(),
                    configure: ".*".into(),
                    write: ".*".into(),
                    read: ".*".into(),
                })
                .expect("permission");
        }
    }

    /// Logs in through the login form and waits for the navigation.
    pub async fn login(&self, user: &str, password: &str) {
        self.open("#/").await;
        self.type_into("#login input[name=username]", user).await;
        self.type_into("#login input[name=password]", password)
            .await;
        self.click("#login button[type=submit]").await;
        self.wait_text("#who .user", |t| t == user).await;
    }

    /// Logs out with the header's button and waits for the login form.
    pub async fn logout(&self) {
        self.click("#logout").await;
        self.wait_for("#login").await;
    }

    /// Waits for an element.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Waits until the text of the first element matching `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.c.find(Locator::Css(css)).await
                && let Ok(t) = el.text().await
            {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
            assert!(
                Instant::now() < deadline,
                "text of {css} never matched; last: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clears an input and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.wait_for(css).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// Chooses the option with `value` in a `<select>`.
    pub async fn choose(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Runs JavaScript in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.expect("execute")
    }

    /// Saves a PNG of the window under target/ui-screenshots (for a human look) and returns
    /// its bytes.
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.c.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.png")), &png);
        png
    }
}
