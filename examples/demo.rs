//! `cargo run --example demo`: the shipped runbook, `workflows/reset-staging.yaml`,
//! end to end, with nothing but PostgreSQL installed.
//!
//! Starts two throwaway clusters, "prod" and "staging", with a real Wagtail
//! schema and made-up people (staging has three QA logins of its own),
//! a throwaway git repository whose staging branch has work main lacks,
//! media in two buckets of an S3-protocol server inside this process (the
//! test suite's), a stand-in for the app's `manage.py` and a local web
//! server for the smoke check; then runs the workflow with the library's
//! CLI entry point, in a child process of this program that has the S3 keys
//! in its environment, exactly as `flightpath run` would; checks that none
//! of production's addresses reached staging, rows or files; and lists the
//! backup it took.
//! The run's files (`backups/`, `.flightpath/runs/…`) go to `demo-run/`
//! next to the demo's executable.
//!
//! Both clusters are stopped and deleted when the demo ends, also when it
//! fails (drop) or is interrupted (each cluster's watchdog).

#[path = "demo/files.rs"]
mod files;
#[path = "demo/repo.rs"]
mod repo;
#[path = "../tests/support/s3.rs"]
#[allow(dead_code)]
mod s3;
#[path = "demo/site.rs"]
mod site;

use std::error::Error;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flightpath::cli;
use flightpath::pg::cluster::LocalCluster;

/// Relative to the crate root.
const WORKFLOW: &str = "workflows/reset-staging.yaml";

/// The demo runs flightpath in a child of its own, with this first
/// argument, so the run has the S3 keys in its environment as yours would.
const AS_FLIGHTPATH: &str = "--as-flightpath";

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == AS_FLIGHTPATH) {
        args.remove(1);
        args[0] = "flightpath".into();
        return ExitCode::from(u8::try_from(cli::run(args)).unwrap_or(1));
    }
    match demo() {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // tokio-postgres keeps the server's message in the source chain.
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the workflow run's exit code.
fn demo() -> Result<i32, Box<dyn Error>> {
    println!("==> starting two throwaway PostgreSQL clusters: prod and staging");
    let prod = LocalCluster::start("prod")?;
    let staging = LocalCluster::start("staging")?;
    prod.create_database("app")?;
    staging.create_database("app")?;
    let (prod_url, staging_url) = (prod.url("app"), staging.url("app"));

    // The seeding runtime must not be running when `cli::run` starts its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(site::production(&prod_url))?;
    runtime.block_on(site::staging(&staging_url))?;
    println!(
        "    prod:    {}",
        runtime.block_on(site::summary(&prod_url))?
    );
    println!(
        "    staging: {}",
        runtime.block_on(site::summary(&staging_url))?
    );

    let workflow = Path::new(env!("CARGO_MANIFEST_DIR")).join(WORKFLOW);
    let workdir = fresh_workdir()?;
    std::env::set_current_dir(&workdir)?;
    let app = repo::create(&workdir)?;
    println!(
        "==> a throwaway git repository: {} (origin.git beside it), staging ahead of main",
        app.display()
    );
    let media = s3::S3Server::start();
    media.create_bucket("prod-media");
    media.create_bucket("staging-media");
    files::media(
        &media.bucket_dir("prod-media"),
        &media.bucket_dir("staging-media"),
    )?;
    println!(
        "==> an S3-protocol server at {} (in this process): buckets prod-media \
         (images, renditions, documents) and staging-media",
        media.endpoint()
    );
    files::manage_py(&workdir)?;
    let site_url = serve_ok()?;
    println!("==> a stand-in manage.py (no Django here) and a local web server at {site_url}");
    let vars = [
        format!("PRODUCTION_DATABASE_URL={prod_url}"),
        format!("STAGING_DATABASE_URL={staging_url}"),
        format!("PRODUCTION_MEDIA_URL={}", media.url("prod-media", "")),
        format!("STAGING_MEDIA_URL={}", media.url("staging-media", "")),
        "APP_REPO=app".to_string(),
        "MANAGE=./manage.py".to_string(),
        format!("STAGING_URL={site_url}"),
        // Keys the fakes; yours comes from a secret store, never a file.
        "FLIGHTPATH_SECRET=demo-only-secret".to_string(),
    ];
    let keys: Vec<(String, String)> = media.env();
    println!(
        "\n==> {} flightpath run {WORKFLOW} --yes --var {}\n",
        keys.iter()
            .filter(|(k, _)| k != "AWS_SECRET_ACCESS_KEY")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        vars.join(" --var ")
    );
    let mut run = std::process::Command::new(std::env::current_exe()?);
    run.arg(AS_FLIGHTPATH)
        .arg("run")
        .arg(&workflow)
        .arg("--yes")
        .envs(keys);
    for var in vars {
        run.args(["--var", &var]);
    }
    let status = run.status()?;
    let code = status.code().unwrap_or(cli::EXIT_INTERRUPTED);

    println!("\n==> exit code {code}: {}", meaning(code));
    match runtime.block_on(site::summary(&staging_url)) {
        Ok(summary) => println!("    staging now: {summary}"),
        Err(e) => println!("    staging now: cannot read it ({e})"),
    }
    let addresses = runtime.block_on(site::emails(&prod_url))?;
    let leaked = runtime.block_on(site::found(&staging_url, &addresses))?;
    println!(
        "    production's {} e-mail addresses found in staging: {leaked}",
        addresses.len()
    );
    let export = std::fs::read_to_string(
        media
            .bucket_dir("staging-media")
            .join("documents/contact-form-export.csv"),
    );
    let (export_wrong, export_says) = match &export {
        Ok(text) if text.contains('@') => (true, "holds production's addresses"),
        Ok(_) => (false, "a placeholder, no addresses"),
        Err(_) => (true, "missing (the sync did not write it)"),
    };
    println!("    staging-media's documents/contact-form-export.csv: {export_says}");
    println!("\n==> flightpath backups list --store backups\n");
    cli::run(
        ["flightpath", "backups", "list", "--store", "backups"]
            .map(OsString::from)
            .to_vec(),
    );
    println!(
        "\n    the run's files (backups/, report.md): {}",
        workdir.display()
    );
    drop(media);
    println!("==> stopping the clusters");
    Ok(if code == cli::EXIT_OK && (leaked > 0 || export_wrong) {
        cli::EXIT_STEP_FAILED
    } else {
        code
    })
}

/// A web server on 127.0.0.1 answering every request `200 OK`, for the
/// runbook's smoke check; it lives as long as the demo.
fn serve_ok() -> std::io::Result<String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = "staging is up\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(url)
}

/// `demo-run/` next to the demo's executable (under `target/`), emptied:
/// the run's report and backup stay there for reading after the demo.
fn fresh_workdir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.with_file_name("demo-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn meaning(code: i32) -> &'static str {
    match code {
        cli::EXIT_OK => "staging was reset from prod, personal data scrubbed",
        cli::EXIT_STEP_FAILED => {
            "a step failed; the on_failure steps put staging back from its backup"
        }
        cli::EXIT_INVALID => "the workflow or its variables are invalid; nothing ran",
        cli::EXIT_REFUSED => "refused for safety; nothing ran",
        cli::EXIT_INTERRUPTED => "interrupted",
        _ => "unexpected exit code",
    }
}
