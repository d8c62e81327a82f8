//! Prompt templates as the syntax check at load and rendering (`crate::prompt`) both see them:
//! registered under their file's name, their errors worded the same way.

use std::path::Path;

/// The name a template is registered under: its file, so that minijinja's own messages (and
/// ours) say `prompts/x.user.j2:18`, never `<string>:18` or `user:3`.
pub fn template_name(path: &Path) -> String {
    path.display().to_string()
}

/// minijinja's error as one message: its kind and detail (which names an undefined variable)
/// and its causes, without the `(in NAME:LINE)` suffix and the debug dump, since the file and
/// line are told separately.
pub fn jinja_message(e: &minijinja::Error) -> String {
    let mut message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}
