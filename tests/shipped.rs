//! Every YAML file the repository ships is a test: each workflow under
//! `workflows/`, `examples/` and `benches/` passes `flightpath validate`
//! (with a placeholder for every variable it reads), and every rules file
//! under `anonymizers/` loads and is built into the binary as a preset.

use std::path::{Path, PathBuf};

use crate::support::cli::Test;
use crate::support::http::{HttpServer, Reply};
use crate::support::s3::S3Server;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Every YAML file under `workflows/`, `examples/` and `benches/`.
fn shipped_yaml() -> Vec<PathBuf> {
    let root = repository();
    let mut files = Vec::new();
    for dir in ["workflows", "examples", "benches"] {
        yaml_files(&root.join(dir), &mut files);
    }
    files
}

/// `${NAME}` references without a default, by name.
fn variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        rest = &rest[at + 2..];
        let end = rest.find('}').unwrap_or(rest.len());
        let inner = &rest[..end];
        // Variables with a default need no value.
        let name = if inner.contains(":-") { "" } else { inner };
        if !name.starts_with("steps.") && !name.is_empty() && !names.contains(&name.to_string()) {
            names.push(name.to_string());
        }
    }
    names
}

#[test]
fn every_shipped_workflow_validates() {
    let mut files = shipped_yaml();
    // Rules files beside workflows are checked by the test below, GitHub's
    // own workflow files by the one after it.
    files.retain(|f| !is_rules_file(f) && !is_github_workflow(f));
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("workflows/reset-staging.yaml")),
        "the runbook is missing from {files:?}"
    );
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut args = vec!["validate".to_string(), file.display().to_string()];
        for name in variables(&text) {
            args.push("--var".into());
            args.push(format!(
                "{name}=postgres://user@db.invalid/{}",
                name.to_lowercase()
            ));
        }
        let out = Test::new().args(args).run();
        assert_eq!(
            out.code,
            0,
            "{} does not validate:\n{}",
            file.display(),
            out.stderr
        );
    }
}

/// A GitHub Actions workflow (`examples/github-actions/`), not flightpath's.
fn is_github_workflow(path: &Path) -> bool {
    path.parent()
        .is_some_and(|dir| dir.ends_with("examples/github-actions"))
}

/// `check-jsonschema` (PyPI), which carries GitHub's published schemas for
/// actions and workflows; `.ci/run` installs it when it is missing.
fn check_jsonschema(schema: &str, files: &[PathBuf]) {
    let out = std::process::Command::new("check-jsonschema")
        .arg("--builtin-schema")
        .arg(schema)
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run check-jsonschema ({e}): install it with `pip install check-jsonschema` (.ci/run does)"
            )
        });
    assert!(
        out.status.success(),
        "{files:?} do not validate against {schema}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_action_and_the_example_github_workflows_validate_against_githubs_schemas() {
    let root = repository();
    check_jsonschema("vendor.github-actions", &[root.join("action.yml")]);
    let mut workflows = Vec::new();
    yaml_files(&root.join("examples/github-actions"), &mut workflows);
    workflows.sort();
    let names: Vec<_> = workflows
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["plan-on-pr.yml", "reset-staging.yml"]);
    check_jsonschema("vendor.github-workflows", &workflows);
}

/// What the schema cannot say: every `run:` step of the action names its
/// shell, and inputs reach scripts through `env:`, never pasted into the
/// script's text (where a value with a quote in it would become code).
#[test]
fn the_actions_scripts_name_their_shell_and_take_inputs_through_the_environment() {
    let text = std::fs::read_to_string(repository().join("action.yml")).unwrap();
    let action: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let steps = action["runs"]["steps"].as_array().unwrap();
    let scripts: Vec<&serde_json::Value> =
        steps.iter().filter(|s| s.get("run").is_some()).collect();
    assert!(scripts.len() >= 3, "{steps:?}");
    for step in scripts {
        let name = step["name"].as_str().unwrap_or("?");
        assert_eq!(step["shell"], "bash", "step `{name}` names no shell");
        let script = step["run"].as_str().unwrap();
        assert!(
            !script.contains("${{"),
            "step `{name}` pastes an expression into its script:\n{script}"
        );
    }
    let inputs = action["inputs"].as_object().unwrap();
    let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "workflow",
            "dry-run",
            "args",
            "working-directory",
            "version"
        ]
    );
    assert_eq!(inputs["dry-run"]["default"], "true");
    let outputs: Vec<&str> = action["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(outputs, ["run-id", "status", "report-path"]);
}

