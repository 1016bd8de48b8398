//! `approve`: a manual gate. Interactive runs ask on the terminal; `--yes`
//! approves without asking; a non-interactive run without `--yes` refuses
//! (exit code 3) rather than guess.

use crate::syntax::reader::{LoadCtx, MapReader};
use crate::syntax::template::Template;

use super::{Kind, StepCtx, StepError, StepOutcome};

#[derive(Debug, Clone)]
pub struct Params {
    /// The question shown to the person running the workflow.
    pub message: Template,
}

impl Kind for Params {
    const NAME: &'static str = "approve";
    const OUTPUTS: &'static [&'static str] = &["approved_by"];
    const DESTRUCTIVE: bool = false;

    fn parse(with: &mut MapReader, cx: &mut LoadCtx) -> Option<Self> {
        let message = with
            .template(cx, "message")
            .unwrap_or_else(|| Template::literal("Continue?"));
        Some(Params { message })
    }

    fn templates(&self) -> Vec<&Template> {
        vec![&self.message]
    }

    async fn plan(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let message = ctx.preview(&self.message);
        let how = if ctx.interaction.assume_yes {
            "approved by --yes"
        } else {
            "interactive confirmation"
        };
        Ok(StepOutcome::new(format!("would ask \"{message}\" ({how})")))
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutcome, StepError> {
        let message = ctx.render(&self.message)?;
        if ctx.interaction.assume_yes {
            return Ok(
                StepOutcome::new(format!("\"{message}\": approved by --yes"))
                    .output("approved_by", "--yes"),
            );
        }
        if !ctx.interaction.interactive {
            return Err(StepError::Refused(format!(
                "step `{}` needs approval (\"{message}\"), but this run is not interactive; pass --yes to approve",
                ctx.step_id
            )));
        }
        let prompt = format!("{message} [y/N] ");
        let progress = ctx.progress.clone();
        let answer = tokio::task::spawn_blocking(move || progress.suspend(|| ask(&prompt)))
            .await
            .map_err(|e| StepError::failed(format!("could not read the answer: {e}")))?;
        match answer {
            Some(true) => Ok(StepOutcome::new(format!("\"{message}\": approved"))
                .output("approved_by", "prompt")),
            _ => Err(StepError::Refused(format!(
                "step `{}`: \"{message}\" was not approved",
                ctx.step_id
            ))),
        }
    }
}

/// One line typed at `prompt` on stderr, without its line end; `None` at
/// end of input.
pub(crate) fn ask_line(prompt: &str) -> Option<String> {
    use std::io::{BufRead, Write};
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

/// Asks on stderr, reads one line from stdin: `y` or `yes` (any case) is
/// a yes; `None` on end of input.
pub(crate) fn ask(prompt: &str) -> Option<bool> {
    let line = ask_line(prompt)?;
    Some(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
