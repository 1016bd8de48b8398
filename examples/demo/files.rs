//! The demo's files: production's and staging's media, and a
//! stand-in for the app's `manage.py`.

use std::path::Path;

/// Production's and staging's media, as a Wagtail site keeps them:
/// original images, renditions (regenerated, so not synced), documents —
/// one a CSV export of made-up contacts, which must arrive as a placeholder
/// (the runbook names no document to `copy:`, so the public ones are
/// placeholders too). Staging has a stale upload, which the sync deletes.
/// `prod` and `staging` are directories: the media themselves, or the
/// directories of the S3 server's buckets.
pub fn media(prod: &Path, staging: &Path) -> std::io::Result<()> {
    use flightpath::media::placeholder::png;
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
    let stale = staging.join("original_images/removed-in-prod.png");
    std::fs::create_dir_all(stale.parent().expect("a key has a directory"))?;
    std::fs::write(stale, png(10, 10))
}

/// What the runbook calls to migrate and index: Django's `manage.py`. No
/// Django here, so a stand-in that says what it was asked.
pub fn manage_py(workdir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = workdir.join("manage.py");
    std::fs::write(
        &path,
        "#!/bin/sh\n# The demo's stand-in for Django's manage.py: there is no Django app here.\n\
         echo \"manage.py $*: nothing to do in the demo (your app's runs here)\"\n",
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}
