//! The sample login page in headless Chromium, served by the service's router (the login part,
//! as the login Lambda mounts it) on 127.0.0.1, with a stub `window.FB` (the real SDK cannot
//! load offline) and the Graph simulator behind `debug_token`.
//!
//! Needs Debian's `chromium` at /usr/bin/chromium (tests/run.sh installs it). Without it the test
//! fails (when run) rather than passing silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use graph_sim::{SimConfig, SimHandle, UserTokenRegistration};
use lc_adapters::graph::{GraphClient, GraphConfig};
use lc_api::Api;
use lc_core::login::login_id::derive_login_id;
use lc_core::login::{Login, LoginConfig};
use lc_core::memory::{MemoryQueue, MemoryStore};
use lc_core::ports::{NoMetrics, SecretSource, SystemClock};
use lc_core::support::privacy::hash_id;
use lc_core::support::secret::{AppCredentials, Secret, Secrets};

const CHROMIUM: &str = "/usr/bin/chromium";
const APP_ID: &str = "100000000000001";
const APP_SECRET: &str = "sim-app-secret";
const CLIENT_TOKEN: &str = "page-test-client-token";
const PAGE: &str = "4242";
const PAGE_TOKEN: &str = "page-test-page-token";
const ASID: &str = "7770001";
const STUB_TOKEN: &str = "STUB-TOKEN";
const GRAPH_VERSION: &str = "v25.0";

/// The stand-in for the Facebook JS SDK: records what the page asks of it, in globals and in the
/// DOM (so `--dump-dom` shows it), answers the login as connected with
/// `user_messenger_contact` granted, then drives the page. Before the login the person is not
/// authorized for the app, or, with `?stub=connected` on the page's address, already connected
/// with `user_messenger_contact` granted (a person who opted in long ago).
const STUB_SDK: &str = r#"
(function () {
  var connected = /[?&]stub=connected(&|$)/.test(location.search);
  function show(id, value) {
    var el = document.createElement('pre');
    el.id = id;
    el.textContent = JSON.stringify(value);
    document.body.appendChild(el);
  }
  window.FB = {
    init: function (opts) { window.__fbInitOpts = opts; show('fb-init-opts', opts); },
    getLoginStatus: function (cb) {
      show('fb-status-asked', true);
      cb(connected
        ? { status: 'connected', authResponse: { accessToken: 'STUB-OLD-TOKEN', userID: 'ignored' } }
        : { status: 'not_authorized' });
    },
    api: function (path, cb) {
      show('fb-api-path', path);
      cb({ data: [
        { permission: 'public_profile', status: 'granted' },
        { permission: 'user_messenger_contact', status: 'granted' }
      ] });
    },
    login: function (cb, opts) {
      window.__fbLoginOpts = opts;
      show('fb-login-opts', opts);
      cb({ status: 'connected', authResponse: {
        accessToken: 'STUB-TOKEN', userID: 'ignored',
        grantedScopes: 'public_profile,user_messenger_contact'
      } });
    },
    XFBML: { parse: function () {} }
  };
  window.fbAsyncInit();
  // The page enables its button once it knows what was granted before.
  (function click() {
    var button = document.getElementById('login-button');
    if (button.disabled) { setTimeout(click, 10); return; }
    button.click();
  })();
})();
"#;

type Posts = Arc<Mutex<Vec<String>>>;

async fn stub_sdk() -> impl IntoResponse {
    ([("content-type", "application/javascript")], STUB_SDK)
}

