//! The binary itself: `check`, `explain`, `query`, and `serve` under SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use support::harness::send;
use support::upstream;

const BIN: &str = env!("CARGO_BIN_EXE_authtrail");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run authtrail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_every_error_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "upstream: http://127.0.0.1:9000\nroutes:\n  - id: a\n    match: { path: \"/x/{id\" }\n    event: auth.login\n  - id: a\n    match: { path: /y }\n    event: auth.login\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    let p = path.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "authtrail: {p}:4:20: routes[0].match.path: invalid path template \"/x/{{id\": unclosed brace\n{p}:6:9: routes[1].id: duplicate route id \"a\" (first defined at line 3)"
        )
    );
}

#[test]
fn check_prints_the_route_table_and_explain_says_why() {
    let (code, out, err) = run(&["check", "--config", "config/demo.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("config/demo.yaml: ok, 8 routes\nID "),
        "{out}"
    );
    assert!(out.contains("deactivate-user          POST     *     /v1/apps/{app}/users/{user_id}/deactivate  account.deactivate"), "{out}");

    let (code, out, _) = run(&[
        "explain",
        "--config",
        "config/demo.yaml",
        "POST",
        "/v1/token/refresh",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "skip  login (line 26): path has 3 segments, template has 2 and no \"*\"\n\
         skip  logout (line 41): segment 2 is \"token\", template wants \"sessions\"\n\
         MATCH refresh (line 50) → event token.refresh\n"
    );
    let (_, out, _) = run(&[
        "explain",
        "--config",
        "config/demo.yaml",
        "GET",
        "/v1/public/info",
    ]);
    assert!(
        out.ends_with(
            "no route matches GET /v1/public/info: forwarded untouched, counted as unmapped\n"
        ),
        "{out}"
    );
    // A target an upstream may read as a mapped route is named as ambiguous, with what it gets.
    let (_, out, _) = run(&[
        "explain",
        "--config",
        "config/demo.yaml",
        "POST",
        "/v1/apps/app-alpha/users/u1/deactivate;x=1",
    ]);
    assert!(
        out.starts_with("AMBIGUOUS: read as matrix_params (see docs/request-targets.md), the target is POST /v1/apps/app-alpha/users/u1/deactivate of route deactivate-user (line 89): refused with 400 ambiguous_path and recorded as request.rejected\n"),
        "{out}"
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, _, err) = run(&["check", "--config", "/nonexistent/authtrail.yaml"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "authtrail: config /nonexistent/authtrail.yaml: No such file or directory (os error 2)"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_their_events_are_stored() {
    let up = upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://{}\nstore: {{ url: \"sqlite://{}\" }}\nroutes:\n  - id: slow\n    match: {{ path: /slow }}\n    event: auth.login\n    actor: {{ response_body: /user/id }}\n",
            up.addr,
            db.display()
        ),
    )
    .unwrap();
    let (mut child, addr, _stderr) = support::child::serve(&cfg);
    let url = format!("http://{addr}/slow");
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send(Method::POST, &url, &[], Bytes::new()).await })
        })
        .collect();
    for _ in 0..400 {
        if up.slow_started.load(std::sync::atomic::Ordering::SeqCst) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(up.slow_started.load(std::sync::atomic::Ordering::SeqCst), 4);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for t in inflight {
        assert_eq!(t.await.unwrap().unwrap().status, StatusCode::OK);
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let (code, out, err) = run(&["query", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    assert!(events
        .iter()
        .all(|e| e["actor"]["id"] == "u-slow" && e["outcome"] == "success"));
    let (_, table, _) = run(&[
        "query",
        "--config",
        cfg.to_str().unwrap(),
        "--type",
        "auth.*",
        "--since",
        "1h",
        "--outcome",
        "success",
    ]);
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(table.starts_with("TIME "));
    let (_, none, _) = run(&[
        "query",
        "--config",
        cfg.to_str().unwrap(),
        "--type",
        "token.*",
    ]);
    assert_eq!(none.lines().count(), 1, "{none}");
}

#[test]
fn query_refuses_a_limit_out_of_the_admin_apis_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstream: http://127.0.0.1:9\nstore: {{ url: \"sqlite://{}\" }}\nroutes: []\n",
            dir.path().join("trail.db").display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    for (limit, why) in [
        ("0", "invalid limit \"0\": expected a number from 1 to 1000"),
        (
            "1001",
            "invalid limit \"1001\": expected a number from 1 to 1000",
        ),
        (
            "20000",
            "invalid limit \"20000\": expected a number from 1 to 1000",
        ),
        (
            "-1",
            "invalid limit \"-1\": expected a number from 1 to 1000",
        ),
    ] {
        let (code, out, err) = run(&["query", "--config", cfg, "--limit", limit, "--json"]);
        assert_eq!((code, out.as_str()), (2, ""), "--limit {limit}: {err}");
        assert_eq!(err.trim_end(), format!("authtrail: {why}"));
    }
    for limit in ["1", "1000"] {
        let (code, _, err) = run(&["query", "--config", cfg, "--limit", limit]);
        assert_eq!(code, 0, "--limit {limit}: {err}");
    }
}

/// Run `args` with a standard output whose reader is already gone: a pipe with its read end
/// closed before the child starts (close-on-exec, so no concurrent spawn inherits it).
#[cfg(target_os = "linux")]
fn run_to_closed_stdout(args: &[&str]) -> (i32, String) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is owned exactly once below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fds[0] is the read end just created and used nowhere else.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
    // SAFETY: fds[1] is the write end just created, moved into the child's stdout.
    let writer = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
    let out = Command::new(BIN)
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run authtrail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstream: http://127.0.0.1:9\nstore: {{ url: \"sqlite://{}\" }}\nroutes:\n  - id: login\n    match: {{ path: /login }}\n    event: auth.login\n",
            dir.path().join("trail.db").display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let commands: [&[&str]; 7] = [
        &["check", "--config", c],
        &["check", "--config", "config/demo.yaml"],
        &["explain", "--config", c, "POST", "/login"],
        &["query", "--config", c],
        &["export", "--config", c, "--format", "csv"],
        &["verify", "--config", c],
        &["keygen"],
    ];
    for args in commands {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!out.is_empty(), "{args:?} prints something");
        let (code, err) = run_to_closed_stdout(args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?} to a closed stdout");
    }
}

