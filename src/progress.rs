//! Progress bars for long commands: drawn on stderr only when it is a terminal, so logs,
//! services and tests never see them.

/// A bar (`len`: its length; `None`: no known length) with `template` (indicatif's syntax), or
/// `None` when it is not `wanted` or stderr is not a terminal.
pub(crate) fn terminal_bar(
    wanted: bool,
    len: Option<u64>,
    template: &str,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(len) => indicatif::ProgressBar::new(len),
        None => indicatif::ProgressBar::no_length(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    Some(bar)
}