/// An anonymizer rules file: a top-level `tables:` and no `steps:`.
fn is_rules_file(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().any(|l| l.starts_with("tables:")) && !text.lines().any(|l| l.starts_with("steps:"))
}

#[test]
fn rules_files_beside_workflows_load() {
    use flightpath::anonymize::rules;
    use flightpath::syntax::template::Vars;

    let mut files = shipped_yaml();
    files.retain(|f| is_rules_file(f));
    assert!(
        files.iter().any(|f| f.ends_with("workflows/site.yaml"))
            && files
                .iter()
                .any(|f| f.ends_with("benches/anonymizers/bench.yaml")),
        "{files:?}"
    );
    let vars = Vars::only(Default::default());
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let dir = file.parent().unwrap().to_path_buf();
        if let Err(e) = rules::load(&[name], &[dir], &vars) {
            panic!("{} does not load: {e:?}", file.display());
        }
    }
}

#[test]
fn every_shipped_rules_file_loads_and_every_preset_is_built_in() {
    use flightpath::anonymize::rules::{self, PRESETS, RulesError};
    use flightpath::syntax::template::Vars;

    let dir = repository().join("anonymizers");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    assert!(files.len() >= 4, "presets missing: {files:?}");
    let vars = Vars::only(Default::default());
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        match rules::load(
            std::slice::from_ref(&name),
            std::slice::from_ref(&dir),
            &vars,
        ) {
            Ok(set) => assert!(!set.tables.is_empty(), "{name} has no tables"),
            Err(RulesError {
                problems,
                unreadable,
            }) => panic!(
                "{name} does not load: {unreadable:?}\n{}",
                flightpath::syntax::diagnostics::render(&problems, false)
            ),
        }
        // The same text is built into the binary as `preset:<name>`.
        let stem = name.trim_end_matches(".yaml");
        let built_in = PRESETS.iter().find(|(n, _)| *n == stem);
        assert_eq!(
            built_in.map(|(_, text)| *text),
            Some(std::fs::read_to_string(file).unwrap().as_str()),
            "{name} is not built in as preset:{stem}"
        );
        let by_name = vec![format!("preset:{stem}")];
        if let Err(e) = rules::load(&by_name, &[], &vars) {
            panic!("preset:{stem} does not load: {e:?}");
        }
    }
}

#[path = "../examples/demo/files.rs"]
mod demo_files;
#[path = "../examples/demo/repo.rs"]
mod demo_repo;
#[path = "../examples/demo/site.rs"]
#[allow(dead_code)]
mod demo_site;