#[test]
fn text_logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: http://127.0.0.1:9\nstore: {{ url: \"sqlite://{}\" }}\nroutes: []\n",
            dir.path().join("trail.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains("authtrail serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("authtrail serving"), "{seen}");
    assert!(
        !seen.contains('\u{1b}'),
        "ANSI codes in a piped log:\n{seen:?}"
    );
}

fn run_env(args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("run authtrail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn presets_are_listed_and_init_writes_a_checked_starter_with_a_one_time_admin_token() {
    let (code, out, _) = run(&["presets"]);
    assert_eq!(code, 0);
    for name in ["dj-rest-auth", "django-oauth-toolkit", "node-oidc-provider"] {
        assert!(out.contains(name), "{out}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authtrail.yaml");
    let f = file.to_str().unwrap();
    let init = [
        "init",
        "--preset",
        "django-oauth-toolkit",
        "--upstream",
        "http://127.0.0.1:9",
        "-o",
        f,
    ];
    let (code, _, err) = run_env(&init, &[], &["FINGERPRINT_KEY"]);
    assert_eq!(code, 0, "{err}");
    let token = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("admin token (shown once; the config keeps only its SHA-256): ")
        })
        .unwrap_or_else(|| panic!("no token in {err}"));
    assert!(
        err.contains("set before `authtrail serve`: FINGERPRINT_KEY"),
        "{err}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nupstream: http://127.0.0.1:9\n"));
    assert!(text.contains(&authtrail::admin::auth::token_sha256_hex(token)));
    assert!(!text.contains(token), "the token itself is never written");
    // The file serves as written once its secret is set.
    let (code, out, err) = run_env(
        &["check", "--config", f],
        &[("FINGERPRINT_KEY", "cli-init-test-fingerprint-key")],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{f}: ok, ")), "{out}");

    // Never over a file without --force; an unknown preset names the known ones.
    let (code, _, err) = run(&init);
    assert_ne!(code, 0);
    assert!(err.contains("exists: pass --force"), "{err}");
    let (code, _, err) = run(&["init", "--preset", "auth0", "--upstream", "http://x:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown preset \"auth0\": presets are dj-rest-auth, django-oauth-toolkit, fastapi-users, keycloak, node-oidc-provider, ory-kratos, spring-authorization-server, supabase-auth"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_asks_the_running_sidecar_for_unmapped_shapes_and_idle_routes() {
    use support::admin::{credentials_yaml, ROUTES, TOKEN_ALL, TOKEN_ALPHA};
    let up = upstream::spawn().await;
    let mut sc = support::harness::start(up.addr, &credentials_yaml(), ROUTES).await;
    for _ in 0..3 {
        let r = send(Method::GET, &sc.url("/echo-headers"), &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
    }
    // Only `admin.listen` is read: the rest of the file may name secrets that are not set.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstream: http://127.0.0.1:9\nadmin: {{ listen: \"0.0.0.0:{}\" }}\ntrust:\n  fingerprint_key: ${{SURELY_UNSET_KEY_FOR_COVERAGE}}\n",
            sc.admin.port()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap().to_string();
    let ask = move |token: &'static str| {
        let c = c.clone();
        tokio::task::spawn_blocking(move || {
            run_env(
                &["coverage", "--config", &c],
                &[("AUTHTRAIL_ADMIN_TOKEN", token)],
                &[],
            )
        })
    };
    let (code, out, err) = ask(TOKEN_ALL).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Unmapped requests (1 shapes):"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("GET"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["GET", "/echo-headers", "3"], "{out}");
    assert!(
        out.contains("Mapped routes with no traffic: login, logout"),
        "{out}"
    );
    // A credential scoped to some apps is told why it sees nothing.
    let (code, out, _) = ask(TOKEN_ALPHA).await.unwrap();
    assert_eq!(code, 0);
    assert!(out.contains("needs one that sees every app"), "{out}");
    // A wrong token is the API's 401, as an error.
    let (code, _, err) = ask("not-a-token").await.unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    sc.stop().await;
}

#[test]
fn query_and_export_need_no_secret_they_never_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("authtrail.yaml");
    let write = |store: &str| {
        std::fs::write(
            &cfg,
            format!(
                "upstream: http://127.0.0.1:9\nstore:\n  url: {store}\n  checkpoint: {{ signing_key: \"${{RO_TEST_CHECKPOINT_KEY}}\" }}\ntrust:\n  fingerprint_key: ${{RO_TEST_FINGERPRINT_KEY}}\nkeys:\n  hs:\n    secret: ${{RO_TEST_HMAC_SECRET}}\nsinks:\n  siem: {{ webhook: \"http://127.0.0.1:9/hook\", secret: \"${{RO_TEST_WEBHOOK_SECRET}}\" }}\nroutes:\n  - id: login\n    match: {{ path: /login }}\n    event: auth.login\n    actor: {{ claim: sub }}\n"
            ),
        )
        .unwrap();
    };
    let store = format!("\"sqlite://{}\"", dir.path().join("trail.db").display());
    write(&store);
    let c = cfg.to_str().unwrap();
    let unset = [
        "RO_TEST_CHECKPOINT_KEY",
        "RO_TEST_FINGERPRINT_KEY",
        "RO_TEST_HMAC_SECRET",
        "RO_TEST_WEBHOOK_SECRET",
        "RO_TEST_STORE",
    ];
    let (code, out, err) = run_env(&["query", "--config", c], &[], &unset);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("TIME"), "{out}");
    let (code, _, err) = run_env(&["export", "--config", c], &[], &unset);
    assert_eq!(code, 0, "{err}");
    // What serves still needs them: the first one unset is named where it is read.
    let (code, _, err) = run_env(&["check", "--config", c], &[], &unset);
    assert_eq!(code, 2);
    assert!(
        err.contains(":6:20: trust.fingerprint_key: environment variable \"RO_TEST_FINGERPRINT_KEY\" is not set"),
        "{err}"
    );
    // verify needs the key it checks with: the signing key, or its public key.
    let (code, _, err) = run_env(&["verify", "--config", c], &[], &unset);
    assert_ne!(code, 0);
    assert!(
        err.contains("verify needs only store.checkpoint.public_key"),
        "{err}"
    );
    // The store's URL is needed by every command that reads it, and named with its line.
    write("${RO_TEST_STORE}");
    let (code, _, err) = run_env(&["query", "--config", c], &[], &unset);
    assert_ne!(code, 0);
    assert!(
        err.contains(":3:8: store.url: environment variable \"RO_TEST_STORE\" is not set"),
        "{err}"
    );
}

#[test]
fn completions_and_the_manual_page_are_generated_from_the_commands() {
    let (code, out, err) = run(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("_authtrail()") && out.contains("coverage"),
        "{out}"
    );
    let (code, out, _) = run(&["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("#compdef authtrail"), "{out}");
    let (code, out, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(".TH authtrail") && out.contains("verify"),
        "{out}"
    );
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}
