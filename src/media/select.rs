//! Which keys a sync looks at, and what it does with each: the `include` /
//! `exclude` globs, and the fail-closed rule for files — a document (a
//! type whose content can carry personal data) arrives as a placeholder
//! unless a `copy:` glob names it, and `placeholder:` globs add anything
//! else (staff photos). Everything else is copied only when its first
//! bytes are those of an image, a video, a sound or a font: an allow-list,
//! so an upload of unknown type (a UUID name, `binary/octet-stream`, a
//! `.csv.gz`, a CSV named `.jpg`) arrives as a placeholder.
//!
//! Globs are matched against the key relative to the store's prefix, `/`
//! separated: `*` stays inside one segment, `**` crosses them
//! (`original_images/**`), `{a,b}` and `[…]` as in a shell.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Extensions of documents: types whose content can hold personal data
/// (exports, letters, CVs, spreadsheets, mail, contact cards, archives,
/// database dumps). A placeholder without looking further.
pub const DOCUMENT_EXTENSIONS: &[&str] = &[
    "csv", "tsv", "xls", "xlsx", "ods", "doc", "docx", "odt", "rtf", "pdf", "txt", "json", "xml",
    "zip", "eml", "msg", "vcf", "gz", "tgz", "bz2", "xz", "zst", "tar", "7z", "rar", "sql", "dump",
    "sqlite", "sqlite3", "db", "ppt", "pptx", "odp", "key", "pages", "numbers", "mbox", "epub",
    "md", "log", "yaml", "yml", "ics", "html", "htm",
];

/// Site assets copied by name: text the site itself ships, not uploads.
const ASSET_EXTENSIONS: &[&str] = &["css", "js", "map", "svg"];

/// What happens to one source object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Copied as it is.
    Copy,
    /// Replaced by a stand-in of the same name and type.
    Placeholder,
    /// Copied when the first bytes are a media format's, else a
    /// placeholder ([`is_media`]).
    BySignature,
}

/// A glob list as written, compiled.
#[derive(Debug, Clone)]
pub struct Globs {
    written: Vec<String>,
    set: GlobSet,
}