/// The demo's world in a test dir, as `cargo run --example demo` makes it:
/// prod and staging seeded with the Wagtail site (staging with its QA
/// logins), the git repository as `app/`, the media (in two buckets of
/// `s3`, as the demo has them, or else in `media/prod` and
/// `media/staging`), the stand-in `manage.py`, and `site` answering the
/// smoke check. Returns the runbook's `--var`s and the two database URLs.
fn demo_world(
    test: &Test,
    staging_name: &str,
    site: &HttpServer,
    s3: Option<&S3Server>,
) -> (Vec<String>, String, String) {
    use crate::support::pg::{block_on, fresh_db_sync, staging_db};
    let prod = fresh_db_sync();
    block_on(demo_site::production(&prod.url)).unwrap();
    let staging = staging_db(staging_name);
    block_on(demo_site::staging(&staging)).unwrap();
    demo_repo::create(test.dir()).unwrap();
    let (prod_media, staging_media) = match s3 {
        Some(server) => {
            server.create_bucket("prod-media");
            server.create_bucket("staging-media");
            demo_files::media(
                &server.bucket_dir("prod-media"),
                &server.bucket_dir("staging-media"),
            )
            .unwrap();
            (
                server.url("prod-media", ""),
                server.url("staging-media", ""),
            )
        }
        None => {
            demo_files::media(
                &test.dir().join("media/prod"),
                &test.dir().join("media/staging"),
            )
            .unwrap();
            ("media/prod".to_string(), "media/staging".to_string())
        }
    };
    demo_files::manage_py(test.dir()).unwrap();
    site.route("/", [Reply::new(200, "staging is up")]);
    let vars = [
        format!("PRODUCTION_DATABASE_URL={}", prod.url),
        format!("STAGING_DATABASE_URL={staging}"),
        format!("PRODUCTION_MEDIA_URL={prod_media}"),
        format!("STAGING_MEDIA_URL={staging_media}"),
        "APP_REPO=app".into(),
        "MANAGE=./manage.py".into(),
        format!("STAGING_URL={}", site.url("/")),
        "FLIGHTPATH_SECRET=shipped-demo-secret".into(),
    ];
    let args = vars
        .into_iter()
        .flat_map(|v| ["--var".to_string(), v])
        .collect();
    (args, prod.url.clone(), staging)
}

fn runbook() -> String {
    repository()
        .join("workflows/reset-staging.yaml")
        .display()
        .to_string()
}

fn origin_branch(test: &Test, branch: &str) -> git2::Oid {
    git2::Repository::open_bare(test.dir().join("origin.git"))
        .unwrap()
        .refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap()
}

fn origin_staging(test: &Test) -> git2::Oid {
    origin_branch(test, "staging")
}

/// Where `needle` is in `text`, or a failure showing `text`.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
}

#[test]
fn the_runbook_plan_shows_the_branch_pre_flight_and_what_the_reset_drops() {
    let test = Test::new();
    let site = HttpServer::start();
    let (vars, _, staging) = demo_world(&test, "shipped_demo_plan_fp", &site, None);
    let before = origin_staging(&test);
    let mut args = vec!["plan".to_string(), runbook()];
    args.extend(vars);
    let test = test.args(args);
    let out = test.run();
    out.expect_code(0);
    let text = &out.stdout;
    // The pre-flight table, each branch where it stands.
    let table = at(text, "branch                    status            tip");
    for row in [
        "origin/feature/banner     stale on staging",
        "origin/feature/login-fix  in both",
        "origin/feature/search     on staging only",
    ] {
        assert!(at(text, row) > table, "{row} is not in the table:\n{text}");
    }
    // The reset's plan: what it drops.
    let reset = at(
        text,
        "would reset `staging` to main, dropping 4 commits (feature/banner, feature/search), and push it",
    );
    assert!(table < reset, "{text}");
    for line in [
        "Merge branch 'feature/banner' into staging  Dana Dunmore",
        "Merge branch 'feature/search' into staging  Dana Dunmore",
        "Add site search                             Dana Dunmore",
    ] {
        assert!(at(text, line) > reset, "{line}:\n{text}");
    }
    assert!(!text.contains("dana@example.com"), "{text}");
    // The QA logins by name, and nothing was touched.
    at(text, "qa.editor");
    assert_eq!(origin_staging(&test), before);
    assert_eq!(site.hits("/"), 0, "a plan makes no request");
    assert_eq!(
        crate::support::pg::query_strings(&staging, "SELECT count(*)::text FROM auth_user"),
        ["8"]
    );
}

