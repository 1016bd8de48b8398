//! Stand-ins for files that must not reach staging as they are: the same
//! name and content type, valid of their kind, so links and layouts on the
//! staging site hold — and nothing of the original inside.
//!
//! A document's stand-in depends only on its type (a one-page PDF, a
//! text, CSV, JSON or XML saying the file was replaced, a valid
//! DOCX/XLSX/ODT/ODS/ZIP), so it is the same bytes on every run and a
//! second sync finds it already in place. An image's is one flat colour at
//! the original's pixel size, in its format (PNG, JPEG, GIF; other formats
//! get a PNG of that size), read from the first bytes of the original.

/// What replaces a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// The sentence every document stand-in says.
pub const NOTICE: &str = "This file was replaced in staging: the original may hold personal \
                          data, so it is not copied from production.";

/// How many bytes of an image to read to find its pixel size (a JPEG's
/// frame header can follow a large EXIF block).
pub const IMAGE_HEADER_BYTES: u64 = 256 << 10;

/// A document's stand-in, by the key's extension (or `content_type` when
/// the extension says nothing).
pub fn document(key: &str, content_type: Option<&str>) -> Placeholder {
    let ext = super::select::extension(key).unwrap_or_default();
    let of_type = |t: &str| Placeholder {
        bytes: Vec::new(),
        content_type: t.to_string(),
    };
    let typed = super::select::content_type_of(key)
        .map(str::to_string)
        .or_else(|| content_type.map(str::to_string))
        .unwrap_or_else(|| "text/plain".to_string());
    let bytes = match ext.as_str() {
        "pdf" => pdf(),
        "csv" => format!("notice\n\"{NOTICE}\"\n").into_bytes(),
        "tsv" => format!("notice\n{NOTICE}\n").into_bytes(),
        "json" => format!("{{\"notice\": \"{NOTICE}\"}}\n").into_bytes(),
        "xml" => format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<notice>{NOTICE}</notice>\n")
            .into_bytes(),
        "rtf" => format!("{{\\rtf1\\ansi {NOTICE}\\par}}\n").into_bytes(),
        "eml" => format!(
            "From: staging@example.invalid\r\nSubject: Replaced in staging\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{NOTICE}\r\n"
        )
        .into_bytes(),
        "vcf" => "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Replaced In Staging\r\nN:Staging;Replaced;;;\r\nEND:VCARD\r\n"
            .as_bytes()
            .to_vec(),
        "docx" => docx(),
        "xlsx" => xlsx(),
        "odt" => opendocument("text"),
        "ods" => opendocument("spreadsheet"),
        "zip" => zip(&[("README.txt", format!("{NOTICE}\n").as_bytes())]),
        _ => format!("{NOTICE}\n").into_bytes(),
    };
    Placeholder {
        bytes,
        ..of_type(&typed)
    }
}

/// The largest side of an image stand-in (larger claims are cut to it):
/// 8,192 × 8,192 is 8 MiB of PNG rows.
pub const MAX_SIDE: u32 = 8_192;

/// The largest side of a GIF stand-in (about 2.3 MiB at most).
pub const MAX_GIF_SIDE: u32 = 2_048;

/// An image format and pixel size, read from a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

/// The format and size of an image from its first bytes, or `None` when
/// they are not an image header this knows.
pub fn dimensions(start: &[u8]) -> Option<Dimensions> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let le16 = |b: &[u8]| u32::from(u16::from_le_bytes([b[0], b[1]]));
    let found = |format, width, height| {
        (width > 0 && height > 0).then_some(Dimensions {
            format,
            width,
            height,
        })
    };
    if start.len() >= 24 && start.starts_with(b"\x89PNG\r\n\x1a\n") && &start[12..16] == b"IHDR" {
        return found(ImageFormat::Png, be32(&start[16..]), be32(&start[20..]));
    }
    if start.len() >= 10 && (start.starts_with(b"GIF87a") || start.starts_with(b"GIF89a")) {
        return found(ImageFormat::Gif, le16(&start[6..]), le16(&start[8..]));
    }
    if start.len() >= 30 && &start[..4] == b"RIFF" && &start[8..12] == b"WEBP" {
        let le24 = |b: &[u8]| u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
        return match &start[12..16] {
            b"VP8X" => found(
                ImageFormat::Webp,
                le24(&start[24..]) + 1,
                le24(&start[27..]) + 1,
            ),
            b"VP8 " => found(
                ImageFormat::Webp,
                le16(&start[26..]) & 0x3fff,
                le16(&start[28..]) & 0x3fff,
            ),
            b"VP8L" if start.len() >= 25 => {
                let bits = u32::from_le_bytes([start[21], start[22], start[23], start[24]]);
                found(
                    ImageFormat::Webp,
                    (bits & 0x3fff) + 1,
                    ((bits >> 14) & 0x3fff) + 1,
                )
            }
            _ => None,
        };
    }
    if start.starts_with(b"\xff\xd8") {
        return jpeg_dimensions(start);
    }
    None
}