impl Globs {
    /// Compiles `patterns`; `Err((pattern, why))` for the first bad one.
    pub fn new(patterns: &[String]) -> Result<Globs, (String, String)> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(compile(pattern).map_err(|why| (pattern.clone(), why))?);
        }
        let set = builder
            .build()
            .map_err(|e| (patterns.join(", "), e.to_string()))?;
        Ok(Globs {
            written: patterns.to_vec(),
            set,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    pub fn matches(&self, key: &str) -> bool {
        self.set.is_match(key)
    }

    pub fn written(&self) -> &[String] {
        &self.written
    }
}

/// One glob: `*` does not cross `/`; a trailing `/` means everything under.
fn compile(pattern: &str) -> Result<Glob, String> {
    let pattern = match pattern.strip_suffix('/') {
        Some(dir) => format!("{dir}/**"),
        None => pattern.to_string(),
    };
    GlobBuilder::new(&pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// The globs of a `media.sync` step.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Keys looked at; empty means every key.
    pub include: Globs,
    /// Keys left alone on both sides (never copied, never deleted).
    pub exclude: Globs,
    /// Documents copied as they are.
    pub copy: Globs,
    /// Anything else replaced by a placeholder.
    pub placeholder: Globs,
}

impl Selection {
    /// Whether the sync looks at `key` at all (on either side).
    pub fn selects(&self, key: &str) -> bool {
        (self.include.is_empty() || self.include.matches(key)) && !self.exclude.matches(key)
    }

    /// What happens to the source object `key`, as far as its name tells.
    pub fn treatment(&self, key: &str) -> Treatment {
        // The safer rule wins where both name a key.
        if self.placeholder.matches(key) {
            return Treatment::Placeholder;
        }
        if self.copy.matches(key) {
            return Treatment::Copy;
        }
        // Every extension counts (`x.csv.gz`, `export.csv.jpg`).
        let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
        let mut parts = name.split('.').skip(1);
        if parts.any(|ext| DOCUMENT_EXTENSIONS.contains(&ext)) {
            return Treatment::Placeholder;
        }
        match extension(key) {
            Some(ext) if ASSET_EXTENSIONS.contains(&ext.as_str()) => Treatment::Copy,
            _ => Treatment::BySignature,
        }
    }
}

/// How many first bytes [`is_media`] needs.
pub const SIGNATURE_BYTES: u64 = 16;

/// Whether a file's first bytes are an image's, a video's, a sound's or a
/// font's: the only files copied without a name that says so.
pub fn is_media(start: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF87a",
        b"GIF89a",
        b"BM",
        b"II*\0",
        b"MM\0*",
        b"\0\0\x01\0",       // ico
        b"\x1a\x45\xdf\xa3", // webm, mkv
        b"ID3",              // mp3
        b"\xff\xfb",
        b"\xff\xf3",
        b"\xff\xf2",
        b"OggS",
        b"fLaC",
        b"wOFF",
        b"wOF2",
        b"\0\x01\0\0", // ttf
        b"OTTO",
    ];
    if start.len() >= 12 && &start[..4] == b"RIFF" {
        return matches!(&start[8..12], b"WEBP" | b"WAVE" | b"AVI ");
    }
    // ISO media: mp4, mov, m4a, heic, avif.
    if start.len() >= 8 && &start[4..8] == b"ftyp" {
        return true;
    }
    PREFIXES.iter().any(|prefix| start.starts_with(prefix))
}

/// The lowercase extension of the key's last segment, if it has one.
pub fn extension(key: &str) -> Option<String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The content type an extension implies, for placeholders and for
/// objects written into S3 from a directory.
pub fn content_type_of(key: &str) -> Option<&'static str> {
    Some(match extension(key)?.as_str() {
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" => "text/plain",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "rtf" => "application/rtf",
        "zip" => "application/zip",
        "eml" => "message/rfc822",
        "msg" => "application/vnd.ms-outlook",
        "vcf" => "text/vcard",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "css" => "text/css",
        "js" => "text/javascript",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(patterns: &[&str]) -> Globs {
        Globs::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn selection(
        include: &[&str],
        exclude: &[&str],
        copy: &[&str],
        placeholder: &[&str],
    ) -> Selection {
        Selection {
            include: globs(include),
            exclude: globs(exclude),
            copy: globs(copy),
            placeholder: globs(placeholder),
        }
    }

    #[test]
    fn a_star_stays_in_its_segment_and_two_cross_them() {
        let g = globs(&["original_images/*", "documents/**"]);
        assert!(g.matches("original_images/a.jpg"));
        assert!(!g.matches("original_images/2024/a.jpg"));
        assert!(g.matches("documents/2024/06/a.pdf"));
        assert!(!g.matches("images/a.jpg"));
        let dir = globs(&["media/"]);
        assert!(dir.matches("media/x/y.png"));
    }

    #[test]
    fn include_and_exclude_select_keys() {
        let s = selection(
            &["original_images/**", "documents/**"],
            &["**/*.tmp"],
            &[],
            &[],
        );
        assert!(s.selects("original_images/a.jpg"));
        assert!(!s.selects("images/a.width-800.jpg"));
        assert!(!s.selects("documents/upload.tmp"));
        let all = selection(&[], &[], &[], &[]);
        assert!(all.selects("anything/at/all"));
    }

    #[test]
    fn documents_become_placeholders_unless_copy_names_them() {
        let s = selection(&[], &[], &["documents/public/**"], &["staff/**"]);
        assert_eq!(
            s.treatment("documents/contacts.CSV"),
            Treatment::Placeholder
        );
        assert_eq!(
            s.treatment("documents/public/brochure.pdf"),
            Treatment::Copy
        );
        assert_eq!(s.treatment("original_images/a.jpg"), Treatment::BySignature);
        assert_eq!(s.treatment("staff/jane.jpg"), Treatment::Placeholder);
        assert_eq!(s.treatment("uploads/README"), Treatment::BySignature);
        assert_eq!(s.treatment("uploads/data.bin"), Treatment::BySignature);
        assert_eq!(s.treatment("uploads/.hidden"), Treatment::BySignature);
        assert_eq!(s.treatment("uploads/export.csv.gz"), Treatment::Placeholder);
        assert_eq!(
            s.treatment("uploads/export.CSV.jpg"),
            Treatment::Placeholder
        );
        assert_eq!(s.treatment("static/site.css"), Treatment::Copy);
        let both = selection(&[], &[], &["documents/**"], &["documents/staff/**"]);
        assert_eq!(
            both.treatment("documents/staff/cv.pdf"),
            Treatment::Placeholder
        );
        assert_eq!(both.treatment("documents/brochure.pdf"), Treatment::Copy);
    }

    #[test]
    fn only_media_signatures_are_copied() {
        assert!(is_media(b"\x89PNG\r\n\x1a\n...."));
        assert!(is_media(b"\xff\xd8\xff\xe0"));
        assert!(is_media(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(is_media(b"\0\0\0\x18ftypmp42"));
        assert!(!is_media(b"name,email\n"));
        assert!(!is_media(b"PK\x03\x04"));
        assert!(!is_media(b"%PDF-1.7"));
        assert!(!is_media(b""));
    }
}