/// Keeps every `POST /login` body, then hands the request on unchanged.
async fn record_login_posts(State(posts): State<Posts>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || req.uri().path() != "/login" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    posts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(String::from_utf8_lossy(&bytes).into_owned());
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

struct Server {
    base: String,
    login_posts: Posts,
    /// The events queue the login puts opt-ins on.
    queue: Arc<MemoryQueue>,
    _sim: SimHandle,
}

async fn serve() -> Server {
    let sim = graph_sim::start(SimConfig::default().with_page(PAGE, PAGE_TOKEN))
        .await
        .expect("simulator starts");
    sim.register_user_token(UserTokenRegistration {
        token: STUB_TOKEN.into(),
        app_id: None,
        user_id: ASID.into(),
        scopes: vec!["public_profile".into(), "user_messenger_contact".into()],
        expires_at_ms: 0,
        valid: true,
        issued_at_ms: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let graph = GraphClient::new(GraphConfig {
        base_url: sim.base_url(),
        ..GraphConfig::default()
    })
    .expect("graph client");
    let secrets: Arc<dyn SecretSource> = Arc::new(Arc::new(Secrets {
        apps: vec![AppCredentials {
            app_id: APP_ID.into(),
            app_secret: Secret::new(APP_SECRET),
            client_token: Secret::new(CLIENT_TOKEN),
        }],
        verify_token: Secret::new("vt-page-test"),
        page_tokens: BTreeMap::from([(PAGE.to_string(), Secret::new(PAGE_TOKEN))]),
        ref_keys: BTreeMap::from([(
            "1".to_string(),
            Secret::new(base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
        )]),
        page_apps: BTreeMap::new(),
        instagram_tokens: BTreeMap::new(),
        external_id_keys: BTreeMap::new(),
    }));
    let queue = Arc::new(MemoryQueue::new("events"));
    let login = Login::new(
        Arc::new(graph),
        queue.clone(),
        Arc::new(MemoryStore::new()),
        secrets,
        Arc::new(SystemClock),
        Arc::new(NoMetrics),
        LoginConfig {
            default_page_id: PAGE.into(),
            allowed_origins: vec![base.clone()],
            app_id: APP_ID.into(),
            sdk_url: format!("{base}/stub-sdk.js"),
            graph_version: GRAPH_VERSION.into(),
            derive_login_id: true,
            ..LoginConfig::default()
        },
    );
    let login_posts = Posts::default();
    let app = Router::new()
        .route("/stub-sdk.js", get(stub_sdk))
        .merge(Api::new().login(Arc::new(login)).router())
        .layer(middleware::from_fn_with_state(
            login_posts.clone(),
            record_login_posts,
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base,
        login_posts,
        queue,
        _sim: sim,
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Runs Chromium headless with the given action flags; kills it after 90 s.
fn chromium(profile: &Path, action: &[String], url: &str) -> Output {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(action.iter().cloned());
    args.push(url.to_string());
    let mut child = Command::new(CHROMIUM)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    // Drain the pipes while waiting so a large DOM cannot block the child.
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 90 s");
            }
            Err(e) => panic!("waiting for chromium: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

async fn run_chromium(action: Vec<String>, url: String) -> Output {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile =
        std::env::temp_dir().join(format!("lc-login-chromium-{}-{n}", std::process::id()));
    let p = profile.clone();
    let out = tokio::task::spawn_blocking(move || chromium(&p, &action, &url))
        .await
        .expect("chromium runner");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Text content of the element whose start tag contains `id="<id>"` (no nested elements).
fn element_text(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = at + dom[at..].find('>')? + 1;
    let len = dom[start..].find("</")?;
    Some(unescape(&dom[start..start + len]))
}

fn login_posts(server: &Server) -> Vec<String> {
    server
        .login_posts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Loads the page, lets the stub log in (`connected`: the person had granted
/// `user_messenger_contact` before), and checks what the page did and showed: the grant it
/// reports and what the server made of it.
async fn check_page_run(server: &Server, reset: bool, connected: bool) {
    let mut query = Vec::new();
    if reset {
        query.push("reset=1");
    }
    if connected {
        query.push("stub=connected");
    }
    let url = format!("{}/?{}", server.base, query.join("&"));
    let before = login_posts(server).len();
    let queued_before = server.queue.len();
    let out = run_chromium(vec!["--dump-dom".into()], url).await;
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{stderr}\n{dom}",
        out.status
    );
    let context = || format!("DOM:\n{dom}\nchromium stderr:\n{stderr}");

    // It rendered: both options are on the page.
    assert!(dom.contains("id=\"login-button\""), "{}", context());
    assert!(
        dom.contains("class=\"fb-send-to-messenger\"") && dom.contains("data-ref=\"lcr1s_"),
        "{}",
        context()
    );

    let init = element_text(&dom, "fb-init-opts").unwrap_or_else(|| panic!("{}", context()));
    let init: serde_json::Value = serde_json::from_str(&init).expect("init opts JSON");
    assert_eq!(init["appId"], APP_ID);
    assert_eq!(init["version"], GRAPH_VERSION);
    assert_eq!(init["xfbml"], true);

    let opts = element_text(&dom, "fb-login-opts")
        .unwrap_or_else(|| panic!("FB.login was not called\n{}", context()));
    let opts: serde_json::Value = serde_json::from_str(&opts).expect("login opts JSON");
    let scope = opts["scope"].as_str().unwrap_or_default();
    assert!(
        scope.split(',').any(|s| s == "user_messenger_contact"),
        "{opts}"
    );
    assert_eq!(opts["messenger_page_id"], PAGE, "{opts}");
    assert_eq!(opts["reset_messenger_state"], reset, "{opts}");
    assert_eq!(opts["return_scopes"], true, "{opts}");
    // It asked what was granted before the login, and /me/permissions only when connected.
    assert!(
        element_text(&dom, "fb-status-asked").is_some(),
        "{}",
        context()
    );
    assert_eq!(
        element_text(&dom, "fb-api-path"),
        connected.then(|| "\"/me/permissions\"".to_string()),
        "{}",
        context()
    );

    let answer = element_text(&dom, "answer").unwrap_or_default();
    let login_id = derive_login_id(CLIENT_TOKEN, ASID, APP_ID, PAGE);
    // Python: hmac.new(b"page-test-client-token", b"umc_7770001_100000000000001_4242", sha256)
    assert_eq!(
        login_id,
        "79338a85a92ae12530da61eb15cc76a5b9c6316d608a15c57319c8f5bc0e3661"
    );
    // Only a grant the page saw happen (or a reset login) starts the clock.
    let new_grant = reset || !connected;
    assert!(answer.starts_with("HTTP 202"), "{answer}\n{}", context());
    assert!(answer.contains(&hash_id(&login_id)), "{answer}");
    if new_grant {
        assert!(answer.contains("deadline_at"), "{answer}");
        assert!(answer.contains("\"queued\""), "{answer}");
    } else {
        assert!(answer.contains("\"awaiting_webhook\""), "{answer}");
        assert!(answer.contains("\"grant_not_new\""), "{answer}");
        assert!(!answer.contains("deadline_at"), "{answer}");
    }
    assert!(!dom.contains(CLIENT_TOKEN) && !dom.contains(APP_SECRET) && !dom.contains(PAGE_TOKEN));

    let posts = login_posts(server);
    assert_eq!(
        posts.len() - before,
        1,
        "exactly one POST /login: {posts:?}"
    );
    let posted: serde_json::Value =
        serde_json::from_str(&posts[before]).expect("the page posts JSON");
    assert_eq!(posted["access_token"], STUB_TOKEN);
    assert_eq!(posted["page_id"], PAGE);
    assert_eq!(
        posted["grant"],
        if new_grant { "new" } else { "existing" },
        "reset={reset} connected={connected}"
    );
    assert_eq!(server.queue.len() - queued_before, usize::from(new_grant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: run tests/run.sh"]
async fn login_page_in_headless_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run tests/run.sh (it installs Debian's chromium package), \
         or apt-get install -y chromium"
    );
    let server = serve().await;
    // First login: not authorized before, granted now.
    check_page_run(&server, false, false).await;
    // A person who opted in long ago logs in again: no new grant, nothing queued.
    check_page_run(&server, false, true).await;
    // An admin re-testing with reset_messenger_state: the consent is shown again.
    check_page_run(&server, true, true).await;

    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    let shot = dir.join("login-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_chromium(
        vec![
            format!("--screenshot={}", shot.display()),
            "--window-size=1000,800".into(),
        ],
        format!("{}/", server.base),
    )
    .await;
    assert!(
        out.status.success(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000, "not a PNG");
    let shot = shot.canonicalize().unwrap_or(shot);
    println!("login page screenshot: {}", shot.display());
}
