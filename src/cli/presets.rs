//! `presets` and `init`: the route maps of well-known auth servers (`config/presets/`, built into
//! the binary), and a starter config made from one — the upstream filled in, an admin
//! credential whose token is printed once, then checked as `check` would.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{stdout, table};
use crate::config;

/// A preset: its name and its YAML (whose first comment lines say `# preset:`, `# server:`,
/// `# docs:`).
pub struct Preset {
    pub name: &'static str,
    pub text: &'static str,
}

/// Every file of `config/presets/` (a unit test keeps the list and the folder in step).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "dj-rest-auth",
        text: include_str!("../../config/presets/dj-rest-auth.yaml"),
    },
    Preset {
        name: "django-oauth-toolkit",
        text: include_str!("../../config/presets/django-oauth-toolkit.yaml"),
    },
    Preset {
        name: "fastapi-users",
        text: include_str!("../../config/presets/fastapi-users.yaml"),
    },
    Preset {
        name: "keycloak",
        text: include_str!("../../config/presets/keycloak.yaml"),
    },
    Preset {
        name: "node-oidc-provider",
        text: include_str!("../../config/presets/node-oidc-provider.yaml"),
    },
    Preset {
        name: "ory-kratos",
        text: include_str!("../../config/presets/ory-kratos.yaml"),
    },
    Preset {
        name: "spring-authorization-server",
        text: include_str!("../../config/presets/spring-authorization-server.yaml"),
    },
    Preset {
        name: "supabase-auth",
        text: include_str!("../../config/presets/supabase-auth.yaml"),
    },
];

impl Preset {
    /// The value of a `# key: value` line of the preset's header.
    pub fn header(&self, key: &str) -> Option<&'static str> {
        let text: &'static str = self.text;
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .find_map(|l| l.strip_prefix("# ")?.strip_prefix(key)?.strip_prefix(": "))
    }

    pub fn find(name: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.name == name)
    }
}

/// `authtrail presets`: one line each.
pub fn list() -> Result<i32> {
    let rows: Vec<Vec<String>> = PRESETS
        .iter()
        .map(|p| {
            vec![
                p.name.to_string(),
                p.header("server").unwrap_or("").to_string(),
            ]
        })
        .collect();
    let mut out = stdout();
    out.write_all(table(&["PRESET", "SERVER"], &rows).as_bytes())?;
    writeln!(
        out,
        "\nStart from one: authtrail init --preset NAME --upstream URL -o authtrail.yaml"
    )?;
    Ok(0)
}

/// `init`: what to start from and where to write.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// A preset name (`authtrail presets` lists them).
    #[arg(long)]
    pub preset: String,
    /// The auth server authtrail fronts, e.g. http://127.0.0.1:8000.
    #[arg(long)]
    pub upstream: String,
    /// Write the config here (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn init(a: InitArgs) -> Result<i32> {
    let Some(preset) = Preset::find(&a.preset) else {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        bail!(
            "unknown preset \"{}\": presets are {}",
            a.preset,
            names.join(", ")
        );
    };
    let upstream: http::Uri = a
        .upstream
        .parse()
        .with_context(|| format!("invalid --upstream \"{}\"", a.upstream))?;
    if !matches!(upstream.scheme_str(), Some("http" | "https")) || upstream.host().is_none() {
        bail!(
            "invalid --upstream \"{}\": expected http:// or https:// and a host",
            a.upstream
        );
    }
    if let Some(path) = &a.output {
        if path.exists() && !a.force {
            bail!("{} exists: pass --force to replace it", path.display());
        }
    }
    let token = admin_token()?;
    let text = starter(preset, &a.upstream, &token.1);
    let name = a
        .output
        .as_ref()
        .map_or_else(|| "authtrail.yaml".to_string(), |p| p.display().to_string());
    // Check it as `check` would, with stand-ins for the secrets it reads from the environment.
    let unset = unset_variables(&text);
    for v in &unset {
        std::env::set_var(v, "init-check-stand-in-0123456789abcdef");
    }
    let checked = config::load_str(&text, &name);
    for v in &unset {
        std::env::remove_var(v);
    }
    let cfg = checked.map_err(|e| anyhow::anyhow!("the starter config does not load:\n{e}"))?;
    match &a.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => stdout().write_all(text.as_bytes())?,
    }
    let mut err = std::io::stderr();
    writeln!(
        err,
        "{name}: ok, {} routes from preset {}",
        cfg.routes.routes.len(),
        preset.name
    )?;
    writeln!(
        err,
        "admin token (shown once; the config keeps only its SHA-256): {}",
        token.0
    )?;
    if !unset.is_empty() {
        writeln!(
            err,
            "set before `authtrail serve`: {} (from your secret store; FINGERPRINT_KEY: e.g. `openssl rand -hex 32`)",
            unset.join(", ")
        )?;
    }
    Ok(0)
}