/// Walks a JPEG's markers to its frame header (SOF0–SOF15 but DHT, JPG
/// and DAC).
fn jpeg_dimensions(start: &[u8]) -> Option<Dimensions> {
    let mut i = 2;
    while i + 4 <= start.len() {
        if start[i] != 0xff {
            return None;
        }
        let marker = start[i + 1];
        if marker == 0xff {
            i += 1;
            continue;
        }
        if matches!(marker, 0xd0..=0xd9 | 0x01) {
            i += 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([start[i + 2], start[i + 3]]));
        if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            if i + 9 > start.len() {
                return None;
            }
            let height = u32::from(u16::from_be_bytes([start[i + 5], start[i + 6]]));
            let width = u32::from(u16::from_be_bytes([start[i + 7], start[i + 8]]));
            return (width > 0 && height > 0).then_some(Dimensions {
                format: ImageFormat::Jpeg,
                width,
                height,
            });
        }
        i += 2 + length;
    }
    None
}

/// An image's stand-in: one flat grey at the same pixel size, in the same
/// format where this can write it (PNG otherwise).
pub fn image(dimensions: Dimensions) -> Placeholder {
    // A header can claim any size; the stand-in never costs more than
    // about 8 MiB to make, whatever it says.
    let (width, height) = (
        dimensions.width.min(MAX_SIDE),
        dimensions.height.min(MAX_SIDE),
    );
    match dimensions.format {
        ImageFormat::Jpeg => Placeholder {
            bytes: jpeg(width, height),
            content_type: "image/jpeg".into(),
        },
        // Uncompressed LZW: 9 bits per 2 pixels, so a smaller cap.
        ImageFormat::Gif => Placeholder {
            bytes: gif(width.min(MAX_GIF_SIDE), height.min(MAX_GIF_SIDE)),
            content_type: "image/gif".into(),
        },
        ImageFormat::Png | ImageFormat::Webp => Placeholder {
            bytes: png(width, height),
            content_type: "image/png".into(),
        },
    }
}

/// A one-bit palette PNG of one grey: each row is a filter byte and
/// `width / 8` zero bytes, which zlib shrinks to almost nothing.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let row = 1 + (width as usize).div_ceil(8);
    let raw = vec![0u8; row * height as usize];
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 9);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[1, 3, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"PLTE", &[0xcc, 0xcc, 0xcc]);
    chunk(&mut out, b"IDAT", &compressed);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A baseline greyscale JPEG of mid grey: every 8×8 block has DC
/// difference 0 and no AC coefficient, so the Huffman tables hold one
/// one-bit code each and the scan is two zero bits per block.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width.min(65_535) as u16, height.min(65_535) as u16);
    let mut out = vec![0xff, 0xd8];
    // JFIF APP0.
    out.extend_from_slice(&[
        0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    ]);
    // DQT: table 0, all ones.
    out.extend_from_slice(&[0xff, 0xdb, 0, 67, 0]);
    out.extend_from_slice(&[1u8; 64]);
    // SOF0: 8-bit, h × w, one component (id 1, 1×1 sampling, table 0).
    out.extend_from_slice(&[0xff, 0xc0, 0, 11, 8]);
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&w.to_be_bytes());
    out.extend_from_slice(&[1, 1, 0x11, 0]);
    // DHT: DC table 0 and AC table 0, one code of length 1 for symbol 0
    // (DC: difference category 0; AC: end of block).
    for class in [0x00u8, 0x10] {
        out.extend_from_slice(&[0xff, 0xc4, 0, 20, class, 1]);
        out.extend_from_slice(&[0u8; 15]);
        out.push(0);
    }
    // SOS: one component, tables 0/0, spectral 0–63.
    out.extend_from_slice(&[0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0]);
    let blocks = u64::from(w).div_ceil(8) * u64::from(h).div_ceil(8);
    let bits = blocks * 2;
    out.extend(std::iter::repeat_n(0u8, (bits / 8) as usize));
    if bits % 8 != 0 {
        // The rest of the last byte is padded with ones.
        out.push(0xff >> (bits % 8));
    }
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// A GIF of one grey: LZW with a clear code after every two pixels, so
/// the code size never grows past three bits (no compression, no state).
pub fn gif(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width.min(65_535) as u16, height.min(65_535) as u16);
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    // Global colour table of 4 entries (size field 1), all grey.
    out.extend_from_slice(&[0x81, 0, 0]);
    out.extend_from_slice(&[0xcc; 12]);
    out.push(0x2c);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.push(0);
    out.push(2); // LZW minimum code size: clear = 4, end = 5, codes of 3 bits.
    let pixels = u64::from(w) * u64::from(h);
    let mut data = Vec::new();
    let (mut acc, mut nbits) = (0u32, 0u32);
    let mut emit = |code: u32, data: &mut Vec<u8>| {
        acc |= code << nbits;
        nbits += 3;
        while nbits >= 8 {
            data.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    };
    for i in 0..pixels {
        if i % 2 == 0 {
            emit(4, &mut data);
        }
        emit(0, &mut data);
    }
    emit(5, &mut data);
    if nbits > 0 {
        data.push(acc as u8);
    }
    for block in data.chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out.push(0x3b);
    out
}