#[test]
fn the_runbook_resets_the_demo_world_end_to_end_with_its_media_on_s3() {
    use crate::support::pg::query_strings;
    let mut test = Test::new();
    let site = HttpServer::start();
    // The media on S3, as the demo has them, signed with the server's key.
    let s3 = S3Server::start();
    for (key, value) in s3.env() {
        test = test.env(key, value);
    }
    let (vars, prod, staging) = demo_world(&test, "shipped_demo_run_fp", &site, Some(&s3));
    let addresses = crate::support::pg::block_on(demo_site::emails(&prod)).unwrap();
    assert!(addresses.len() >= 5, "{addresses:?}");
    let mut args = vec!["run".to_string(), runbook(), "--yes".into()];
    args.extend(vars);
    let test = test.args(args);
    let out = test.run();
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );

    // The database: production's site, scrubbed, on staging's host, with
    // the QA logins and their memberships carried over.
    let leaks = crate::support::pg::leaks(&staging, &addresses);
    assert!(
        leaks.is_empty(),
        "production's addresses in staging:\n{}",
        leaks.join("\n")
    );
    assert_eq!(
        query_strings(&staging, "SELECT hostname FROM wagtailcore_site"),
        ["staging.example.org"]
    );
    assert_eq!(
        query_strings(
            &staging,
            "SELECT u.username || ':' || g.name FROM auth_user u \
             JOIN auth_user_groups ug ON ug.user_id = u.id JOIN auth_group g ON g.id = ug.group_id \
             WHERE u.username LIKE 'qa.%' ORDER BY 1"
        ),
        [
            "qa.editor:Editors",
            "qa.moderator:Moderators",
            "qa.tester:Editors",
            "qa.tester:Moderators"
        ]
    );
    // The media: originals copied, documents as placeholders, renditions
    // left alone, staging's stale upload deleted.
    let media = s3.bucket_dir("staging-media");
    assert!(media.join("original_images/garden.png").is_file());
    assert!(
        s3.ops_on("original_images/garden.png")
            .contains(&"CopyObject".to_string()),
        "one endpoint: copied on the server"
    );
    assert!(!media.join("images/garden.width-400.png").exists());
    assert!(!media.join("original_images/removed-in-prod.png").exists());
    let csv = std::fs::read_to_string(media.join("documents/contact-form-export.csv")).unwrap();
    assert!(
        !csv.contains('@') && csv.contains("replaced in staging"),
        "{csv}"
    );
    // The code: staging is main again, pushed.
    assert_eq!(origin_staging(&test), origin_branch(&test, "main"));
    // Migrations, the index and the smoke check ran; the message says it.
    for line in [
        "ran `./manage.py migrate --noinput`",
        "ran `./manage.py update_index`",
    ] {
        at(&out.stderr, line);
    }
    assert_eq!(site.hits("/"), 1);
    at(
        &out.stdout,
        "Kept 3 staging-only QA logins. Branches dropped: feature/banner, feature/search.",
    );
    at(
        &out.stdout,
        "Media: 3 copied, 2 documents replaced, 1 deleted.",
    );
    // And the backup it took is in the store.
    let list = Test::new()
        .args([
            "backups",
            "list",
            "--store",
            &test.dir().join("backups").display().to_string(),
        ])
        .run();
    list.expect_code(0);
    at(&list.stdout, "reset-staging/");
}

#[test]
fn the_runbook_asks_to_confirm_after_showing_the_branch_pre_flight() {
    let test = Test::new();
    let site = HttpServer::start();
    let (vars, _, _) = demo_world(&test, "shipped_demo_confirm_fp", &site, None);
    let before = origin_staging(&test);
    // A terminal, so flightpath asks, and we answer "n".
    let mut args = vec!["run".to_string(), runbook()];
    args.extend(vars);
    let test = test.args(args);
    let out = test.on_terminal("n");
    let text = &out.stdout;
    let table = at(text, "origin/feature/search     on staging only");
    let dropped = at(
        text,
        "Add site search                             Dana Dunmore",
    );
    let question = at(text, "These steps change things: ");
    assert!(table < question && dropped < question, "{text}");
    at(text, "not confirmed; nothing was changed");
    assert_eq!(out.code, 3, "{text}");
    assert_eq!(origin_staging(&test), before);
}
