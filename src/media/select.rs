//! Which keys a sync looks at, and what it does with each: the `include` /
//! `exclude` globs, and the fail-closed rule for files — a document (a
//! type whose content can carry personal data) arrives as a placeholder
//! unless a `copy:` glob names it, and `placeholder:` globs add anything
//! else (staff photos).
//!
//! Globs are matched against the key relative to the store's prefix, `/`
//! separated: `*` stays inside one segment, `**` crosses them
//! (`original_images/**`), `{a,b}` and `[…]` as in a shell.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Extensions of documents: types whose content can hold personal data
/// (exports, letters, CVs, spreadsheets, mail, contact cards, archives).
pub const DOCUMENT_EXTENSIONS: &[&str] = &[
    "csv", "tsv", "xls", "xlsx", "ods", "doc", "docx", "odt", "rtf", "pdf", "txt", "json", "xml",
    "zip", "eml", "msg", "vcf",
];

/// Content types of the same documents (and any `text/*`).
const DOCUMENT_TYPES: &[&str] = &[
    "text/",
    "application/pdf",
    "application/json",
    "application/xml",
    "application/zip",
    "application/rtf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-outlook",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/x-zip-compressed",
    "message/rfc822",
];

/// Extensions known to hold media, not documents: copied as they are
/// unless a `placeholder:` glob names them. Anything else (no extension,
/// an unknown one) has its content type looked at first.
const MEDIA_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "avif", "heic", "heif", "svg", "ico", "bmp", "tif",
    "tiff", "mp4", "m4v", "webm", "mov", "avi", "mkv", "mp3", "m4a", "wav", "ogg", "oga", "flac",
    "woff", "woff2", "ttf", "otf", "eot", "css", "js", "map",
];

/// What happens to one source object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Copied as it is.
    Copy,
    /// Replaced by a stand-in of the same name and type.
    Placeholder,
    /// Decided by the content type (the extension says nothing).
    ByContentType,
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
        if self.copy.matches(key) {
            return Treatment::Copy;
        }
        if self.placeholder.matches(key) {
            return Treatment::Placeholder;
        }
        match extension(key) {
            Some(ext) if DOCUMENT_EXTENSIONS.contains(&ext.as_str()) => Treatment::Placeholder,
            Some(ext) if MEDIA_EXTENSIONS.contains(&ext.as_str()) => Treatment::Copy,
            _ => Treatment::ByContentType,
        }
    }
}

/// Whether a content type is a document's (see [`DOCUMENT_TYPES`]).
/// Unknown (`None`) or `application/octet-stream` counts as one: nothing
/// tells what it holds, and a file is copied only when something does.
pub fn is_document_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || essence == "application/octet-stream" {
        return true;
    }
    DOCUMENT_TYPES.iter().any(|t| essence.starts_with(t))
}

/// The content type a file's first bytes show, for a directory (which
/// keeps none): the image formats, or `None`.
pub fn sniff(start: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
    ];
    if start.len() >= 12 && &start[..4] == b"RIFF" && &start[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    SIGNATURES
        .iter()
        .find(|(signature, _)| start.starts_with(signature))
        .map(|(_, content_type)| *content_type)
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
        assert_eq!(s.treatment("original_images/a.jpg"), Treatment::Copy);
        assert_eq!(s.treatment("staff/jane.jpg"), Treatment::Placeholder);
        assert_eq!(s.treatment("uploads/README"), Treatment::ByContentType);
        assert_eq!(s.treatment("uploads/data.bin"), Treatment::ByContentType);
        assert_eq!(s.treatment("uploads/.hidden"), Treatment::ByContentType);
    }

    #[test]
    fn content_types_fail_closed() {
        assert!(is_document_type(Some("text/csv; charset=utf-8")));
        assert!(is_document_type(Some(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )));
        assert!(is_document_type(None));
        assert!(is_document_type(Some("application/octet-stream")));
        assert!(!is_document_type(Some("image/jpeg")));
        assert!(!is_document_type(Some("video/mp4")));
    }

    #[test]
    fn images_are_told_by_their_first_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"name,email\n"), None);
    }
}
