//! Readers for labelled routing data: the pre-segmented training TSV (`label<TAB>tokens`) and
//! the raw message sample (`留言主题`, `留言详情`, `一级分类` columns).
//!
//! Used by training, by `citypulse eval` and by tests; every malformed line is an error naming
//! the file and line, since a silently skipped row would skew the measured figures.

use std::path::Path;

use super::ModelError;

/// The seven first-level categories of the routing data, exactly as the labels spell them.
pub const CATEGORIES: [&str; 7] = [
    "城乡建设",
    "环境保护",
    "交通运输",
    "教育文体",
    "劳动和社会保障",
    "商贸旅游",
    "卫生计生",
];

/// Larger inputs are refused rather than read into memory: the real set is ~5 MB.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One labelled document: content tokens and its category.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub tokens: Vec<String>,
    pub label: String,
}

/// One raw message with its label; segmenting `text` is the caller's job (`text::segment`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawLabelled {
    /// Subject and body joined by a newline.
    pub text: String,
    pub label: String,
}

fn read_bounded(path: &Path) -> Result<String, ModelError> {
    let display = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| ModelError::Io {
        path: display.clone(),
        source: e,
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ModelError::Data {
            path: display,
            line: 0,
            message: format!(
                "file is {} bytes, more than the {MAX_FILE_BYTES} accepted",
                meta.len()
            ),
        });
    }
    std::fs::read_to_string(path).map_err(|e| ModelError::Io {
        path: display,
        source: e,
    })
}

fn check_label(path: &Path, line: usize, label: &str) -> Result<(), ModelError> {
    if CATEGORIES.contains(&label) {
        Ok(())
    } else {
        Err(ModelError::Data {
            path: path.display().to_string(),
            line,
            message: format!("unknown category {label:?} (expected one of {CATEGORIES:?})"),
        })
    }
}

/// Reads `label<TAB>space-separated tokens`, with an optional `label<TAB>tokens` header line.
pub fn read_segmented_tsv(path: &Path) -> Result<Vec<Labelled>, ModelError> {
    let content = read_bounded(path)?;
    let mut rows = Vec::new();
    for (i, line) in content.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (line_no == 1 && line == "label\ttokens") {
            continue;
        }
        let bad = |message: String| ModelError::Data {
            path: path.display().to_string(),
            line: line_no,
            message,
        };
        let mut fields = line.split('\t');
        let (Some(label), Some(tokens), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected exactly 2 tab-separated fields".into()));
        };
        check_label(path, line_no, label)?;
        let tokens: Vec<String> = tokens.split_whitespace().map(String::from).collect();
        if tokens.is_empty() {
            return Err(bad("no tokens".into()));
        }
        rows.push(Labelled {
            tokens,
            label: label.to_string(),
        });
    }
    Ok(rows)
}

/// Reads the raw sample TSV (header row with at least 留言主题, 留言详情, 一级分类).
pub fn read_raw_sample(path: &Path) -> Result<Vec<RawLabelled>, ModelError> {
    let content = read_bounded(path)?;
    let mut lines = content.lines().enumerate();
    let bad = |line: usize, message: String| ModelError::Data {
        path: path.display().to_string(),
        line,
        message,
    };
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.trim_end_matches('\r').split('\t').collect(),
        None => return Err(bad(1, "empty file, expected a header row".into())),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| bad(1, format!("header has no column {name:?}")))
    };
    let (subject, body, label) = (
        column("留言主题")?,
        column("留言详情")?,
        column("一级分类")?,
    );
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != header.len() {
            return Err(bad(
                line_no,
                format!("{} fields, header has {}", fields.len(), header.len()),
            ));
        }
        let label_text = fields[label].trim();
        check_label(path, line_no, label_text)?;
        rows.push(RawLabelled {
            text: format!("{}\n{}", fields[subject].trim(), fields[body].trim()),
            label: label_text.to_string(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(content.as_bytes()).expect("write temp file");
        f
    }

    #[test]
    fn reads_segmented_rows_with_header() {
        let f = file_with("label\ttokens\n环境保护\t噪音 扰民\n\n交通运输\t公交 晚点\n");
        let rows = read_segmented_tsv(f.path()).expect("valid file");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].label, "环境保护");
        assert_eq!(rows[1].tokens, vec!["公交", "晚点"]);
    }

    #[test]
    fn bad_segmented_line_names_file_and_line() {
        let f = file_with("环境保护\t噪音\n环境保护 噪音\n");
        let err = read_segmented_tsv(f.path()).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_label_is_an_error() {
        let f = file_with("城乡\t道路 破损\n");
        let err = read_segmented_tsv(f.path()).unwrap_err().to_string();
        assert!(err.contains("unknown category \"城乡\""), "{err}");
    }

    #[test]
    fn raw_sample_joins_subject_and_body() {
        let f = file_with(
            "留言编号\t留言主题\t留言详情\t一级分类\n1\t路灯不亮\t小区路灯坏了\t城乡建设\n",
        );
        let rows = read_raw_sample(f.path()).expect("valid file");
        assert_eq!(rows[0].text, "路灯不亮\n小区路灯坏了");
        assert_eq!(rows[0].label, "城乡建设");
    }

    #[test]
    fn raw_sample_without_label_column_is_an_error() {
        let f = file_with("留言主题\t留言详情\n路灯\t坏了\n");
        let err = read_raw_sample(f.path()).unwrap_err().to_string();
        assert!(err.contains("一级分类"), "{err}");
    }
}
