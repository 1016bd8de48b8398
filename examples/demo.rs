//! `cargo run --example demo`: flightpath end to end, with nothing but
//! PostgreSQL installed.
//!
//! Starts two throwaway clusters, "prod" and "staging", seeds each with a
//! small Wagtail-shaped site (made-up people), makes a throwaway git
//! repository whose staging branch has work main lacks, then runs the workflow
//! `examples/demo/reset-staging.yaml` through the library's CLI entry point,
//! exactly as `flightpath run` would. The run's files (`backups/`,
//! `.flightpath/runs/…`) go to `demo-run/` next to the demo's executable.
//!
//! Both clusters are stopped and deleted when the demo ends, also when it
//! fails (drop) or is interrupted (each cluster's watchdog).

#[path = "demo/repo.rs"]
mod repo;
#[path = "demo/seed.rs"]
mod seed;

use std::error::Error;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flightpath::cli;
use flightpath::pg::cluster::LocalCluster;

/// Relative to the crate root.
const WORKFLOW: &str = "examples/demo/reset-staging.yaml";

fn main() -> ExitCode {
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
    runtime.block_on(seed::production(&prod_url))?;
    runtime.block_on(seed::staging(&staging_url))?;
    println!(
        "    prod:    {}",
        runtime.block_on(seed::summary(&prod_url))?
    );
    println!(
        "    staging: {}",
        runtime.block_on(seed::summary(&staging_url))?
    );

    let workflow = Path::new(env!("CARGO_MANIFEST_DIR")).join(WORKFLOW);
    let workdir = fresh_workdir()?;
    std::env::set_current_dir(&workdir)?;
    let app = repo::create(&workdir)?;
    println!(
        "==> a throwaway git repository: {} (origin.git beside it), staging ahead of main",
        app.display()
    );
    media(&workdir)?;
    println!(
        "==> throwaway media directories: media/prod (images, renditions, documents) and media/staging"
    );
    let vars = [
        format!("PROD_DATABASE_URL={prod_url}"),
        format!("STAGING_DATABASE_URL={staging_url}"),
        "APP_REPO=app".to_string(),
    ];
    println!(
        "\n==> flightpath run {WORKFLOW} --yes --var {}\n",
        vars.join(" --var ")
    );
    let mut args: Vec<OsString> = vec!["flightpath".into(), "run".into(), workflow.into()];
    args.push("--yes".into());
    for var in vars {
        args.extend(["--var".into(), var.into()]);
    }
    let code = cli::run(args);

    println!("\n==> exit code {code}: {}", meaning(code));
    match runtime.block_on(seed::summary(&staging_url)) {
        Ok(summary) => println!("    staging now: {summary}"),
        Err(e) => println!("    staging now: cannot read it ({e})"),
    }
    println!(
        "    the run's files (backups/, report.md): {}",
        workdir.display()
    );
    println!("==> stopping the clusters");
    Ok(code)
}

/// Production's and staging's media, as a Wagtail site keeps them:
/// original images, renditions (regenerated, so not synced), documents —
/// one a CSV export of made-up contacts, which must arrive as a placeholder
/// — and public documents copied as they are. Staging has a stale upload.
fn media(workdir: &Path) -> std::io::Result<()> {
    use flightpath::media::placeholder::png;
    let prod = workdir.join("media/prod");
    let files: [(&str, Vec<u8>); 6] = [
        ("original_images/garden.png", png(1200, 800)),
        ("original_images/team.png", png(640, 480)),
        ("images/garden.width-400.png", png(400, 266)),
        (
            "documents/contact-form-export.csv",
            b"name,email\nAda Example,ada@example.com\nGrace Example,grace@example.com\n".to_vec(),
        ),
        (
            "documents/public/opening-hours.txt",
            b"Open daily, 9 to 5.\n".to_vec(),
        ),
        ("documents/public/map.png", png(300, 300)),
    ];
    for (key, bytes) in files {
        let path = prod.join(key);
        std::fs::create_dir_all(path.parent().expect("a key has a directory"))?;
        std::fs::write(path, bytes)?;
    }
    let stale = workdir.join("media/staging/original_images/removed-in-prod.png");
    std::fs::create_dir_all(stale.parent().expect("a key has a directory"))?;
    std::fs::write(stale, png(10, 10))
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