/// A one-page PDF saying the file was replaced.
fn pdf() -> Vec<u8> {
    let text = "BT /F1 12 Tf 72 720 Td (This file was replaced in staging.) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn docx() -> Vec<u8> {
    zip(&[
        (
            "[Content_Types].xml",
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#,
        ),
        (
            "word/document.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{NOTICE}</w:t></w:r></w:p></w:body></w:document>"#
            )
            .as_bytes(),
        ),
    ])
}

fn xlsx() -> Vec<u8> {
    zip(&[
        (
            "[Content_Types].xml",
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        (
            "xl/workbook.xml",
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Replaced" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
        (
            "xl/worksheets/sheet1.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>{NOTICE}</t></is></c></row></sheetData></worksheet>"#
            )
            .as_bytes(),
        ),
    ])
}

/// An OpenDocument text or spreadsheet: `mimetype` first and stored, as
/// the format requires.
fn opendocument(kind: &str) -> Vec<u8> {
    let mimetype = format!("application/vnd.oasis.opendocument.{kind}");
    let body = match kind {
        "text" => format!("<office:text><text:p>{NOTICE}</text:p></office:text>"),
        _ => format!(
            "<office:spreadsheet><table:table table:name=\"Replaced\"><table:table-row>\
             <table:table-cell office:value-type=\"string\"><text:p>{NOTICE}</text:p>\
             </table:table-cell></table:table-row></table:table></office:spreadsheet>"
        ),
    };
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" office:version="1.2"><office:body>{body}</office:body></office:document-content>"#
    );
    let manifest = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#
    );
    zip(&[
        ("mimetype", mimetype.as_bytes()),
        ("content.xml", content.as_bytes()),
        ("META-INF/manifest.xml", manifest.as_bytes()),
    ])
}

/// A zip archive of `entries`, stored (not compressed), with a fixed
/// timestamp so the same entries give the same bytes.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = (2020 - 1980) << 9 | 1 << 5 | 1;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let header = |signature: u32, central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(&signature.to_le_bytes());
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&0u16.to_le_bytes()); // stored
            h.extend_from_slice(&DOS_TIME.to_le_bytes());
            h.extend_from_slice(&DOS_DATE.to_le_bytes());
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                h.extend_from_slice(&0u16.to_le_bytes()); // comment
                h.extend_from_slice(&0u16.to_le_bytes()); // disk
                h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
                h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend_from_slice(&header(0x0403_4b50, false));
        out.extend_from_slice(data);
        central.extend_from_slice(&header(0x0201_4b50, true));
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_stand_ins_keep_format_and_size() {
        for (format, bytes) in [
            (ImageFormat::Png, png(640, 427)),
            (ImageFormat::Jpeg, jpeg(640, 427)),
            (ImageFormat::Gif, gif(640, 427)),
        ] {
            assert_eq!(
                dimensions(&bytes),
                Some(Dimensions {
                    format,
                    width: 640,
                    height: 427
                })
            );
        }
        let huge = image(Dimensions {
            format: ImageFormat::Png,
            width: 100_000,
            height: 100_000,
        });
        assert_eq!(
            dimensions(&huge.bytes).map(|d| (d.width, d.height)),
            Some((MAX_SIDE, MAX_SIDE))
        );
        let big = png(6000, 4000);
        assert!(big.len() < 64 << 10, "{} bytes", big.len());
    }

    #[test]
    fn document_stand_ins_are_the_same_bytes_every_time_and_hold_only_the_notice() {
        for key in [
            "a/contacts.csv",
            "b.pdf",
            "c.docx",
            "d.xlsx",
            "e.odt",
            "f.ods",
            "g.zip",
            "h.vcf",
        ] {
            let first = document(key, None);
            assert_eq!(first, document(key, None));
            assert!(!first.bytes.is_empty());
        }
        assert_eq!(document("x.csv", None).content_type, "text/csv");
        assert_eq!(
            document("README", Some("text/markdown")).content_type,
            "text/markdown"
        );
        assert!(document("b.pdf", None).bytes.starts_with(b"%PDF-1.4"));
        assert!(document("g.zip", None).bytes.starts_with(b"PK\x03\x04"));
    }

    #[test]
    fn a_jpeg_header_behind_exif_is_found() {
        let mut bytes = vec![0xff, 0xd8, 0xff, 0xe1, 0x10, 0x00];
        bytes.extend(std::iter::repeat_n(0u8, 0x1000 - 2));
        bytes.extend_from_slice(&jpeg(300, 200)[2..]);
        assert_eq!(
            dimensions(&bytes).map(|d| (d.width, d.height)),
            Some((300, 200))
        );
    }
}
