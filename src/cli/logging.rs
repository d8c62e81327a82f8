//! Logs on stderr (human or JSON) and the last line of a failed command.

use super::LOG_TARGET;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "shopscribe=info,warn",
        1 => "shopscribe=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(colour(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR"),
            ))
            .compact()
            .init(),
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}

/// Colour codes only for a terminal, and never when `NO_COLOR` is set to anything
/// (https://no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The last line of a failed command: plain text for people, a JSON event under
/// `--log-format json` so that stderr stays one JSON object per line.
pub fn report_error(format: LogFormat, e: &(dyn std::error::Error + 'static), code: u8) {
    match format {
        LogFormat::Human => eprintln!("error: {}", error_text(e)),
        LogFormat::Json => {
            tracing::error!(target: LOG_TARGET, exit_code = code, "{}", error_text(e))
        }
    }
}

/// An error and its causes, each said once (see [`crate::error::Chain`]).
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error::chain_text(e)
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use super::colour;
        assert!(colour(true, None));
        assert!(!colour(false, None), "not a terminal");
        assert!(!colour(true, Some("1".into())), "NO_COLOR set");
        assert!(
            colour(true, Some("".into())),
            "an empty NO_COLOR does not count"
        );
    }
}