/// A new admin bearer token and its SHA-256.
fn admin_token() -> Result<(String, String)> {
    let mut raw = [0u8; 24];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let token = format!("at_{}", crate::hex::encode(&raw));
    let sha = crate::admin::auth::token_sha256_hex(&token);
    Ok((token, sha))
}

/// The preset with `upstream:` set and an admin listener with one credential appended.
fn starter(preset: &Preset, upstream: &str, token_sha256: &str) -> String {
    let mut out = format!(
        "# authtrail config from the {} preset (`authtrail init`, authtrail {}).\n\
         # Check: authtrail check --config FILE    Serve: authtrail serve --config FILE\n\
         # Unmapped traffic to map next: authtrail coverage --config FILE\n#\n",
        preset.name,
        env!("CARGO_PKG_VERSION")
    );
    for line in preset.text.lines() {
        if line.starts_with("upstream:") {
            out.push_str(&format!("upstream: {upstream}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n# The admin API and the viewer (/v1, /ui): the SHA-256 of the token `init` printed once.\n\
         admin:\n  listen: 127.0.0.1:9090\n  credentials:\n    \
         - {{ name: admin, token_sha256: {token_sha256}, apps: [\"*\"], permissions: [read, export] }}\n"
    ));
    out
}

/// `${NAME}` references without a `:-default` whose variable is not set, outside comments.
fn unset_variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let code = line.split(" #").next().unwrap_or("");
        if code.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("${") {
            let Some(end) = rest[i..].find('}') else {
                break;
            };
            let expr = &rest[i + 2..i + end];
            if !expr.contains(":-")
                && std::env::var_os(expr).is_none()
                && !out.iter().any(|v| v == expr)
            {
                out.push(expr.to_string());
            }
            rest = &rest[i + end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_config_presets_is_built_in_with_its_header() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/presets");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name()?.to_str()?.strip_suffix(".yaml")?.to_string();
                Some(name)
            })
            .collect();
        files.sort();
        let built_in: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        assert_eq!(files, built_in);
        for p in PRESETS {
            assert_eq!(p.header("preset"), Some(p.name));
            assert!(
                p.header("server").is_some_and(|s| !s.is_empty()),
                "{}",
                p.name
            );
            assert!(
                p.header("docs").is_some_and(|s| s.contains("https://")),
                "{}",
                p.name
            );
            assert_eq!(
                p.text
                    .lines()
                    .filter(|l| l.starts_with("upstream:"))
                    .count(),
                1
            );
        }
    }

    #[test]
    fn every_preset_loads_as_check_loads_it() {
        // As `init` checks a starter: the secrets it reads from the environment stood in for.
        let _env = crate::config::TEST_ENV
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (_, sha) = admin_token().unwrap();
        for p in PRESETS {
            let text = starter(p, "http://127.0.0.1:9", &sha);
            let unset = unset_variables(&text);
            for v in &unset {
                std::env::set_var(v, "preset-test-stand-in-0123456789abcdef");
            }
            let loaded = config::load_str(&text, &format!("{}.yaml", p.name));
            for v in &unset {
                std::env::remove_var(v);
            }
            let cfg = loaded.unwrap_or_else(|e| panic!("preset {}:\n{e}", p.name));
            assert!(!cfg.routes.routes.is_empty(), "{}", p.name);
        }
    }

    #[test]
    fn the_starter_sets_the_upstream_and_keeps_only_the_tokens_hash() {
        let p = Preset::find("django-oauth-toolkit").unwrap();
        let (token, sha) = admin_token().unwrap();
        let text = starter(p, "http://10.0.0.7:8000", &sha);
        assert!(text.contains("\nupstream: http://10.0.0.7:8000\n"));
        assert!(text.contains(&sha) && !text.contains(&token));
        assert!(
            unset_variables("a: ${A_SURELY_UNSET_VAR_1}\n# ${B_SURELY_UNSET}\nc: ${C:-x}\n")
                == ["A_SURELY_UNSET_VAR_1"]
        );
    }
}
